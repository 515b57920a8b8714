"""Everyday queueing in the supervisor's pass (SPEC section 9): start times, queue caps and pauses,
array throttles. `prepare` runs at the start of `Engine.schedule`, in its transaction: it says why
jobs that cannot be considered wait, and which ones the queue window must leave out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobctl.core.scheduler import QueueLimit
from jobctl.store.database import Store
from jobctl.store.records import Job

# reasons of a PENDING job held back by its queue or its array (see scheduler._Gate)
HELD_BACK = ("queue_full", "queue_paused", "throttled")


@dataclass
class Gate:
    limits: dict[str, QueueLimit] = field(default_factory=dict)
    closed_queues: dict[str, str] = field(default_factory=dict)  # queue -> "queue_full" | "queue_paused"
    closed_arrays: dict[int, int] = field(default_factory=dict)  # array ID -> its throttle, reached


def start_text(ts: float) -> str:
    """`starts 11/30/26 10:00PM`: the bracket of a job waiting for its start time."""
    return "starts " + dt.datetime.fromtimestamp(ts).strftime("%m/%d/%y %I:%M%p")


def _field(row: Job | dict[str, Any], key: str) -> Any:
    """A column of a job record, or of the dict that stands for a whole queue or array."""
    return row[key] if isinstance(row, dict) else getattr(row, key)


def detail(why: str, row: Job | dict[str, Any]) -> str:
    """The bracket of STATUS for a job held back: `queue gpu full`, `queue gpu paused`, `array throttle 4`."""
    if why == "queue_full":
        return f"queue {_field(row, 'queue')} full"
    if why == "queue_paused":
        return f"queue {_field(row, 'queue')} paused"
    return f"array throttle {_field(row, 'array_throttle')}"


def message(why: str, row: Job | dict[str, Any]) -> str:
    """Why a job held back by its queue or array waits, in a sentence."""
    if why == "queue_full":
        return f"queue {_field(row, 'queue')} is at its cap (jobctl queue list; jobctl queue set {_field(row, 'queue')} ...)"
    if why == "queue_paused":
        return f"queue {_field(row, 'queue')} is paused; `jobctl queue resume {_field(row, 'queue')}` starts its jobs again"
    return f"at most {_field(row, 'array_throttle')} tasks of array {_field(row, 'array_id')} run at once"


def prepare(
    db: Store,
    now: float,
    holding: Sequence[Job],
    actions: Any,
    memo: dict[tuple[str, Any], str] | None = None,
) -> Gate:
    """Mark jobs waiting for their start time (`PENDING (starts ...)`, reason `scheduled`) and wake
    the supervisor then; find the queues and arrays that can start nothing now and say so on their
    waiting jobs. `memo` (kept by the caller between passes): what was said last time, so that only
    jobs new to a queue or array that stays closed are looked at."""
    memo = {} if memo is None else memo
    rows, earliest = db.scheduled("local", now)
    for row in rows:
        assert row.start_at is not None  # selected so
        db.set_waiting_reason(row.id, "scheduled", start_text(row.start_at), None)
    if earliest is not None:
        actions.wake_at(earliest)
    gate = Gate(limits=db.queue_limits())
    running: dict[str, int] = {}
    in_array: dict[int, int] = {}
    for row in holding:
        running[row.queue] = running.get(row.queue, 0) + 1
        if row.array_id is not None and row.array_throttle is not None:
            in_array[row.array_id] = in_array.get(row.array_id, 0) + 1
            if in_array[row.array_id] >= row.array_throttle:
                gate.closed_arrays[row.array_id] = row.array_throttle
    for name, limit in gate.limits.items():
        if limit.paused:
            gate.closed_queues[name] = "queue_paused"
        elif limit.max_running is not None and running.get(name, 0) >= limit.max_running:
            gate.closed_queues[name] = "queue_full"
    closed: dict[tuple[str, Any], str] = {("queue", n): why for n, why in gate.closed_queues.items()}
    closed.update({("array", a): f"throttled {t}" for a, t in gate.closed_arrays.items()})
    for key, said in closed.items():
        kind, name = key
        why = "throttled" if kind == "array" else said
        if kind == "queue":
            info: dict[str, Any] = {"queue": name}
            where: dict[str, Any] = {"queue": name}
        else:
            info = {"array_id": name, "array_throttle": gate.closed_arrays[name]}
            where = {"array_id": name}
        only_new = memo.get(key) == said  # closed as before: its other jobs already say so
        db.mark_held_back("local", now, why, detail(why, info), message(why, info), only_new=only_new, **where)
    memo.clear()
    memo.update(closed)
    return gate


def throttles(rows: Sequence[Job]) -> dict[int, int]:
    """Array ID -> throttle, for the arrays of these jobs that have one."""
    return {r.array_id: r.array_throttle for r in rows if r.array_id is not None and r.array_throttle}
