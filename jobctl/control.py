"""stop, start, kill, retry, rm, prune: each acts on one job and reports what happened.

The CLI process does the work itself: a compare-and-set in the database, then a signal to the
job's runner (after checking its identity). The supervisor is only woken to re-plan. A command
that does not fit the job's state is refused with a message that names the state.
"""

from __future__ import annotations

import shutil
import sqlite3
import time

from jobctl import states
from jobctl.backends.local import LocalBackend, backend_id
from jobctl.service import ActionResult, Service

WAITING = {states.CREATED, states.PENDING, states.BLOCKED, states.RETRYING}


def _result(row: sqlite3.Row, ok: bool, message: str, state: str | None = None) -> ActionResult:
    return ActionResult(row["id"], row["name"], ok, message, state)


def _refuse(service: Service, row: sqlite3.Row, wanted: str) -> ActionResult:
    return _result(row, False, f"{service._contextual(row)}; {wanted}", row["state"])


def _backend(service: Service, row: sqlite3.Row):
    if row["backend"] == "slurm":
        from jobctl.slurm_sync import backend_for

        return backend_for(service)
    return LocalBackend(service.paths.logs)


def _bid(row: sqlite3.Row) -> str:
    return row["backend_id"] if row["backend"] == "slurm" else backend_id(row["id"], row["attempt"])


def stop(service: Service, row: sqlite3.Row, release: bool = False) -> ActionResult:
    by = f"by {service.user}"
    if row["state"] in WAITING:
        if service._cas(row, states.SUSPENDED, WAITING, reason="held", detail=by,
                        message="held: it will not start until `jobctl start`"):
            if row["backend"] == "slurm" and row["backend_id"]:
                _backend(service, row).hold(row["backend_id"])
            return _result(row, True, f"job {row['id']} held (SUSPENDED)", states.SUSPENDED)
    elif row["state"] in states.RUNNING:
        reason = "released" if release else "user"
        message = "stopped and released; `jobctl start` requeues it" if release else "frozen; `jobctl start` resumes it"
        if service._cas(row, states.SUSPENDED, states.RUNNING, reason=reason, detail=by, message=message):
            backend = _backend(service, row)
            if release:
                backend.cancel(_bid(row), _grace(service), "released")
            else:
                backend.suspend(_bid(row))
            return _result(row, True, f"job {row['id']} {'released' if release else 'frozen'} (SUSPENDED)",
                           states.SUSPENDED)
    return _refuse(service, _fresh(service, row), "only running or waiting jobs can be stopped")


def start(service: Service, row: sqlite3.Row) -> ActionResult:
    if row["state"] != states.SUSPENDED:
        return _refuse(service, row, "only SUSPENDED jobs can be started")
    if row["reason"] == "user":  # frozen: thaw it
        if service._cas(row, states.ACTIVE, {states.SUSPENDED}, message="resumed"):
            _backend(service, row).resume(_bid(row))
            return _result(row, True, f"job {row['id']} resumed (ACTIVE)", states.ACTIVE)
    else:
        after = _after(service, row)
        target = states.BLOCKED if after else states.PENDING
        if service._cas(row, target, {states.SUSPENDED}, reason="dependency" if after else None,
                        detail=after, message="requeued"):
            if row["backend"] == "slurm":  # release a held/released Slurm job, resubmit a preempted one
                from jobctl.slurm_control import restart

                restart(service, row)
            return _result(row, True, f"job {row['id']} requeued ({target})", target)
    return _refuse(service, _fresh(service, row), "only SUSPENDED jobs can be started")


def kill(service: Service, row: sqlite3.Row, grace: float | None = None) -> ActionResult:
    if row["state"] in states.TERMINAL:
        if row["backend"] == "slurm" and row["backend_id"]:  # taken for ended, but Slurm may still run it
            from jobctl.slurm_control import cancel_leftover

            if cancel_leftover(service, row):
                return _result(row, True, f"job {row['id']} ({row['state']}) was still in Slurm as job "
                                          f"{row['backend_id']}: cancelled it there", row["state"])
        return _refuse(service, row, "only unfinished jobs can be killed")
    grace = _grace(service) if grace is None else grace
    src = service._cas(row, states.KILLED, states.LIVE, reason="user", detail=f"by {service.user}",
                       message=f"killed by {service.user}")
    if src is None:
        return _refuse(service, _fresh(service, row), "only unfinished jobs can be killed")
    fresh = _fresh(service, row)
    if row["backend"] == "slurm" and row["backend_id"]:
        _backend(service, row).cancel(row["backend_id"])
    elif fresh["alloc"] is not None:
        LocalBackend(service.paths.logs).cancel(backend_id(row["id"], fresh["attempt"]), grace, "killed")
    return _result(row, True, f"job {row['id']} killed", states.KILLED)


def retry(service: Service, row: sqlite3.Row) -> ActionResult:
    if row["state"] not in (states.FAILED, states.KILLED):
        return _refuse(service, row, "only FAILED or KILLED jobs can be retried")
    if row["alloc"] is not None:
        return _result(row, False, f"job {row['id']} is still stopping; try again in a moment", row["state"])
    if row["backend"] == "slurm" and row["backend_id"]:  # never a second copy beside one Slurm still runs
        from jobctl.slurm_control import cancel_leftover

        cancel_leftover(service, row)
    after = _after(service, row)
    target = states.BLOCKED if after else states.PENDING
    fields = {"failures": 0, "ended_at": None, "exit_code": None, "not_before": None, "backend_id": None}
    if service._cas(row, target, {states.FAILED, states.KILLED}, reason="dependency" if after else None,
                    detail=after, message="retried by user", fields=fields):
        if row["backend"] == "slurm":
            from jobctl.slurm_sync import submit

            submit(service, [row["id"]])
        return _result(row, True, f"job {row['id']} queued again as attempt {row['attempt'] + 1}", target)
    return _refuse(service, _fresh(service, row), "only FAILED or KILLED jobs can be retried")


def remove(service: Service, row: sqlite3.Row) -> ActionResult:
    if row["state"] not in states.TERMINAL or row["alloc"] is not None:
        return _refuse(service, row, "only finished jobs can be removed (kill it first)")
    with service.store.write() as conn:
        conn.execute("DELETE FROM jobs WHERE id = ? AND state IN ('COMPLETED', 'FAILED', 'KILLED')", (row["id"],))
    shutil.rmtree(service.paths.job_dir(row["id"]), ignore_errors=True)
    return _result(row, True, f"job {row['id']} removed")


def prune(service: Service, older_than: float) -> list[ActionResult]:
    cutoff = time.time() - older_than
    rows = service.store.conn.execute(
        "SELECT * FROM jobs WHERE state IN ('COMPLETED', 'FAILED', 'KILLED') AND alloc IS NULL AND ended_at < ?",
        (cutoff,),
    ).fetchall()
    return [remove(service, row) for row in rows]


def _after(service: Service, row: sqlite3.Row) -> str | None:
    """The BLOCKED detail ("after 12, 13") for a job with dependencies; None without any."""
    deps = [d[0] for d in service.store.conn.execute(
        "SELECT dep_id FROM deps WHERE job_id = ? ORDER BY dep_id", (row["id"],))]
    return states.blocked_detail(deps) if deps else None


def _grace(service: Service) -> float:
    from jobctl.units import parse_duration

    return parse_duration(service.config.get("kill.grace"))


def _fresh(service: Service, row: sqlite3.Row) -> sqlite3.Row:
    return service.store.conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone() or row
