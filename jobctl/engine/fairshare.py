"""Fair share between users and per-user caps for one scheduling pass (SPEC section 12).

The rules are in the pure scheduler (jobctl/core/scheduler.py: UserPolicy, fair_order, UserCaps);
this module gathers their inputs: recent usage per user from the store (`Store.user_usage`, only
when more than one user has jobs in the pass, so a one-person queue pays nothing) and the caps from
config.toml (`limits.max_gpus_per_user`, `limits.max_running_per_user`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobctl.core.scheduler import UserPolicy
from jobctl.store.database import Store
from jobctl.store.records import Job


def user_policy(
    db: Store,
    pending: Sequence[Job],
    holding: Sequence[Job],
    limits: tuple[int | None, int | None],
    now: float,
) -> UserPolicy | None:
    """The pass's UserPolicy; None when one user alone has jobs and no cap is set (rank order alone)."""
    max_gpus, max_running = limits
    users = {row.user for row in pending} | {row.user for row in holding}
    if len(users) <= 1 and max_gpus is None and max_running is None:
        return None
    usage = db.user_usage(now) if len(users) > 1 else {}
    return UserPolicy(usage, max_gpus, max_running)


def limits_of(config: Any) -> tuple[int | None, int | None]:
    """(max GPUs, max running jobs) per user from config.toml; None where unset."""
    get = config.get
    return get("limits.max_gpus_per_user"), get("limits.max_running_per_user")
