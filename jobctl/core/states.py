"""Job states (SPEC section 3) and the one table of allowed transitions.

A job is in exactly one state. Besides the state it carries a short `reason` code (for scripts,
in `--json`), a `detail` (the text in brackets of the STATUS column, e.g. "exit 3") and a human
`message`. Every change of state goes through `store.transition`, which checks this table, does a
compare-and-set in SQLite and appends an event.
"""

from __future__ import annotations

CREATED = "CREATED"
PENDING = "PENDING"
BLOCKED = "BLOCKED"
ACTIVE = "ACTIVE"
FAILING = "FAILING"
RETRYING = "RETRYING"
SUSPENDED = "SUSPENDED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
KILLED = "KILLED"

ALL_STATES = (CREATED, PENDING, BLOCKED, ACTIVE, FAILING, RETRYING, SUSPENDED, COMPLETED, FAILED, KILLED)
TERMINAL = frozenset({COMPLETED, FAILED, KILLED})
RUNNING = frozenset({ACTIVE, FAILING})  # processes exist and are not frozen
QUEUED = frozenset({CREATED, PENDING, BLOCKED, RETRYING})  # not started yet (`stop` holds these)
LIVE = frozenset(ALL_STATES) - TERMINAL

# from-state -> the states it may move to. None is "not recorded yet".
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({CREATED}),
    CREATED: frozenset({PENDING, BLOCKED, SUSPENDED, FAILED, KILLED}),
    PENDING: frozenset({ACTIVE, SUSPENDED, FAILED, KILLED, BLOCKED}),
    BLOCKED: frozenset({PENDING, SUSPENDED, FAILED, KILLED}),
    ACTIVE: frozenset({FAILING, RETRYING, SUSPENDED, COMPLETED, FAILED, KILLED, PENDING}),
    FAILING: frozenset({RETRYING, SUSPENDED, FAILED, KILLED, PENDING}),
    RETRYING: frozenset({ACTIVE, SUSPENDED, FAILED, KILLED, PENDING}),
    # A suspended job resumes (ACTIVE/FAILING), is requeued (PENDING/BLOCKED), or ends; a frozen job
    # whose processes ended on their own just before the freeze is recorded as it ended.
    SUSPENDED: frozenset({ACTIVE, FAILING, PENDING, BLOCKED, RETRYING, COMPLETED, FAILED, KILLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset({PENDING, BLOCKED}),  # retry
    KILLED: frozenset({PENDING, BLOCKED}),  # retry
}

# SPEC section 3: how the states of the reference systems map onto ours (also shown in README).
REFERENCE_MAPPING: dict[str, dict[str, tuple[str, str | None]]] = {
    "konduktor": {
        "CREATED": (CREATED, None),
        "PENDING": (PENDING, None),
        "ACTIVE": (ACTIVE, None),
        "SUSPENDED (by user)": (SUSPENDED, "user"),
        "SUSPENDED (by system)": (SUSPENDED, "system"),
        "COMPLETED": (COMPLETED, None),
        "FAILED": (FAILED, "exit_code"),
    },
    "qube": {
        "pending": (PENDING, None),
        "blocked": (BLOCKED, "dependency"),
        "running": (ACTIVE, None),
        "failing": (FAILING, "workers_failed"),
        "retrying": (RETRYING, None),
        "killed": (KILLED, "user"),
        "complete": (COMPLETED, None),
        "failed": (FAILED, "exit_code"),
    },
    "cortex": {
        "enqueuing": (CREATED, None),
        "running": (ACTIVE, None),
        "succeeded": (COMPLETED, None),
        "failed while enqueuing": (FAILED, "submit_error"),
        "completed with failures": (FAILED, "workers_failed"),
        "worker error": (FAILED, "exit_code"),
        "out of memory": (FAILED, "out_of_memory"),
        "timed out": (FAILED, "timed_out"),
        "stopped": (KILLED, "user"),
    },
    "osmo": {
        "PENDING": (PENDING, None),
        "WAITING": (BLOCKED, "dependency"),
        "RUNNING": (ACTIVE, None),
        "COMPLETED": (COMPLETED, None),
        "FAILED": (FAILED, "exit_code"),
        "FAILED_EXEC_TIMEOUT": (FAILED, "timed_out"),
        "FAILED_QUEUE_TIMEOUT": (FAILED, "queue_timeout"),
        "FAILED_UPSTREAM": (FAILED, "upstream_failed"),
        "FAILED_CANCELED": (KILLED, "user"),
        "FAILED_PREEMPTED": (SUSPENDED, "system"),
        "FAILED_START_ERROR": (FAILED, "start_error"),
    },
    "bacalhau": {
        "Pending": (PENDING, None),
        "Running": (ACTIVE, None),
        "Completed": (COMPLETED, None),
        "Failed": (FAILED, "exit_code"),
        "Stopped": (KILLED, "user"),
    },
    "slurm": {
        "PENDING": (PENDING, "resources"),
        "RUNNING": (ACTIVE, None),
        "SUSPENDED": (SUSPENDED, "user"),
        "COMPLETED": (COMPLETED, None),
        "FAILED": (FAILED, "exit_code"),
        "TIMEOUT": (FAILED, "timed_out"),
        "OUT_OF_MEMORY": (FAILED, "out_of_memory"),
        "CANCELLED": (KILLED, "user"),
        "PREEMPTED": (SUSPENDED, "system"),
        "NODE_FAIL": (FAILED, "worker_lost"),
    },
}

# reason code -> the bracketed STATUS text when it carries no number of its own
REASON_TEXT = {
    "out_of_memory": "out of memory",
    "timed_out": "timed out",
    "queue_timeout": "queue timeout",
    "upstream_failed": "upstream failed",
    "upstream_completed": "upstream completed",  # `condition: failed` and the upstream succeeded
    "setup_failed": "setup failed",
    "start_error": "start error",
    "worker_lost": "worker lost",
    "submit_error": "submit error",
    "backend_error": "backend error",
    "resources": "resources",
    "priority": "priority",
    "preempting": "preempting",
    "user_limit": "user limit",  # a shared queue: the user's own jobs hold limits.max_* (SPEC section 12)
}

# what `wait` and `launch --wait` exit with, by reason, when the job did not complete
WAIT_EXIT = {"timed_out": 124, "out_of_memory": 137}


def allowed(src: str | None, dst: str) -> bool:
    return dst in TRANSITIONS.get(src, frozenset())


def blocked_detail(dep_ids: list[int]) -> str:
    """The bracket of `BLOCKED (after 12, 13)`: the first three dependencies."""
    return "after " + ", ".join(str(d) for d in dep_ids[:3]) + ("…" if len(dep_ids) > 3 else "")


def attempt_text(attempt: int, max_attempts: int) -> str:
    """`describe`'s Attempt line. Attempts are numbered 1, 2, 3 ... over the job's whole life (the
    log folders, JOBCTL_ATTEMPT, `logs --attempt`); `max_attempts` is the number of the last attempt
    the automatic retries may reach: `retries` + 1 at launch, moved on by each manual `retry` (a
    fresh budget of `retries` automatic retries) and by each attempt that ended without failing
    (preempted or released). `RETRYING (attempt k/n)` names the next attempt, k = attempt + 1."""
    if attempt == 0:
        return f"none yet (at most {max_attempts})"
    return f"{attempt} of at most {max_attempts}"


def status_text(state: str, detail: str | None) -> str:
    return f"{state} ({detail})" if detail else state


def wait_exit_code(state: str, reason: str | None, exit_code: int | None) -> int:
    """The exit code of `wait` / `launch --wait` for a job in a terminal state (SPEC section 4)."""
    if state == COMPLETED:
        return 0
    if state == KILLED:
        return 137
    if reason in WAIT_EXIT:
        return WAIT_EXIT[reason]
    if reason in ("exit_code", "setup_failed") and exit_code:  # the job's own code (setup's included)
        return exit_code if 0 < exit_code < 256 else 1
    return 1
