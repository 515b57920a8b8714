"""The typed rows of the store: what every other layer reads instead of `sqlite3.Row`.

Each record is a `NamedTuple` (immutable and cheap to build: the CLI imports and creates them on
every command) whose fields are the columns of its table (see MIGRATIONS in
`jobctl/store/database.py`), in column order. They are built only inside the store, from rows
selected with the matching column list (`columns(Record)`). JSON columns (`accelerators`,
`labels`, `envs`, `alloc`) stay text here; `loads` decodes them.
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from jobctl.core import states

# The terminal states as SQL (`state IN ...`): the one set in core/states.py, written out for queries.
TERMINAL_SQL = "(" + ", ".join(f"'{state}'" for state in sorted(states.TERMINAL)) + ")"


class Job(NamedTuple):
    """One row of `jobs`."""

    id: int
    name: str
    state: str
    reason: str | None
    detail: str | None
    message: str | None
    spec_id: int
    priority: int
    cpus: float
    memory_mib: int
    accelerators: str | None  # JSON: [[name, count], ...]
    num_nodes: int
    labels: str | None  # JSON object
    envs: str | None  # JSON: {"env": ..., "secret": [...], "secrets": token, "umask": ...}
    array_index: int | None
    backend: str
    backend_id: str | None
    user: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    attempt: int
    max_attempts: int
    failures: int
    not_before: float | None
    alloc: str | None  # JSON: what the running attempt holds
    queue_deadline: float | None
    queue: str  # the named queue (migration 3, store/queues.py)
    start_at: float | None  # epoch seconds: not started before
    array_id: int | None  # the array's first job ID
    array_throttle: int | None  # how many tasks of the array may hold resources at once
    notify: str | None  # JSON: the notification targets (core/notify.py), merged at launch


class Attempt(NamedTuple):
    """One row of `attempts`."""

    job_id: int
    n: int
    started_at: float | None
    ended_at: float | None
    runner_pid: int | None
    runner_start: float | None
    outcome: str | None
    exit_code: int | None
    usage: str | None  # JSON: what the attempt used (SPEC section 11; core/accounting.py's fields)


class Worker(NamedTuple):
    """One row of `workers`: one rank of one attempt."""

    job_id: int
    attempt: int
    rank: int
    pid: int | None
    state: str
    exit_code: int | None


class Event(NamedTuple):
    """One row of `events`: a recorded change of state."""

    id: int
    job_id: int
    at: float
    from_state: str | None
    to_state: str
    reason: str | None
    actor: str | None
    message: str | None


class Dependency(NamedTuple):
    """One row of `deps` with what is known of the job depended on (state None: it was removed)."""

    dep_id: int
    condition: str
    state: str | None
    name: str | None
    backend: str | None
    backend_id: str | None


class Notification(NamedTuple):
    """One row of `notifications`: one delivery of the outbox (store/notifications.py)."""

    id: int
    job_id: int
    target: str  # JSON: the target (core/notify.py), see `target_doc`
    state: str
    status: str
    exit_code: int | None
    attempt: int | None
    created_at: float
    outcome: str
    tries: int
    next_try_at: float
    claim_pid: int | None
    claim_start: float | None
    claimed_at: float | None
    last_error: str | None
    done_at: float | None

    @property
    def target_doc(self) -> dict[str, Any]:
        """The target as a mapping: kind, value, on, origin."""
        value = json.loads(self.target)
        return value if isinstance(value, dict) else {}


class NotificationTry(NamedTuple):
    """One row of `notification_tries`: one try of a delivery (what `describe` shows)."""

    notification_id: int
    at: float
    ok: bool
    message: str | None


R = TypeVar("R", bound=tuple[Any, ...])


def fields_of(cls: type) -> tuple[str, ...]:
    """The field names of a record class, in column order."""
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    return fields


def columns(cls: type, table: str = "") -> str:
    """The SELECT list that `build` reads back, e.g. `j.id, j.name, ...` for table alias `j`."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + name for name in fields_of(cls))


def build(cls: type[R], values: Sequence[Any]) -> R:
    """A record from one row selected with `columns(cls)` (no per-field checks: the schema types them)."""
    return tuple.__new__(cls, values)


def build_all(cls: type[R], rows: Iterable[Sequence[Any]]) -> list[R]:
    new = tuple.__new__
    return [new(cls, values) for values in rows]


def dumps(value: Any) -> str | None:
    """A JSON column's text; None for an empty value."""
    return None if value in (None, {}, []) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    """A JSON column's value; `default` for NULL."""
    return default if text is None else json.loads(text)
