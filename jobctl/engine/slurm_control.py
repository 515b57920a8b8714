"""stop, start and kill of Slurm jobs, for control.py.

control.py records the new state first (a compare-and-set) and then asks the backend. When Slurm
refuses or cannot be reached, `SyncedBackend` undoes that state change, with Slurm's reason as the
job's message, so the database never claims what Slurm did not do.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from jobctl.backends.slurm.client import SlurmBackend, SlurmUnreachable
from jobctl.core import states
from jobctl.engine.slurm_sync import _new_attempt_dir, _poll_state, submit
from jobctl.errors import BackendError


def restart(service, row: sqlite3.Row) -> None:
    """`jobctl start` of a held, released or preempted job (control.py already moved it to PENDING/BLOCKED)."""
    if not row["backend_id"] or row["reason"] == "system":
        return submit(service, [row["id"]], again=True)
    released, attempt = row["reason"] == "released", row["attempt"] + 1
    if released:  # it runs again as a new attempt, like a released local job: the script reads the number
        _new_attempt_dir(service, row["id"], attempt)
    SyncedBackend(service).release(row["backend_id"])
    if released:
        with service.store.write() as conn:
            conn.execute(
                "UPDATE jobs SET attempt = ?, max_attempts = max_attempts + 1 WHERE id = ?",  # not a failure
                (attempt, row["id"]),
            )
            conn.execute("INSERT OR REPLACE INTO attempts (job_id, n) VALUES (?, ?)", (row["id"], attempt))


def cancel_leftover(service, row: sqlite3.Row) -> bool:
    """`jobctl kill` of a job jobctl took for ended: scancel it if Slurm still has it queued or running."""
    backend = SlurmBackend()
    try:
        obs = backend.poll([row["backend_id"]]).get(row["backend_id"])
        if obs is None or obs.state in states.TERMINAL:
            return False
        backend.cancel(row["backend_id"])
    except BackendError:
        return False
    return True


class SyncedBackend:
    """The Slurm backend as control.py uses it (suspend, resume, hold, release, cancel). When Slurm
    refuses, the state change control.py recorded a moment before is undone, with the reason as the
    job's message, so the database never claims what Slurm did not do."""

    name = "slurm"

    def __init__(self, service, backend: SlurmBackend | None = None):
        self.service, self.backend = service, backend or SlurmBackend()

    def __getattr__(self, name: str) -> Callable[..., None]:
        action = getattr(self.backend, name)  # suspend resume hold release cancel

        def act(bid: str, *args: Any) -> None:
            try:
                if time.monotonic() - _poll_state(self.service)["down"] < 30:  # just seen down: do not wait again
                    raise SlurmUnreachable("slurm controller unreachable; nothing was changed in Slurm")
                action(bid, *args)
            except BackendError as exc:
                self._undo(bid, str(exc))
                raise
            if name == "cancel":  # killed or released: this attempt's workers are done
                with self.service.store.write() as conn:
                    job = conn.execute(
                        "SELECT id, attempt FROM jobs WHERE backend = 'slurm' AND backend_id = ?", (bid,)
                    ).fetchone()
                    if job is not None:
                        conn.execute(
                            "UPDATE workers SET state = 'exited' WHERE job_id = ? AND attempt = ?"
                            " AND state = 'running'",
                            tuple(job),
                        )
                        conn.execute(
                            "UPDATE attempts SET ended_at = COALESCE(ended_at, ?) WHERE job_id = ? AND n = ?",
                            (time.time(), *tuple(job)),
                        )

        return act

    def _undo(self, bid: str, text: str) -> None:
        with self.service.store.write() as conn:
            job = conn.execute(
                "SELECT * FROM jobs WHERE backend = 'slurm' AND backend_id = ? ORDER BY id DESC", (bid,)
            ).fetchone()
            events = (
                []
                if job is None
                else conn.execute(
                    "SELECT * FROM events WHERE job_id = ? ORDER BY id DESC LIMIT 2", (job["id"],)
                ).fetchall()
            )
            if not events or events[0]["to_state"] != job["state"] or events[0]["actor"] == "system":
                return
            prev = events[0]["from_state"]
            entered = events[1] if len(events) > 1 and events[1]["to_state"] == prev else None
            detail = {
                states.SUSPENDED: f"by {entered['actor'] if entered else 'system'}",
                states.BLOCKED: "after dependencies",
            }.get(prev)
            conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, detail = ?, message = ?, ended_at = NULL WHERE id = ?",
                (prev, entered["reason"] if entered else None, detail, f"unchanged: {text}", job["id"]),
            )
            conn.execute(
                "INSERT INTO events (job_id, at, from_state, to_state, reason, actor, message)"
                " VALUES (?, ?, ?, ?, 'backend_error', 'system', ?)",
                (job["id"], time.time(), job["state"], prev, text),
            )


def send_signal(service, row: sqlite3.Row, signum: int) -> None:
    """`jobctl kill --signal INT` of a Slurm job: `scancel --signal=INT --full` first (the cancel follows)."""
    from jobctl.core.queueing import signal_name

    backend = SlurmBackend()
    backend._call(
        f"cannot signal Slurm job {row['backend_id']}",
        ["scancel", f"--signal={signal_name(signum)}", "--full", row["backend_id"]],
        ("Invalid job id", "already completing or completed"),
    )


def update(service, row: sqlite3.Row, changes: dict[str, Any]) -> None:
    """`jobctl update` of a Slurm job: priority and time limit through `scontrol update` where Slurm
    lets this user (an ordinary user may only lower them); the rest is jobctl's own record."""
    import math

    from jobctl.backends.slurm.client import TIMEOUT_MARGIN

    values = []
    if "priority" in changes:
        values.append(f"Nice={max(-2147483645, min(2147483645, -int(changes['priority'])))}")
    if "timeout" in changes:
        limit = changes["timeout"]
        values.append(
            "TimeLimit=" + ("UNLIMITED" if limit is None else str(max(1, math.ceil((limit + TIMEOUT_MARGIN) / 60))))
        )
    if values:
        SlurmBackend()._call(
            f"cannot update Slurm job {row['backend_id']}",
            ["scontrol", "update", f"JobId={row['backend_id']}", *values],
        )
