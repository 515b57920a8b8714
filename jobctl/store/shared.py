"""The queries of a shared queue (SPEC section 12): per-user recent usage for fair share.

`Store` has these methods through `SharedQueries`; each runs in the caller's transaction. The rest
of what a shared queue's supervisor asks of the database (jobs by ID, what `prune` may forget) is
the everyday Store API (jobctl/store/jobs.py: `job`, `jobs`, `prunable`). A shared queue adds no
table or column: a job's owner is the `user` column, its uid and recorded environment are in its
`envs` document (`run_as`, `base_env`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobctl.store.base import Queries

DAY = 86400.0


class SharedQueries(Queries):
    def user_usage(
        self, now: float, half_life: float = DAY, horizon: float = 7 * DAY
    ) -> dict[str, tuple[float, float]]:
        """Recent usage per user: (GPU-hours, CPU-hours) of every attempt that ran in the last
        `horizon` seconds, each hour weighted by 2^(-age / half_life) (so usage a day old counts half).

        An attempt still running counts up to `now`. The resources of an attempt are those the job
        held (its allocation) or, once released, those it asked for (CPUs x nodes, accelerator count
        x nodes).
        """
        rows = self._tuples(
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
