"""The queries of everyday queueing (SPEC section 9): named queues, start times, array throttles,
`update`, and retention. `Store` has these methods through `QueueQueries`; each runs in the caller's
transaction (a write one where it writes) and returns records, never rows.

Tables and columns (migration 3 in store/database.py): `queues(name, max_running, cpus, gpus,
paused)`, and on `jobs` (fields of `records.Job`): `queue`, `start_at` (epoch seconds; not started
before), `array_id` (the array's first job ID) and `array_throttle` (how many tasks of the array may
hold resources at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from jobctl.core import states
from jobctl.store.base import JOB_COLUMNS, Queries
from jobctl.store.records import TERMINAL_SQL, Job

if TYPE_CHECKING:  # the scheduler is imported only by the passes that use it, not by `status`
    from jobctl.core.scheduler import QueueLimit

DEFAULT_QUEUE = "default"


class QueueRow(NamedTuple):
    """One line of `queue list`."""

    name: str
    running: int
    waiting: int
    max_running: int | None
    cpus: float | None
    gpus: int | None
    paused: bool


class ArrayStats(NamedTuple):
    """One array of the status table: its tasks by state, index range, first start and last end."""

    array_id: int
    counts: dict[str, int]  # state -> tasks
    first_index: int
    last_index: int
    started_at: float | None
    ended_at: float | None  # the last end, once every task has ended
    tasks: int


# The columns `update` may change, each with its own statement (a job's state is written only by
# `transition`, and tests/test_architecture.py reads every SET list).
_UPDATE_COLUMN = {
    "priority": "UPDATE jobs SET priority = ? WHERE id = ?",
    "queue": "UPDATE jobs SET queue = ? WHERE id = ?",
    "labels": "UPDATE jobs SET labels = ? WHERE id = ?",
    "spec_id": "UPDATE jobs SET spec_id = ? WHERE id = ?",
    "max_attempts": "UPDATE jobs SET max_attempts = ? WHERE id = ?",
    "reason": "UPDATE jobs SET reason = ? WHERE id = ?",
    "detail": "UPDATE jobs SET detail = ? WHERE id = ?",
}


class WindowRow(NamedTuple):
    """A waiting job past the head of the supervisor's queue window: what a pass needs to know that it
    can only wait (see `window_rest`)."""

    id: int
    state: str
    reason: str | None
    detail: str | None
    message: str | None
    cpus: float  # all nodes together
    memory_mib: int  # all nodes together
    queue: str
    array_throttle: int | None
    user: str
    not_before: float | None


class QueueQueries(Queries):
    # -- queues -------------------------------------------------------------------------------------
    def queue_limits(self) -> dict[str, QueueLimit]:
        """The caps of every queue that has any (queues never configured have none)."""
        from jobctl.core.scheduler import QueueLimit

        return {
            name: QueueLimit(max_running, cpus, gpus, bool(paused))
            for name, max_running, cpus, gpus, paused in self._tuples(
                "SELECT name, max_running, cpus, gpus, paused FROM queues"
            )
        }

    def set_queue(self, name: str, changes: dict[str, Any]) -> None:
        """Create the queue if needed, then set the given columns (max_running, cpus, gpus, paused)."""
        self.conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (name,))
        allowed = {"max_running", "cpus", "gpus", "paused"}
        assert set(changes) <= allowed, changes
        if changes:
            assignments = ", ".join(f"{key} = ?" for key in changes)
            self.conn.execute(f"UPDATE queues SET {assignments} WHERE name = ?", (*changes.values(), name))

    def list_queues(self) -> list[QueueRow]:
        """Every queue that is configured or holds an unfinished job, and `default`, by name."""
        from jobctl.core.scheduler import QueueLimit

        counts: dict[str, list[int]] = {DEFAULT_QUEUE: [0, 0]}
        for queue, state, n in self._tuples(
            f"SELECT queue, state, COUNT(*) FROM jobs WHERE state NOT IN {TERMINAL_SQL} GROUP BY queue, state"
        ):
            entry = counts.setdefault(queue, [0, 0])
            if state in ("ACTIVE", "FAILING"):
                entry[0] += n
            elif state in ("CREATED", "PENDING", "BLOCKED", "RETRYING"):
                entry[1] += n
        caps = self.queue_limits()
        for name in caps:
            counts.setdefault(name, [0, 0])
        out = []
        for name in sorted(counts):
            cap = caps.get(name, QueueLimit())
            out.append(
                QueueRow(name, counts[name][0], counts[name][1], cap.max_running, cap.cpus, cap.gpus, cap.paused)
            )
        return out

    # -- the supervisor's pass ---------------------------------------------------------------------
    def startable_window(
        self, backend: str, now: float, size: int, closed_queues: Iterable[str], closed_arrays: Iterable[int]
    ) -> list[Job]:
        """The best-ranked jobs of a backend that may start now (PENDING or RETRYING), at most `size`.

        Jobs whose start time has not come, whose queue is paused or full, or whose array is at its
        throttle are left out here, so that however many of them there are, they never crowd the
        jobs that could start out of the window."""
        sql, args = _window(JOB_COLUMNS, backend, now, closed_queues, closed_arrays)
        return self._jobs(sql + " LIMIT ?", (*args, size))

    def window_rest(
        self,
        backend: str,
        now: float,
        skip: int,
        size: int,
        closed_queues: Iterable[str],
        closed_arrays: Iterable[int],
    ) -> list[WindowRow]:
        """The next `size` jobs of the window after its first `skip`, in the same order, as WindowRows."""
        columns = (
            "id, state, reason, detail, message, cpus * num_nodes, memory_mib * num_nodes, queue, array_throttle,"
            " user, not_before"
        )
        sql, args = _window(columns, backend, now, closed_queues, closed_arrays)
        rows = self._tuples(sql + " LIMIT ? OFFSET ?", (*args, size, skip))
        new = tuple.__new__
        return [new(WindowRow, row) for row in rows]

    def scheduled(self, backend: str, now: float) -> tuple[list[Job], float | None]:
        """PENDING jobs of a backend whose start time is still to come and that do not say so yet,
        and the earliest start time to come (None: none)."""
        rows = self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_start_at WHERE start_at > ?"
            " AND state = 'PENDING' AND backend = ? AND reason IS NOT 'scheduled'",
            (now, backend),
        )
        earliest = self.conn.execute(
            "SELECT MIN(start_at) FROM jobs INDEXED BY jobs_start_at WHERE start_at > ? AND state = 'PENDING'"
            " AND backend = ?",
            (now, backend),
        ).fetchone()[0]
        return rows, earliest

    def mark_held_back(
        self,
        backend: str,
        now: float,
        reason: str,
        detail: str,
        message: str,
        *,
        queue: str | None = None,
        array_id: int | None = None,
        only_new: bool = False,
    ) -> None:
        """Say why the PENDING jobs of a backend in a queue (or an array) that can start nothing now wait.
        One statement; only rows whose reason or detail changes are written. `only_new`: only jobs that
        say nothing yet (just queued or requeued, or whose start time has come), found through an index,
        so that a pass over a long closed queue costs nothing per job."""
        column, value = ("queue", queue) if queue is not None else ("array_id", array_id)
        which = " AND (reason IS NULL OR reason = 'scheduled')" if only_new else ""
        self.conn.execute(
            f"UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE state = 'PENDING' AND {column} = ?{which}"
            " AND backend = ? AND (start_at IS NULL OR start_at <= ?) AND (reason IS NOT ? OR detail IS NOT ?)",
            (reason, detail, message, value, backend, now, reason, detail),
        )

    def set_waiting_reason(self, job_id: int, reason: str, detail: str, message: str | None) -> None:
        """The reason a PENDING job waits (the scheduler's word), when it changed."""
        self.conn.execute(
            "UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE id = ? AND state = 'PENDING'"
            " AND (reason IS NOT ? OR detail IS NOT ? OR message IS NOT ?)",
            (reason, detail, message, job_id, reason, detail, message),
        )

    # -- launch --------------------------------------------------------------------------------------
    def set_launch_fields(
        self,
        job_ids: list[int],
        *,
        queue: str,
        start_at: float | None,
        array_throttle: int | None,
        is_array: bool,
    ) -> None:
        """Queue, start time and array of jobs just recorded by one launch (the array's ID: its first job)."""
        if not job_ids:
            return
        array_id = job_ids[0] if is_array else None
        self.conn.executemany(
            "UPDATE jobs SET queue = ?, start_at = ?, array_id = ?, array_throttle = ? WHERE id = ?",
            [(queue, start_at, array_id, array_throttle, job_id) for job_id in job_ids],
        )

    # -- update --------------------------------------------------------------------------------------
    def update_job(self, job_id: int, expect_state: str, fields: dict[str, Any], actor: str, message: str) -> bool:
        """Change columns of a job still in `expect_state` (never its state), and append an event that
        says what changed (from and to the same state, reason `updated`). False when the job moved on
        meanwhile. Runs in the caller's write transaction, so the check and the writes are one step."""
        assert set(fields) <= set(_UPDATE_COLUMN), fields
        row = self.conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != expect_state:
            return False
        for key, value in fields.items():
            self.conn.execute(_UPDATE_COLUMN[key], (value, job_id))
        self.conn.execute(
            "INSERT INTO events (job_id, at, from_state, to_state, reason, actor, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, time.time(), expect_state, expect_state, "updated", actor, message),
        )
        return True

    # -- arrays in the status table ------------------------------------------------------------------
    def array_stats(self, array_ids: Iterable[int]) -> dict[int, ArrayStats]:
        """Per array: its tasks by state, its index range, its first start and its last end."""
        ids = sorted(set(array_ids))
        out: dict[int, ArrayStats] = {}
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ", ".join("?" * len(chunk))
            groups: dict[int, list[tuple[str, int, int, int, float | None, float | None]]] = {}
            for array_id, state, n, lo, hi, started, ended in self._tuples(  # one pass over the tasks
                f"SELECT array_id, state, COUNT(*), MIN(array_index), MAX(array_index), MIN(started_at),"
                f" MAX(ended_at) FROM jobs WHERE array_id IN ({marks}) GROUP BY array_id, state",
                chunk,
            ):
                groups.setdefault(array_id, []).append((state, n, lo, hi, started, ended))
            for array_id, rows in groups.items():
                starts = [r[4] for r in rows if r[4] is not None]
                ends = [r[5] for r in rows if r[5] is not None]
                live = any(r[0] not in states.TERMINAL for r in rows)
                out[array_id] = ArrayStats(
                    array_id,
                    {r[0]: r[1] for r in rows},
                    min(r[2] for r in rows),
                    max(r[3] for r in rows),
                    min(starts) if starts else None,
                    max(ends) if ends and not live else None,
                    sum(r[1] for r in rows),
                )
        return out

    # -- retention -----------------------------------------------------------------------------------
    def forgettable(self, older_than: float | None, keep_newest: int | None) -> list[Job]:
        """Finished local and Slurm jobs to forget: ended before `older_than` (epoch seconds), or beyond
        the `keep_newest` most recently ended finished jobs. Never one an unfinished job depends on,
        never one whose processes are still ending (as `prune`)."""
        keep = (
            " AND NOT EXISTS (SELECT 1 FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = jobs.id"
            f" AND j.state NOT IN {TERMINAL_SQL})"
        )
        found: dict[int, Job] = {}
        if older_than is not None:
            for job in self._jobs(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {TERMINAL_SQL} AND alloc IS NULL AND ended_at < ?{keep}",
                (older_than,),
            ):
                found[job.id] = job
        if keep_newest is not None:
            total = self.conn.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN {TERMINAL_SQL}").fetchone()[0]
            if total > keep_newest:
                for job in self._jobs(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {TERMINAL_SQL} AND alloc IS NULL{keep}"
                    " ORDER BY ended_at DESC, id DESC LIMIT -1 OFFSET ?",
                    (keep_newest,),
                ):
                    found[job.id] = job
        return sorted(found.values(), key=lambda j: j.id)

    def oldest_end(self, after: float | None = None) -> float | None:
        """The earliest end of a finished job (ending after `after` when given); None when there is none."""
        if after is None:
            value = self.conn.execute(f"SELECT MIN(ended_at) FROM jobs WHERE state IN {TERMINAL_SQL}").fetchone()[0]
        else:
            value = self.conn.execute(
                f"SELECT MIN(ended_at) FROM jobs WHERE state IN {TERMINAL_SQL} AND ended_at >= ?", (after,)
            ).fetchone()[0]
        return None if value is None else float(value)


def _window(
    columns: str, backend: str, now: float, closed_queues: Iterable[str], closed_arrays: Iterable[int]
) -> tuple[str, list[Any]]:
    """The query of the supervisor's queue window, best-ranked first (see `startable_window`)."""
    queues, arrays = sorted(set(closed_queues)), sorted(set(closed_arrays))
    sql = (
        f"SELECT {columns} FROM jobs INDEXED BY jobs_queue WHERE state IN ('PENDING', 'RETRYING')"
        " AND backend = ? AND (start_at IS NULL OR start_at <= ?)"
    )
    args: list[Any] = [backend, now]
    if queues:
        sql += f" AND queue NOT IN ({', '.join('?' * len(queues))})"
        args += queues
    if arrays:
        sql += f" AND (array_id IS NULL OR array_id NOT IN ({', '.join('?' * len(arrays))}))"
        args += arrays
    return sql + " ORDER BY priority DESC, submitted_at, id", args
