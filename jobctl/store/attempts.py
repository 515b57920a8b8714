"""Queries on `attempts` and `workers`: one row per attempt of a job, one per rank of an attempt."""

from __future__ import annotations

from jobctl.store.base import Queries
from jobctl.store.records import Attempt, Worker, build, build_all, columns

ATTEMPT_COLUMNS = columns(Attempt)
WORKER_COLUMNS = columns(Worker)


class AttemptQueries(Queries):
    def attempt(self, job_id: int, n: int) -> Attempt | None:
        """Attempt `n` of a job, or None."""
        row = self._tuples(f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? AND n = ?", (job_id, n)).fetchone()
        return None if row is None else build(Attempt, row)

    def attempts(self, job_id: int) -> list[Attempt]:
        """Every attempt of a job, first to last."""
        rows = self._tuples(f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY n", (job_id,))
        return build_all(Attempt, rows)

    def workers(self, job_id: int) -> list[Worker]:
        """Every worker of every attempt of a job, by attempt and rank."""
        rows = self._tuples(f"SELECT {WORKER_COLUMNS} FROM workers WHERE job_id = ? ORDER BY attempt, rank", (job_id,))
        return build_all(Worker, rows)

    def add_attempt(self, job_id: int, n: int, started_at: float) -> None:
        """A new attempt that starts now."""
        self.conn.execute("INSERT INTO attempts (job_id, n, started_at) VALUES (?, ?, ?)", (job_id, n, started_at))

    def open_attempt(self, job_id: int, n: int) -> None:
        """A new attempt handed to a backend, not started yet (replaces one with that number)."""
        self.conn.execute("INSERT OR REPLACE INTO attempts (job_id, n) VALUES (?, ?)", (job_id, n))

    def attempt_started(self, job_id: int, n: int, started_at: float) -> None:
        """When an attempt started, unless that is known already."""
        self.conn.execute(
            "UPDATE attempts SET started_at = COALESCE(started_at, ?) WHERE job_id = ? AND n = ?",
            (started_at, job_id, n),
        )

    def set_runner_pid(self, job_id: int, n: int, pid: int) -> None:
        """The PID of an attempt's runner, unless known already."""
        self.conn.execute(
            "UPDATE attempts SET runner_pid = ? WHERE job_id = ? AND n = ? AND runner_pid IS NULL", (pid, job_id, n)
        )

    def end_attempt(self, job_id: int, n: int, ended_at: float, outcome: str, exit_code: int | None) -> None:
        """How and when an attempt ended."""
        self.conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, exit_code = ? WHERE job_id = ? AND n = ?",
            (ended_at, outcome, exit_code, job_id, n),
        )

    def lose_attempt(self, job_id: int, n: int, ended_at: float) -> None:
        """An attempt whose state cannot be read: ended as worker_lost, its running workers lost."""
        self.conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = 'worker_lost' WHERE job_id = ? AND n = ?",
            (ended_at, job_id, n),
        )
        self.conn.execute(
            "UPDATE workers SET state = 'lost' WHERE job_id = ? AND attempt = ? AND state = 'running'", (job_id, n)
        )

    def close_attempt(self, job_id: int, n: int, ended_at: float) -> None:
        """An attempt ended on purpose (cancelled): its running workers exited, its end time kept if known."""
        self.conn.execute(
            "UPDATE workers SET state = 'exited' WHERE job_id = ? AND attempt = ? AND state = 'running'", (job_id, n)
        )
        self.conn.execute(
            "UPDATE attempts SET ended_at = COALESCE(ended_at, ?) WHERE job_id = ? AND n = ?", (ended_at, job_id, n)
        )

    def delete_attempt(self, job_id: int, n: int) -> None:
        """Forget an attempt that never started, with its workers."""
        self.conn.execute("DELETE FROM workers WHERE job_id = ? AND attempt = ?", (job_id, n))
        self.conn.execute("DELETE FROM attempts WHERE job_id = ? AND n = ?", (job_id, n))

    def add_workers(self, job_id: int, attempt: int, count: int, *, keep_existing: bool = False) -> None:
        """Ranks 0..count-1 of an attempt, running (`keep_existing`: ranks already recorded stay as they are)."""
        verb = "INSERT OR IGNORE" if keep_existing else "INSERT"
        self.conn.executemany(
            f"{verb} INTO workers (job_id, attempt, rank, state) VALUES (?, ?, ?, 'running')",
            [(job_id, attempt, rank) for rank in range(count)],
        )

    def update_worker(
        self, job_id: int, attempt: int, rank: int, state: str, exit_code: int | None, pid: int | None
    ) -> None:
        """What a backend saw of one worker (written only when it changed)."""
        self.conn.execute(
            "UPDATE workers SET state = ?, exit_code = ?, pid = ? WHERE job_id = ? AND attempt = ? AND rank = ?"
            " AND (state != ? OR exit_code IS NOT ? OR pid IS NOT ?)",
            (state, exit_code, pid, job_id, attempt, rank, state, exit_code, pid),
        )

    def set_worker_exits(self, job_id: int, attempt: int, ends: list[tuple[str, int | None]]) -> None:
        """How each worker of an attempt ended: (state, exit code) by rank."""
        self.conn.executemany(
            "UPDATE workers SET state = ?, exit_code = ? WHERE job_id = ? AND attempt = ? AND rank = ?",
            [(state, code, job_id, attempt, rank) for rank, (state, code) in enumerate(ends)],
        )
