"""Queries on `jobs` and `specs`: named reads that return `Job` records, and the writes that are
not a change of state (those go through `transition`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobctl.core import states
from jobctl.store.base import JOB_COLUMNS, JOB_COLUMNS_J, Queries
from jobctl.store.records import TERMINAL_SQL, Job

LIVE = f"state NOT IN {TERMINAL_SQL}"


class JobQueries(Queries):
    # -- reading jobs ----------------------------------------------------------------------------
    def job(self, job_id: int) -> Job | None:
        """The job with this ID, or None."""
        return self._job(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))

    def jobs(self, ids: list[int]) -> list[Job]:
        """The jobs with these IDs that exist (in no particular order)."""
        marks = ",".join("?" * len(ids))
        return self._jobs(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", ids)

    def all_jobs(self, newest_first: bool = False) -> list[Job]:
        """Every job, by ID."""
        return self._jobs(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id{' DESC' if newest_first else ''}")

    def jobs_named(self, name: str) -> list[Job]:
        """The jobs with this exact name, oldest first."""
        return self._jobs(f"SELECT {JOB_COLUMNS} FROM jobs WHERE name = ? ORDER BY id", (name,))

    def latest_named(self, name: str) -> Job | None:
        """The newest job with this exact name, or None."""
        return self._job(f"SELECT {JOB_COLUMNS} FROM jobs WHERE name = ? ORDER BY id DESC", (name,))

    def latest_id_named(self, name: str) -> int | None:
        """The ID of the newest job with this exact name, or None."""
        row = self.conn.execute("SELECT MAX(id) FROM jobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def live_jobs(self) -> list[Job]:
        """Every unfinished job, newest first (through the partial index of live jobs)."""
        return self._jobs(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {LIVE} ORDER BY +id DESC")

    def live_jobs_collapsed(self) -> list[Job]:
        """Like `live_jobs`, but of each local array only its newest unfinished task: what the status
        table needs to show an array as one summary row (SPEC section 9) without building a record for
        each of 10,000 waiting tasks. Slurm tasks all stay: `status` mirrors each of them from Slurm."""
        return self._jobs(  # three index scans (migration 5), then the rows they name
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM jobs WHERE array_id IS NULL AND {LIVE}"
            f" UNION ALL SELECT id FROM jobs WHERE array_id IS NOT NULL AND backend != 'local' AND {LIVE}"
            f" UNION ALL SELECT MAX(id) FROM jobs WHERE array_id IS NOT NULL AND backend = 'local' AND {LIVE}"
            " GROUP BY array_id) ORDER BY id DESC"
        )

    def finished_jobs(self, only: Iterable[str] = (), limit: int | None = None) -> list[Job]:
        """Finished jobs, newest first: those in `only` (states; all terminal ones when empty), at most `limit`."""
        wanted = sorted(only)
        where = f" AND state IN ({', '.join('?' * len(wanted))})" if wanted else ""
        return self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs NOT INDEXED WHERE state IN {TERMINAL_SQL}{where} ORDER BY id DESC"
            + ("" if limit is None else " LIMIT ?"),
            (*wanted, *(() if limit is None else (limit,))),
        )

    def has_live(self, backend: str) -> bool:
        """Whether any unfinished job runs on this backend."""
        row = self.conn.execute(f"SELECT 1 FROM jobs WHERE {LIVE} AND backend = ? LIMIT 1", (backend,)).fetchone()
        return row is not None

    def count_live(self, backend: str) -> int:
        """How many unfinished jobs run on this backend."""
        return int(
            self.conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {LIVE} AND backend = ?", (backend,)).fetchone()[0]
        )

    def holding(self, backend: str) -> list[Job]:
        """Jobs of a backend whose processes may exist: running, frozen, or still ending (alloc set)."""
        return self._jobs(f"SELECT {JOB_COLUMNS} FROM jobs WHERE alloc IS NOT NULL AND backend = ?", (backend,))

    def queue_window(self, backend: str, limit: int) -> list[Job]:
        """The `limit` best-ranked PENDING or RETRYING jobs of a backend (priority, then age)."""
        return self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_queue WHERE state IN ('{states.PENDING}', "
            f"'{states.RETRYING}') AND backend = ? ORDER BY priority DESC, submitted_at, id LIMIT ?",
            (backend, limit),
        )

    def preempted_waiting(self, backend: str) -> list[Job]:
        """Jobs of a backend suspended by the system (preempted) whose processes have ended."""
        return self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = '{states.SUSPENDED}' AND reason = 'system'"
            " AND alloc IS NULL AND backend = ?",
            (backend,),
        )

    def blocked_ids(self, backend: str) -> list[int]:
        """The IDs of a backend's BLOCKED jobs."""
        rows = self.conn.execute(f"SELECT id FROM jobs WHERE state = '{states.BLOCKED}' AND backend = ?", (backend,))
        return [row[0] for row in rows]

    def expiring(self, backend: str) -> list[Job]:
        """Waiting jobs of a backend that have a queue deadline."""
        waiting = ", ".join(f"'{s}'" for s in (states.PENDING, states.BLOCKED, states.RETRYING, states.CREATED))
        return self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue_deadline IS NOT NULL AND state IN ({waiting}) AND backend = ?",
            (backend,),
        )

    def slurm_job(self, backend_id: str) -> Job | None:
        """The newest Slurm job recorded with this Slurm job ID, or None."""
        return self._job(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE backend = 'slurm' AND backend_id = ? ORDER BY id DESC",
            (backend_id,),
        )

    def slurm_upstreams(self) -> list[Job]:
        """Unfinished, submitted Slurm jobs that BLOCKED local jobs depend on."""
        return self._jobs(
            f"SELECT DISTINCT {JOB_COLUMNS_J} FROM deps d JOIN jobs w ON w.id = d.job_id JOIN jobs j ON j.id = d.dep_id"
            f" WHERE w.backend = 'local' AND w.state = '{states.BLOCKED}' AND j.backend = 'slurm'"
            f" AND j.backend_id IS NOT NULL AND j.state NOT IN {TERMINAL_SQL}"
        )

    def prunable(self, ended_before: float) -> list[Job]:
        """Finished jobs that ended before a time, hold nothing, and no unfinished job depends on."""
        return self._jobs(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {TERMINAL_SQL} AND alloc IS NULL AND ended_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = jobs.id"
            f" AND j.state NOT IN {TERMINAL_SQL})",
            (ended_before,),
        )

    def live_secret_envs(self) -> list[str | None]:
        """The `envs` of the unfinished jobs that have a secrets file."""
        rows = self.conn.execute(f"SELECT envs FROM jobs WHERE {LIVE} AND envs LIKE '%\"secrets\":%'")
        return [row[0] for row in rows]

    # -- writing jobs (not their state) ----------------------------------------------------------
    def create_job(
        self,
        *,
        name: str,
        spec_id: int,
        priority: int,
        cpus: float,
        memory_mib: int,
        accelerators: str | None,
        num_nodes: int,
        labels: str | None,
        envs: str | None,
        array_index: int | None,
        backend: str,
        user: str,
        submitted_at: float,
        max_attempts: int,
        queue_deadline: float | None,
    ) -> int:
        """A new job in CREATED, with its first event; returns its ID."""
        cur = self.conn.execute(
            "INSERT INTO jobs (name, state, spec_id, priority, cpus, memory_mib, accelerators, num_nodes,"
            " labels, envs, array_index, backend, user, submitted_at, max_attempts, queue_deadline)"
            f" VALUES (?, '{states.CREATED}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                spec_id,
                priority,
                cpus,
                memory_mib,
                accelerators,
                num_nodes,
                labels,
                envs,
                array_index,
                backend,
                user,
                submitted_at,
                max_attempts,
                queue_deadline,
            ),
        )
        job_id = int(cur.lastrowid or 0)
        self.conn.execute(
            f"INSERT INTO events (job_id, at, from_state, to_state, actor) VALUES (?, ?, NULL, '{states.CREATED}', ?)",
            (job_id, submitted_at, user),
        )
        return job_id

    def create_jobs(
        self, names: list[tuple[str, int | None]], *, user: str, submitted_at: float, **fields: Any
    ) -> list[int]:
        """New jobs in CREATED, one per (name, array index), alike in every other field (the keywords of
        `create_job`), each with its first event; returns their IDs, in order. One statement per table
        however many (the tasks of an array); the caller holds the write lock, so the IDs are the next ones."""
        row = self.conn.execute(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),"
            " COALESCE((SELECT MAX(id) FROM jobs), 0))"
        ).fetchone()
        first = int(row[0]) + 1
        ids = list(range(first, first + len(names)))
        keys = (
            "spec_id",
            "priority",
            "cpus",
            "memory_mib",
            "accelerators",
            "num_nodes",
            "labels",
            "envs",
            "backend",
            "max_attempts",
            "queue_deadline",
        )
        common = tuple(fields[k] for k in keys)
        self.conn.executemany(
            f"INSERT INTO jobs (id, name, state, array_index, user, submitted_at, {', '.join(keys)})"
            f" VALUES (?, ?, '{states.CREATED}', ?, ?, ?, {', '.join('?' * len(keys))})",
            [(job_id, name, index, user, submitted_at, *common) for job_id, (name, index) in zip(ids, names)],
        )
        self.conn.executemany(
            f"INSERT INTO events (job_id, at, from_state, to_state, actor) VALUES (?, ?, NULL, '{states.CREATED}', ?)",
            [(job_id, submitted_at, user) for job_id in ids],
        )
        return ids

    def set_wait_reason(self, job_id: int, reason: str | None, detail: str | None, message: str | None) -> None:
        """Why a waiting job waits (its reason, STATUS bracket and message), its state unchanged."""
        self.conn.execute(
            "UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE id = ?", (reason, detail, message, job_id)
        )

    def release_alloc(self, job_id: int) -> None:
        """The job's attempt ended: it holds no resources any more."""
        self.conn.execute("UPDATE jobs SET alloc = NULL WHERE id = ?", (job_id,))

    def requeue_alloc(self, job_id: int, attempt: int) -> None:
        """An attempt that never started is taken back: no resources held, the attempt number restored."""
        self.conn.execute("UPDATE jobs SET alloc = NULL, attempt = ? WHERE id = ?", (attempt, job_id))

    def keep_exit_code(self, job_id: int, exit_code: int | None) -> None:
        """Record an exit code unless one is recorded already."""
        self.conn.execute("UPDATE jobs SET exit_code = COALESCE(exit_code, ?) WHERE id = ?", (exit_code, job_id))

    def extend_attempts(self, job_id: int) -> None:
        """One more attempt allowed (an attempt that ended without failing does not use up a retry)."""
        self.conn.execute("UPDATE jobs SET max_attempts = max_attempts + 1 WHERE id = ?", (job_id,))

    def set_attempt(self, job_id: int, attempt: int, *, extend: bool = False) -> None:
        """The job's current attempt number (`extend`: one more attempt allowed too)."""
        if extend:
            self.conn.execute(
                "UPDATE jobs SET attempt = ?, max_attempts = max_attempts + 1 WHERE id = ?", (attempt, job_id)
            )
        else:
            self.conn.execute("UPDATE jobs SET attempt = ? WHERE id = ?", (attempt, job_id))

    def set_submitted(self, job_id: int, backend_id: str, attempt: int) -> None:
        """A job handed to its backend as a new attempt: the backend's ID for it, no exit code yet."""
        self.conn.execute(
            "UPDATE jobs SET backend_id = ?, attempt = ?, exit_code = NULL WHERE id = ?", (backend_id, attempt, job_id)
        )

    def mark_stale(self, job_ids: list[int], text: str) -> None:
        """Say on these unfinished jobs that what is shown is the last known state."""
        self.conn.executemany(
            f"UPDATE jobs SET message = ? WHERE id = ? AND {LIVE}", [(text, job_id) for job_id in job_ids]
        )

    def clear_message(self, job_id: int) -> None:
        """Remove the job's message."""
        self.conn.execute("UPDATE jobs SET message = NULL WHERE id = ?", (job_id,))

    def remove_finished(self, job_id: int) -> None:
        """Delete a finished job with everything recorded about it (unfinished jobs are left)."""
        self.conn.execute(f"DELETE FROM jobs WHERE id = ? AND state IN {TERMINAL_SQL}", (job_id,))

    # -- specs -----------------------------------------------------------------------------------
    def spec_id(self, digest: str, body: str) -> int:
        """The ID of the spec with this body (stored once per hash)."""
        self.conn.execute("INSERT OR IGNORE INTO specs (hash, body) VALUES (?, ?)", (digest, body))
        return int(self.conn.execute("SELECT id FROM specs WHERE hash = ?", (digest,)).fetchone()[0])

    def spec_body(self, spec_id: int) -> str:
        """The JSON text of a spec."""
        return str(self.conn.execute("SELECT body FROM specs WHERE id = ?", (spec_id,)).fetchone()[0])
