"""A job as one JSON document (SPEC section 4): what `--json` prints, the dashboard serves and a
notify webhook posts. Here, below both the CLI and the supervisor, so that each renders a job the
same way without importing the other; `jobctl/cli/views.py` re-exports it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobctl.core import states
from jobctl.store.records import Job, loads

JSON_FIELDS = (
    "id",
    "name",
    "state",
    "status",
    "reason",
    "message",
    "exit_code",
    "attempt",
    "max_attempts",
    "resources",
    "num_nodes",
    "submitted_at",
    "started_at",
    "ended_at",
    "labels",
    "backend",
    "backend_id",
    "user",
    "queue",
    "array_id",
    "array_index",
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def job_json(row: Job) -> dict[str, Any]:
    accs = loads(row.accelerators, [])
    return {
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "status": states.status_text(row.state, row.detail),
        "reason": row.reason,
        "message": row.message,
        "exit_code": row.exit_code,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "resources": {
            "cpus": row.cpus,
            "memory_gib": round(row.memory_mib / 1024, 3),
            "accelerators": {name: count for name, count in accs} if accs else None,
        },
        "num_nodes": row.num_nodes,
        "submitted_at": iso(row.submitted_at),
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "labels": loads(row.labels, {}),
        "backend": row.backend,
        "backend_id": row.backend_id,
        "user": row.user,
        "queue": row.queue,  # SPEC section 9
        "array_id": row.array_id,
        "array_index": row.array_index,
    }
