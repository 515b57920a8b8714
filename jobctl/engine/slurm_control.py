"""stop, start and kill of Slurm jobs, for control.py.

control.py records the new state first (a compare-and-set) and then asks the backend. When Slurm
refuses or cannot be reached, `SyncedBackend` undoes that state change, with Slurm's reason as the
job's message, so the database never claims what Slurm did not do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jobctl.backends.base import Session
from jobctl.backends.slurm.client import SlurmBackend, SlurmUnreachable
from jobctl.core import states
from jobctl.engine.slurm_common import new_attempt_dir, poll_state
from jobctl.engine.slurm_sync import submit
from jobctl.errors import BackendError
from jobctl.store.records import Job


def restart(service: Session, row: Job) -> None:
    """`jobctl start` of a held, released or preempted job (control.py already moved it to PENDING/BLOCKED)."""
    if not row.backend_id or row.reason == "system":
        return submit(service, [row.id], again=True)
    released, attempt = row.reason == "released", row.attempt + 1
    if released:  # it runs again as a new attempt, like a released local job: the script reads the number
        new_attempt_dir(service, row.id, attempt)
    SyncedBackend(service).release(row.backend_id)
    if released:
        store = service.store
        with store.write():
            store.set_attempt(row.id, attempt, extend=True)  # not a failure
            store.open_attempt(row.id, attempt)


def cancel_leftover(service: Session, row: Job) -> bool:
    """`jobctl kill` of a job jobctl took for ended: scancel it if Slurm still has it queued or running."""
    backend, bid = SlurmBackend(), row.backend_id
    if not bid:
        return False  # never submitted
    try:
        obs = backend.poll([bid]).get(bid)
        if obs is None or obs.state in states.TERMINAL:
            return False
        backend.cancel(bid)
    except BackendError:
        return False
    return True


class SyncedBackend:
    """The Slurm backend as control.py uses it (suspend, resume, hold, release, cancel). When Slurm
    refuses, the state change control.py recorded a moment before is undone, with the reason as the
    job's message, so the database never claims what Slurm did not do."""

    name = "slurm"

    def __init__(self, service: Session, backend: SlurmBackend | None = None):
        self.service, self.backend = service, backend or SlurmBackend()

    def __getattr__(self, name: str) -> Callable[..., None]:
        action = getattr(self.backend, name)  # suspend resume hold release cancel

        def act(bid: str, *args: Any) -> None:
            try:
                if time.monotonic() - poll_state(self.service)["down"] < 30:  # just seen down: do not wait again
                    raise SlurmUnreachable("slurm controller unreachable; nothing was changed in Slurm")
                action(bid, *args)
            except BackendError as exc:
                self._undo(bid, str(exc))
                raise
            if name == "cancel":  # killed or released: this attempt's workers are done
                store = self.service.store
                with store.write():
                    job = store.slurm_job(bid)
                    if job is not None:
                        store.close_attempt(job.id, job.attempt, time.time())

        return act

    def _undo(self, bid: str, text: str) -> None:
        store = self.service.store
        with store.write():
            job = store.slurm_job(bid)
            events = [] if job is None else store.recent_events(job.id, 2)
            if job is None or not events or events[0].to_state != job.state or events[0].actor == "system":
                return
            prev = events[0].from_state
            if prev is None:
                return
            entered = events[1] if len(events) > 1 and events[1].to_state == prev else None
            detail = {
                states.SUSPENDED: f"by {entered.actor if entered else 'system'}",
                states.BLOCKED: "after dependencies",
            }.get(prev)
            # back to where the user's change found it: the reverse of a move the table allows
            store.transition(
                job.id,
                prev,
                expect={job.state},
                reason=entered.reason if entered else None,
                detail=detail,
                message=f"unchanged: {text}",
                actor="system",
                undo=True,
                event_reason="backend_error",
                event_message=text,
                fields={"ended_at": None},
            )


def send_signal(service: Any, row: Job, signum: int) -> None:
    """`jobctl kill --signal INT` of a Slurm job: `scancel --signal=INT --full` first (the cancel follows)."""
    from jobctl.core.queueing import signal_name

    assert row.backend_id is not None  # submitted
    backend = SlurmBackend()
    backend._call(
        f"cannot signal Slurm job {row.backend_id}",
        ["scancel", f"--signal={signal_name(signum)}", "--full", row.backend_id],
        ("Invalid job id", "already completing or completed"),
    )


def update(service: Any, row: Job, changes: dict[str, Any]) -> None:
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
            f"cannot update Slurm job {row.backend_id}",
            ["scontrol", "update", f"JobId={row.backend_id}", *values],
        )
