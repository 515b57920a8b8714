"""Usage per attempt (SPEC section 11): every SQL statement about it.

`attempts.usage` (migration 3; `Attempt.usage`) holds one JSON object per attempt: wall_seconds,
cpu_seconds, max_rss_bytes, gpu_seconds and, where a GPU answered, gpu_util_avg and
gpu_memory_max_bytes. `Store` has these methods through `UsageQueries`; `jobctl stats` and the
dashboard's Usage page sum `usage_jobs_since` (app/reports.py).
"""

import json
from typing import Any, NamedTuple

from jobctl.store.base import Queries


class JobUsage(NamedTuple):
    """One job as `jobctl stats` sums it: who, what, its state, and the usage of each attempt."""

    id: int
    name: str
    user: str
    queue: str | None
    labels: dict[str, str]
    state: str
    submitted_at: float
    first_started_at: float | None
    usages: tuple[dict[str, Any], ...] = ()


class UsageQueries(Queries):
    def record_usage(self, job_id: int, attempt: int, usage: dict[str, Any] | None) -> None:
        """Keep an attempt's usage (inside the caller's transaction); None leaves what is there."""
        if usage:
            self.conn.execute(
                "UPDATE attempts SET usage = ? WHERE job_id = ? AND n = ?",
                (json.dumps(usage, separators=(",", ":"), sort_keys=True), job_id, attempt),
            )

    def usage_missing(self, job_id: int, attempt: int) -> bool:
        """Whether an existing attempt has no usage recorded yet."""
        row = self._tuples("SELECT usage FROM attempts WHERE job_id = ? AND n = ?", (job_id, attempt)).fetchone()
        return row is not None and row[0] is None

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self._tuples(f"PRAGMA table_info({table})"))

    def usage_jobs_since(self, since: float | None) -> list[JobUsage]:
        """Every job submitted at or after `since` (all when None), with the usage of each attempt.

        The `queue` column is read when the schema has one (jobs without it are in `default`)."""
        queue = "j.queue" if self._has_column("jobs", "queue") else "NULL"
        rows = self._tuples(
            f"SELECT j.id, j.name, j.user, {queue}, j.labels, j.state, j.submitted_at,"
            " (SELECT MIN(a.started_at) FROM attempts a WHERE a.job_id = j.id)"
            " FROM jobs j WHERE j.submitted_at >= ? ORDER BY j.id",
            (since if since is not None else float("-inf"),),
        ).fetchall()
        if not rows:
            return []
        usages: dict[int, list[dict[str, Any]]] = {r[0]: [] for r in rows}
        for job_id, text in self._tuples(
            "SELECT job_id, usage FROM attempts WHERE job_id >= ? AND usage IS NOT NULL ORDER BY job_id, n",
            (min(usages),),
        ):
            found = usages.get(job_id)
            if found is None:
                continue
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return [
            JobUsage(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else {}, r[5], r[6], r[7], tuple(usages[r[0]]))
            for r in rows
        ]
