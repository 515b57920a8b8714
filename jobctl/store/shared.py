"""Queries of a shared queue (SPEC section 12): rows by ID, what `prune` may forget, per-user usage.

Every function takes an open connection and returns plain values; no other module of the shared
mode writes SQL.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

TERMINAL = "('COMPLETED', 'FAILED', 'KILLED')"


def job_row(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row | None:
    """The job's row, or None when there is no such job."""
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def job_rows(conn: sqlite3.Connection, job_ids: list[int]) -> list[sqlite3.Row]:
    """The rows of these jobs (missing ones are left out), in ID order."""
    if not job_ids:
        return []
    marks = ",".join("?" * len(job_ids))
    return conn.execute(f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY id", job_ids).fetchall()


def prunable(conn: sqlite3.Connection, cutoff: float) -> list[sqlite3.Row]:
    """Finished jobs that ended before `cutoff` and that no unfinished job depends on (as `prune`)."""
    return conn.execute(
        f"SELECT * FROM jobs WHERE state IN {TERMINAL} AND alloc IS NULL AND ended_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM deps d JOIN jobs j ON j.id = d.job_id WHERE d.dep_id = jobs.id"
        f" AND j.state NOT IN {TERMINAL})",
        (cutoff,),
    ).fetchall()


def user_usage(
    conn: sqlite3.Connection, now: float, half_life: float = 86400.0, horizon: float = 7 * 86400.0
) -> dict[str, tuple[float, float]]:
    """Recent usage per user: (GPU-hours, CPU-hours) of every attempt that ran in the last `horizon`
    seconds, each hour weighted by 2^(-age / half_life) (so usage a day old counts half).

    An attempt still running counts up to `now`. The resources of an attempt are those the job held
    (its allocation) or, once released, those it asked for (CPUs x nodes, accelerator count x nodes).
    """
    rows = conn.execute(
        "SELECT j.user, j.cpus, j.num_nodes, j.accelerators, j.alloc, a.started_at, a.ended_at"
        " FROM attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE a.started_at IS NOT NULL AND (a.ended_at IS NULL OR a.ended_at > ?)",
        (now - horizon,),
    ).fetchall()
    usage: dict[str, list[float]] = {}
    rate = math.log(2) / half_life
    for user, cpus, nodes, accelerators, alloc, started, ended in rows:
        end = min(ended if ended is not None else now, now)
        if end <= started:
            continue
        gpus = _gpus(alloc, accelerators, nodes)
        # integral of 2^(-(now - t)/half_life) dt from started to end, in hours
        weight = (math.exp(-rate * (now - end)) - math.exp(-rate * (now - started))) / rate / 3600.0
        total = usage.setdefault(user, [0.0, 0.0])
        total[0] += gpus * weight
        total[1] += float(cpus) * int(nodes) * weight
    return {user: (g, c) for user, (g, c) in usage.items()}


def _gpus(alloc: str | None, accelerators: str | None, nodes: int) -> int:
    try:
        held: Any = json.loads(alloc) if alloc else None
        if isinstance(held, dict) and isinstance(held.get("devices"), list):
            return len(held["devices"])
        asked: Any = json.loads(accelerators) if accelerators else []
        if asked and isinstance(asked[0], list):
            return int(asked[0][1]) * int(nodes)
    except (ValueError, TypeError, IndexError):
        pass
    return 0
