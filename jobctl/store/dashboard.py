"""The queries of the dashboard (SPEC section 13) that the CLI has no command for.

Only reads, each one statement: the attempts that overlap a time window (for the Timeline), and
the attempts and job counts since a time (for the Usage page). Everything else the dashboard shows
comes from the same service functions as the CLI's `--json`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from jobctl.store.database import loads


@dataclass(frozen=True)
class AttemptSpan:
    """One attempt of a job, with what the job asked for and where it stands now."""

    job_id: int
    name: str
    user: str
    backend: str
    n: int  # the attempt's number, from 1
    started_at: float
    ended_at: float | None  # None: still running (or its end is not recorded yet)
    outcome: str | None  # the runner's outcome: completed, exit_code, preempted, released, killed ...
    exit_code: int | None
    job_state: str
    job_detail: str | None
    job_attempt: int  # the job's current attempt: n == job_attempt is its last one
    job_ended_at: float | None
    submitted_at: float
    cpus: float  # per node
    memory_mib: int  # per node
    num_nodes: int
    accelerators: list[list[Any]]  # [[name, count per node], ...]
    alloc: dict[str, Any] | None  # what the job holds now (its current attempt only)


_SPAN_COLUMNS = (
    "a.job_id, j.name, j.user, j.backend, a.n, a.started_at, a.ended_at, a.outcome, a.exit_code,"
    " j.state, j.detail, j.attempt, j.ended_at, j.submitted_at, j.cpus, j.memory_mib, j.num_nodes,"
    " j.accelerators, j.alloc"
)


def _span(row: sqlite3.Row | tuple[Any, ...]) -> AttemptSpan:
    values = tuple(row)
    return AttemptSpan(
        job_id=values[0],
        name=values[1],
        user=values[2],
        backend=values[3],
        n=values[4],
        started_at=values[5],
        ended_at=values[6],
        outcome=values[7],
        exit_code=values[8],
        job_state=values[9],
        job_detail=values[10],
        job_attempt=values[11],
        job_ended_at=values[12],
        submitted_at=values[13],
        cpus=values[14],
        memory_mib=values[15],
        num_nodes=values[16],
        accelerators=loads(values[17], []),
        alloc=loads(values[18]),
    )


def attempts_between(conn: sqlite3.Connection, start: float, end: float) -> list[AttemptSpan]:
    """Attempts that ran at some moment of [start, end], oldest start first.

    An attempt without a recorded end counts as running (its job's own end is used by the caller
    when the job is terminal and holds nothing any more)."""
    rows = conn.execute(
        f"SELECT {_SPAN_COLUMNS} FROM attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE a.started_at IS NOT NULL AND a.started_at <= ?"
        " AND (a.ended_at IS NULL OR a.ended_at >= ? OR (j.attempt = a.n AND j.alloc IS NOT NULL))"
        " ORDER BY a.started_at, a.job_id, a.n",
        (end, start),
    ).fetchall()
    return [_span(r) for r in rows]


@dataclass(frozen=True)
class JobCount:
    """Jobs submitted in a period, by user, name and state."""

    user: str
    name: str
    state: str
    count: int
    waited: float  # seconds from submission to the first start, summed over the started ones
    started: int  # how many of them started


def jobs_since(conn: sqlite3.Connection, since: float) -> list[JobCount]:
    """Jobs submitted since `since`, counted by (user, name, state), with their total wait."""
    rows = conn.execute(
        "SELECT j.user, j.name, j.state, COUNT(*),"
        " COALESCE(SUM(f.first_start - j.submitted_at), 0), COUNT(f.first_start)"
        " FROM jobs j LEFT JOIN (SELECT job_id, MIN(started_at) AS first_start FROM attempts"
        " GROUP BY job_id) f ON f.job_id = j.id"
        " WHERE j.submitted_at >= ? GROUP BY j.user, j.name, j.state",
        (since,),
    ).fetchall()
    return [JobCount(r[0], r[1], r[2], r[3], max(0.0, float(r[4])), r[5]) for r in rows]
