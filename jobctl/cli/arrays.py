"""An array in the status table as one summary row (SPEC section 9):
`12  sweep[0-99]  ACTIVE (4 running, 90 completed, 6 pending)`.

The counts are over every task of the array (one grouped query), not only the tasks the table
would have shown; `status --expand` and `--json` list the tasks themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from jobctl.core import states
from jobctl.store.queues import ArrayStats
from jobctl.store.records import Job

# (word in the summary, states counted under it), in the order they are said
GROUPS = (
    ("running", (states.ACTIVE, states.FAILING)),
    ("completed", (states.COMPLETED,)),
    ("failed", (states.FAILED,)),
    ("killed", (states.KILLED,)),
    ("suspended", (states.SUSPENDED,)),
    ("retrying", (states.RETRYING,)),
    ("pending", (states.PENDING, states.CREATED)),
    ("blocked", (states.BLOCKED,)),
)


def summary_state(counts: dict[str, int]) -> str:
    """The array's state: running if any task runs, else waiting, else suspended, else how it ended."""

    def n(*names: str) -> int:
        return sum(counts.get(s, 0) for s in names)

    if n(states.ACTIVE, states.FAILING):
        return states.FAILING if n(states.FAILED, states.FAILING) else states.ACTIVE
    if n(states.RETRYING):
        return states.RETRYING
    if n(states.PENDING, states.CREATED):
        return states.PENDING
    if n(states.BLOCKED):
        return states.BLOCKED
    if n(states.SUSPENDED):
        return states.SUSPENDED
    if n(states.FAILED):
        return states.FAILED
    if n(states.KILLED):
        return states.KILLED
    return states.COMPLETED


def summary_detail(counts: dict[str, int]) -> str:
    parts = []
    for word, names in GROUPS:
        count = sum(counts.get(s, 0) for s in names)
        if count:
            parts.append(f"{count} {word}")
    return ", ".join(parts)


def base_name(row: Job) -> str:
    """The array's name: a task's name without its `-INDEX`."""
    name, index = row.name, row.array_index
    suffix = f"-{index}"
    return name[: -len(suffix)] if index is not None and name.endswith(suffix) else name


def summarize(array_stats: Callable[[set[int]], dict[int, ArrayStats]], rows: list[Job]) -> list[Job]:
    """The rows with the tasks of each array replaced by one summary row, where its newest task was.
    `array_stats`: the service's (the database's, or a shared queue's supervisor's)."""
    ids = {r.array_id for r in rows if r.array_id is not None}
    if not ids:
        return rows
    stats = array_stats(ids)
    out: list[Job] = []
    done: set[int] = set()
    for row in rows:
        array_id = row.array_id
        if array_id is None or array_id not in stats:
            out.append(row)
            continue
        if array_id in done:
            continue
        done.add(array_id)
        out.append(summary_row(row, stats[array_id]))
    return out


def summary_row(task: Job, stats: ArrayStats) -> Job:
    """The summary row of an array: a task's record with the array's ID, name range, state and times."""
    return task._replace(
        id=stats.array_id,
        name=f"{base_name(task)}[{stats.first_index}-{stats.last_index}]",
        state=summary_state(stats.counts),
        detail=summary_detail(stats.counts),
        message=None,
        started_at=stats.started_at,
        ended_at=stats.ended_at,
    )
