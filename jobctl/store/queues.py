"""The SQL of everyday queueing (SPEC section 9): named queues, start times, array throttles,
`update`, and retention. Every function runs on the caller's connection (inside its transaction
where it writes); none opens its own.

Tables and columns (migration 3 in store/database.py): `queues(name, max_running, cpus, gpus,
paused)`, and on `jobs`: `queue`, `start_at` (epoch seconds; not started before), `array_id` (the
array's first job ID) and `array_throttle` (how many tasks of the array may hold resources at once).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobctl.core.scheduler import QueueLimit

TERMINAL_SQL = "('COMPLETED', 'FAILED', 'KILLED')"
WAITING_SQL = "('CREATED', 'PENDING', 'BLOCKED', 'RETRYING')"
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class QueueRow:
    """One line of `queue list`."""

    name: str
    running: int
    waiting: int
    max_running: int | None
    cpus: float | None
    gpus: int | None
    paused: bool


# -- queues -----------------------------------------------------------------------------------------
def limits(conn: sqlite3.Connection) -> dict[str, QueueLimit]:
    """The caps of every queue that has any (queues never configured have none)."""
    return {
        name: QueueLimit(max_running, cpus, gpus, bool(paused))
        for name, max_running, cpus, gpus, paused in conn.execute(
            "SELECT name, max_running, cpus, gpus, paused FROM queues"
        )
    }


def set_queue(conn: sqlite3.Connection, name: str, changes: dict[str, Any]) -> None:
    """Create the queue if needed, then set the given columns (max_running, cpus, gpus, paused)."""
    conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (name,))
    allowed = {"max_running", "cpus", "gpus", "paused"}
    assert set(changes) <= allowed, changes
    if changes:
        assignments = ", ".join(f"{key} = ?" for key in changes)
        conn.execute(f"UPDATE queues SET {assignments} WHERE name = ?", (*changes.values(), name))


def list_queues(conn: sqlite3.Connection) -> list[QueueRow]:
    """Every queue that is configured or holds an unfinished job, and `default`, by name."""
    counts: dict[str, list[int]] = {DEFAULT_QUEUE: [0, 0]}
    for queue, state, n in conn.execute(
        f"SELECT queue, state, COUNT(*) FROM jobs WHERE state NOT IN {TERMINAL_SQL} GROUP BY queue, state"
    ):
        entry = counts.setdefault(queue, [0, 0])
        if state in ("ACTIVE", "FAILING"):
            entry[0] += n
        elif state in ("CREATED", "PENDING", "BLOCKED", "RETRYING"):
            entry[1] += n
    caps = limits(conn)
    for name in caps:
        counts.setdefault(name, [0, 0])
    out = []
    for name in sorted(counts):
        cap = caps.get(name, QueueLimit())
        out.append(QueueRow(name, counts[name][0], counts[name][1], cap.max_running, cap.cpus, cap.gpus, cap.paused))
    return out


# -- the supervisor's pass -------------------------------------------------------------------------
def window(
    conn: sqlite3.Connection, now: float, size: int, closed_queues: Iterable[str], closed_arrays: Iterable[int]
) -> list[sqlite3.Row]:
    """The best-ranked local jobs that may start now (PENDING or RETRYING), at most `size` of them.

    Jobs whose start time has not come, whose queue is paused or full, or whose array is at its
    throttle are left out here, so that however many of them there are, they never crowd the
    jobs that could start out of the window."""
    queues, arrays = sorted(set(closed_queues)), sorted(set(closed_arrays))
    sql = (
        "SELECT * FROM jobs INDEXED BY jobs_queue WHERE state IN ('PENDING', 'RETRYING') AND backend = 'local'"
        " AND (start_at IS NULL OR start_at <= ?)"
    )
    args: list[Any] = [now]
    if queues:
        sql += f" AND queue NOT IN ({', '.join('?' * len(queues))})"
        args += queues
    if arrays:
        sql += f" AND (array_id IS NULL OR array_id NOT IN ({', '.join('?' * len(arrays))}))"
        args += arrays
    sql += " ORDER BY priority DESC, submitted_at, id LIMIT ?"
    return conn.execute(sql, (*args, size)).fetchall()


def scheduled(conn: sqlite3.Connection, now: float) -> tuple[list[sqlite3.Row], float | None]:
    """Local PENDING jobs whose start time is still to come and that do not say so yet (id, start_at),
    and the earliest start time to come (None: none)."""
    rows = conn.execute(
        "SELECT id, start_at FROM jobs INDEXED BY jobs_start_at WHERE start_at > ?"
        " AND state = 'PENDING' AND backend = 'local' AND reason IS NOT 'scheduled'",
        (now,),
    ).fetchall()
    earliest = conn.execute(
        "SELECT MIN(start_at) FROM jobs INDEXED BY jobs_start_at WHERE start_at > ? AND state = 'PENDING'"
        " AND backend = 'local'",
        (now,),
    ).fetchone()[0]
    return rows, earliest


def mark_held_back(
    conn: sqlite3.Connection,
    now: float,
    reason: str,
    detail: str,
    message: str,
    *,
    queue: str | None = None,
    array_id: int | None = None,
    only_new: bool = False,
) -> None:
    """Say why the local PENDING jobs of a queue (or of an array) that can start nothing now wait.
    One statement; only rows whose reason or detail changes are written. `only_new`: only jobs that
    say nothing yet (just queued or requeued, or whose start time has come), found through an index,
    so that a pass over a long closed queue costs nothing per job."""
    column, value = ("queue", queue) if queue is not None else ("array_id", array_id)
    which = " AND (reason IS NULL OR reason = 'scheduled')" if only_new else ""
    conn.execute(
        f"UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE state = 'PENDING' AND {column} = ?{which}"
        " AND backend = 'local' AND (start_at IS NULL OR start_at <= ?) AND (reason IS NOT ? OR detail IS NOT ?)",
        (reason, detail, message, value, now, reason, detail),
    )


def set_waiting_reason(conn: sqlite3.Connection, job_id: int, reason: str, detail: str, message: str | None) -> None:
    """The reason a PENDING job waits (the scheduler's word), when it changed."""
    conn.execute(
        "UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE id = ? AND state = 'PENDING'"
        " AND (reason IS NOT ? OR detail IS NOT ? OR message IS NOT ?)",
        (reason, detail, message, job_id, reason, detail, message),
    )


# -- launch ------------------------------------------------------------------------------------------
def set_launch_fields(
    conn: sqlite3.Connection,
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
    conn.executemany(
        "UPDATE jobs SET queue = ?, start_at = ?, array_id = ?, array_throttle = ? WHERE id = ?",
        [(queue, start_at, array_id, array_throttle, job_id) for job_id in job_ids],
    )


# -- update ------------------------------------------------------------------------------------------
def job(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def spec_body(conn: sqlite3.Connection, spec_id: int) -> dict[str, Any]:
    return json.loads(conn.execute("SELECT body FROM specs WHERE id = ?", (spec_id,)).fetchone()[0])


def store_spec(conn: sqlite3.Connection, digest: str, body: str) -> int:
    """The ID of a spec body (specs are shared by content: a changed one is a new row)."""
    conn.execute("INSERT OR IGNORE INTO specs (hash, body) VALUES (?, ?)", (digest, body))
    return conn.execute("SELECT id FROM specs WHERE hash = ?", (digest,)).fetchone()[0]


def update_job(
    conn: sqlite3.Connection, job_id: int, expect_state: str, fields: dict[str, Any], actor: str, message: str
) -> bool:
    """Change columns of a job still in `expect_state`, and append an event that says what changed
    (from and to the same state, reason `updated`). False when the job moved on meanwhile."""
    allowed = {"priority", "queue", "labels", "spec_id", "max_attempts", "reason", "detail"}
    assert set(fields) <= allowed, fields
    assignments = ", ".join(f"{key} = ?" for key in fields)
    cursor = conn.execute(
        f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?", (*fields.values(), job_id, expect_state)
    )
    if cursor.rowcount != 1:
        return False
    conn.execute(
        "INSERT INTO events (job_id, at, from_state, to_state, reason, actor, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, time.time(), expect_state, expect_state, "updated", actor, message),
    )
    return True


# -- arrays in the status table -------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayStats:
    array_id: int
    counts: dict[str, int]  # state -> tasks
    first_index: int
    last_index: int
    started_at: float | None
    ended_at: float | None  # the last end, once every task has ended
    tasks: int


def array_stats(conn: sqlite3.Connection, array_ids: Iterable[int]) -> dict[int, ArrayStats]:
    """Per array: its tasks by state, its index range, its first start and its last end."""
    ids = sorted(set(array_ids))
    out: dict[int, ArrayStats] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        marks = ", ".join("?" * len(chunk))
        counts: dict[int, dict[str, int]] = {}
        for array_id, state, n in conn.execute(
            f"SELECT array_id, state, COUNT(*) FROM jobs WHERE array_id IN ({marks}) GROUP BY array_id, state", chunk
        ):
            counts.setdefault(array_id, {})[state] = n
        for array_id, lo, hi, started, ended, total, live in conn.execute(
            f"SELECT array_id, MIN(array_index), MAX(array_index), MIN(started_at), MAX(ended_at), COUNT(*),"
            f" SUM(state NOT IN {TERMINAL_SQL}) FROM jobs WHERE array_id IN ({marks}) GROUP BY array_id",
            chunk,
        ):
            out[array_id] = ArrayStats(
                array_id, counts.get(array_id, {}), lo, hi, started, ended if not live else None, total
            )
    return out


# -- retention ---------------------------------------------------------------------------------------
def forgettable(conn: sqlite3.Connection, older_than: float | None, keep_newest: int | None) -> list[sqlite3.Row]:
    """Finished local and Slurm jobs to forget: ended before `older_than` (epoch seconds), or beyond
    the `keep_newest` most recently ended finished jobs. Never one an unfinished job depends on,
    never one whose processes are still ending (as `prune`)."""
    keep = (
        " AND NOT EXISTS (SELECT 1 FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = jobs.id"
        f" AND j.state NOT IN {TERMINAL_SQL})"
    )
    found: dict[int, sqlite3.Row] = {}
    if older_than is not None:
        for row in conn.execute(
            f"SELECT * FROM jobs WHERE state IN {TERMINAL_SQL} AND alloc IS NULL AND ended_at < ?{keep}",
            (older_than,),
        ):
            found[row["id"]] = row
    if keep_newest is not None:
        total = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN {TERMINAL_SQL}").fetchone()[0]
        if total > keep_newest:
            for row in conn.execute(
                f"SELECT * FROM jobs WHERE state IN {TERMINAL_SQL} AND alloc IS NULL{keep}"
                " ORDER BY ended_at DESC, id DESC LIMIT -1 OFFSET ?",
                (keep_newest,),
            ):
                found[row["id"]] = row
    return sorted(found.values(), key=lambda r: r["id"])


def oldest_end(conn: sqlite3.Connection, after: float | None = None) -> float | None:
    """The earliest end of a finished job (ending after `after` when given); None when there is none."""
    if after is None:
        return conn.execute(f"SELECT MIN(ended_at) FROM jobs WHERE state IN {TERMINAL_SQL}").fetchone()[0]
    return conn.execute(
        f"SELECT MIN(ended_at) FROM jobs WHERE state IN {TERMINAL_SQL} AND ended_at >= ?", (after,)
    ).fetchone()[0]
