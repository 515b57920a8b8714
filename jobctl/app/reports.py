"""What happened to jobs, for `describe` and `jobctl stats`: usage per attempt (SPEC section 11)
and notification deliveries (section 10). Reads only; the SQL is in `jobctl/store/`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobctl.core import states
from jobctl.core.accounting import USAGE_FIELDS

if TYPE_CHECKING:
    from jobctl.store.database import Store


def attempt_usage(attempt: dict[str, Any]) -> dict[str, Any] | None:
    """An attempts row's `usage` column as the JSON document shows it (None: not measured)."""
    raw = attempt.get("usage")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return {k: data.get(k) for k in USAGE_FIELDS if k in data} if isinstance(data, dict) else None


def latest_usage(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    for a in reversed(attempts):
        if a.get("usage"):
            return a["usage"]
    return None


def bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def usage_text(usage: dict[str, Any] | None) -> str:
    """`describe`'s Usage line: `wall 12.0s, CPU 2.0s (17%), peak memory 300.5 MiB, GPU 0s`."""
    if not usage:
        return "-"
    wall, cpu = usage.get("wall_seconds"), usage.get("cpu_seconds")
    parts = [f"wall {seconds_text(wall)}"]
    if cpu is not None:
        share = f" ({100 * cpu / wall:.0f}% of one CPU)" if wall else ""
        parts.append(f"CPU {seconds_text(cpu)}{share}")
    parts.append(f"peak memory {bytes_text(usage.get('max_rss_bytes'))}")
    if usage.get("gpu_seconds"):
        parts.append(f"GPU {seconds_text(usage['gpu_seconds'])}")
    if usage.get("gpu_util_avg") is not None:
        parts.append(f"GPU util {usage['gpu_util_avg']:.0f}%")
    if usage.get("gpu_memory_max_bytes") is not None:
        parts.append(f"GPU memory {bytes_text(usage['gpu_memory_max_bytes'])}")
    return ", ".join(parts)


def notification_details(store: Store, job_id: int) -> list[dict[str, Any]]:
    """A job's deliveries for `describe --json`: target, state, outcome and every try."""
    from jobctl.core.notify import describe_target

    rows, tries = store.notifications_of(job_id)
    out = []
    for n in rows:
        target = n.target_doc
        out.append(
            {
                "target": describe_target(target),
                "kind": target.get("kind"),
                "origin": target.get("origin"),
                "state": n.state,
                "outcome": n.outcome,
                "tries": [{"at": t.at, "ok": t.ok, "message": t.message} for t in tries if t.notification_id == n.id],
                "next_try_at": n.next_try_at if n.outcome == "pending" else None,
                "created_at": n.created_at,
            }
        )
    return out


def notification_events(notifications: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(time, text) lines for describe's Events timeline: each try, and each delivery still waiting."""
    from jobctl.store.notifications import MAX_TRIES

    lines: list[tuple[float, str]] = []
    for n in notifications:
        for i, t in enumerate(n["tries"], start=1):
            if t["ok"]:
                text = f"notify {n['target']} ({n['state']}): delivered ({t['message']})"
            else:
                left = "gave up" if i >= MAX_TRIES else f"try {i} of {MAX_TRIES}, will retry"
                text = f"notify {n['target']} ({n['state']}): failed, {t['message']} ({left})"
            lines.append((t["at"], text))
        if n["outcome"] == "pending" and not n["tries"]:
            lines.append((n["created_at"], f"notify {n['target']} ({n['state']}): queued"))
    return lines


# -- jobctl stats --------------------------------------------------------------------------------


@dataclass
class Group:
    key: str
    jobs: int = 0
    completed: int = 0
    failed: int = 0
    killed: int = 0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    waits: list[float] = field(default_factory=list)

    def as_json(self, by: str) -> dict[str, Any]:
        return {
            by: self.key,
            "jobs": self.jobs,
            "completed": self.completed,
            "failed": self.failed,
            "killed": self.killed,
            "cpu_hours": round(self.cpu_seconds / 3600, 6),
            "gpu_hours": round(self.gpu_seconds / 3600, 6),
            "peak_memory_bytes": self.peak_memory_bytes,
            "mean_wait_seconds": round(sum(self.waits) / len(self.waits), 3) if self.waits else None,
        }


BY_CHOICES = ("user", "queue", "name", "label:KEY")


def check_by(by: str) -> str:
    from jobctl.errors import UsageError

    if by in ("user", "queue", "name") or (by.startswith("label:") and len(by) > len("label:")):
        return by
    raise UsageError(f"--by: expected user, queue, name or label:KEY, got {by!r}")


def stats(store: Store, since: float | None, by: str) -> list[Group]:
    """Jobs submitted since `since`, summed per group like sacct/sreport (SPEC section 11).

    A job counts once (its latest state); CPU and GPU time add up every attempt; peak memory is the
    largest of any attempt; the wait is submitted -> first start, for jobs that started."""
    groups: dict[str, Group] = {}
    for job in store.usage_jobs_since(since):
        key = _group_key(job, by)
        g = groups.setdefault(key, Group(key))
        g.jobs += 1
        g.completed += job.state == states.COMPLETED
        g.failed += job.state == states.FAILED
        g.killed += job.state == states.KILLED
        for usage in job.usages:
            g.cpu_seconds += float(usage.get("cpu_seconds") or 0.0)
            g.gpu_seconds += float(usage.get("gpu_seconds") or 0.0)
            rss = usage.get("max_rss_bytes")
            if isinstance(rss, (int, float)):
                g.peak_memory_bytes = int(max(rss, g.peak_memory_bytes or 0))
        if job.first_started_at is not None:
            g.waits.append(max(0.0, job.first_started_at - job.submitted_at))
    return sorted(groups.values(), key=lambda g: (-g.jobs, g.key))


def _group_key(job: Any, by: str) -> str:
    if by == "user":
        return job.user
    if by == "name":
        return job.name
    if by == "queue":
        return job.queue or "default"
    value = job.labels.get(by[len("label:") :])
    return "-" if value is None else str(value)
