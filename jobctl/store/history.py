"""Queries on `deps` (what a job waits for) and `events` (every recorded change of state)."""

from __future__ import annotations

from jobctl.core import states
from jobctl.store.base import JOB_COLUMNS_J, Queries
from jobctl.store.records import TERMINAL_SQL, Dependency, Event, Job, build_all, columns

EVENT_COLUMNS = columns(Event)


class HistoryQueries(Queries):
    # -- dependencies ----------------------------------------------------------------------------
    def dependencies(self, job_id: int) -> list[Dependency]:
        """What a job depends on, by dependency ID, with each one's state (None: removed)."""
        rows = self._tuples(
            "SELECT d.dep_id, d.condition, j.state, j.name, j.backend, j.backend_id FROM deps d"
            " LEFT JOIN jobs j ON j.id = d.dep_id WHERE d.job_id = ? ORDER BY d.dep_id",
            (job_id,),
        )
        return build_all(Dependency, rows)

    def dependency_ids(self, job_id: int) -> list[int]:
        """The IDs of the jobs a job depends on, in order."""
        rows = self._tuples("SELECT dep_id FROM deps WHERE job_id = ? ORDER BY dep_id", (job_id,))
        return [row[0] for row in rows]

    def add_dependencies(self, job_id: int, deps: list[tuple[int, str]]) -> None:
        """Record that a job depends on these (job ID, condition) pairs."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO deps (job_id, dep_id, condition) VALUES (?, ?, ?)",
            [(job_id, dep_id, condition) for dep_id, condition in deps],
        )

    def drop_dependencies(self, job_id: int, dep_ids: list[int]) -> None:
        """Forget these dependencies of a job."""
        self.conn.executemany("DELETE FROM deps WHERE job_id = ? AND dep_id = ?", [(job_id, d) for d in dep_ids])

    def live_dependent(self, job_id: int) -> Job | None:
        """The first unfinished job that depends on this one, or None."""
        rows = self._tuples(
            f"SELECT {JOB_COLUMNS_J} FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = ?"
            f" AND j.state NOT IN {TERMINAL_SQL} ORDER BY j.id LIMIT 1",
            (job_id,),
        )
        found = build_all(Job, rows)
        return found[0] if found else None

    def upstream_failed_dependents(self, job_id: int) -> list[Job]:
        """Local jobs that FAILED only because this one failed (upstream failed), holding nothing."""
        rows = self._tuples(
            f"SELECT {JOB_COLUMNS_J} FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = ?"
            f" AND j.state = '{states.FAILED}' AND j.reason = 'upstream_failed' AND j.backend = 'local'"
            " AND j.alloc IS NULL ORDER BY j.id",
            (job_id,),
        )
        return build_all(Job, rows)

    # -- events ----------------------------------------------------------------------------------
    def events(self, job_id: int) -> list[Event]:
        """Every recorded change of a job's state, oldest first."""
        rows = self._tuples(f"SELECT {EVENT_COLUMNS} FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return build_all(Event, rows)

    def recent_events(self, job_id: int, count: int) -> list[Event]:
        """The last `count` changes of a job's state, newest first."""
        rows = self._tuples(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, count)
        )
        return build_all(Event, rows)

    def frozen_since(self, job_id: int, since: float) -> bool:
        """Whether a user froze the job (SUSPENDED by user) at or after a time."""
        row = self.conn.execute(
            f"SELECT 1 FROM events WHERE job_id = ? AND to_state = '{states.SUSPENDED}' AND reason = 'user'"
            " AND at >= ? LIMIT 1",
            (job_id, since),
        ).fetchone()
        return row is not None
