"""Usage per attempt (SPEC section 11): every SQL statement about it.

`attempts.usage` (migration 3) holds one JSON object per attempt: wall_seconds, cpu_seconds,
max_rss_bytes, gpu_seconds and, where a GPU answered, gpu_util_avg and gpu_memory_max_bytes.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobUsage:
    """One job as `jobctl stats` sums it."""

    id: int
    name: str
    user: str
    queue: str | None
    labels: dict[str, str]
    state: str
    submitted_at: float
    first_started_at: float | None
    usages: list[dict[str, Any]] = field(default_factory=list)


def record(conn: sqlite3.Connection, job_id: int, attempt: int, usage: dict[str, Any] | None) -> None:
    """Keep an attempt's usage (inside the caller's transaction); None leaves what is there."""
    if usage:
        conn.execute(
            "UPDATE attempts SET usage = ? WHERE job_id = ? AND n = ?",
            (json.dumps(usage, separators=(",", ":"), sort_keys=True), job_id, attempt),
        )


def missing(conn: sqlite3.Connection, job_id: int, attempt: int) -> bool:
    row = conn.execute("SELECT usage FROM attempts WHERE job_id = ? AND n = ?", (job_id, attempt)).fetchone()
    return row is not None and row[0] is None


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def jobs_since(conn: sqlite3.Connection, since: float | None) -> list[JobUsage]:
    """Every job submitted at or after `since` (all when None), with the usage of each attempt.

    The `queue` column is read when the schema has one (jobs without it are in `default`)."""
    queue = "j.queue" if _has_column(conn, "jobs", "queue") else "NULL"
    rows = conn.execute(
        f"SELECT j.id, j.name, j.user, {queue}, j.labels, j.state, j.submitted_at,"
        " (SELECT MIN(a.started_at) FROM attempts a WHERE a.job_id = j.id)"
        " FROM jobs j WHERE j.submitted_at >= ? ORDER BY j.id",
        (since if since is not None else float("-inf"),),
    ).fetchall()
    jobs = {r[0]: JobUsage(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else {}, r[5], r[6], r[7]) for r in rows}
    if not jobs:
        return []
    low = min(jobs)
    for job_id, text in conn.execute(
        "SELECT job_id, usage FROM attempts WHERE job_id >= ? AND usage IS NOT NULL", (low,)
    ):
        job = jobs.get(job_id)
        if job is None:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            job.usages.append(value)
    return list(jobs.values())
