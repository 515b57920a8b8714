"""Retention (SPEC section 9): the supervisor forgets old finished jobs and their logs by itself.

Config `retention.max_age` (e.g. "30d": finished jobs that ended longer ago) and
`retention.max_finished` (e.g. 10000: only the newest that many finished jobs are kept). Jobs are
removed as `jobctl rm` removes them (the row, its events, attempts and workers, and its log
folder); a finished job that an unfinished one depends on is kept, as `prune` keeps it.
"""

from __future__ import annotations

from typing import Any

from jobctl.core.units import parse_duration

EVERY = 1.0  # seconds: at most one retention pass this often
AGE_RECHECK = 60.0  # seconds: with max_age set, look again this often (jobs age without any event)


class Retention:
    def __init__(self, paths: Any):
        self.paths = paths
        self.next = 0.0
        self.service: Any = None

    def run(self, store: Any, config: Any, now: float) -> float | None:
        """Forget what the settings say to forget; returns when to look again (None: at the next pass)."""
        max_age, max_finished = config.get("retention.max_age"), config.get("retention.max_finished")
        if max_age is None and max_finished is None:
            return None
        if now < self.next:
            return self.next
        self.next = now + EVERY
        from jobctl.app import control

        if self.service is None:
            from jobctl.app.session import Service

            self.service = Service(self.paths)
        self.service._store = store
        age = parse_duration(max_age) if max_age is not None else None
        cutoff = now - age if age is not None else None
        for row in store.forgettable(cutoff, max_finished):
            control.remove(self.service, row)
        if age is None:
            return None
        # the next finished job to come of age (those kept for an unfinished dependent are passed over)
        oldest = store.oldest_end(cutoff)
        return now + AGE_RECHECK if oldest is None else max(self.next, min(oldest + age, now + AGE_RECHECK))
