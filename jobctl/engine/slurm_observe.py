"""The mirroring side of the Slurm backend: what Slurm (or, once Slurm forgot a job, the files its
workers wrote) says about a job, and how that is recorded (`apply`, one compare-and-set per step of
`route`). `refresh` in slurm_sync.py asks Slurm and calls `apply` for each job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobctl.backends.base import Session
from jobctl.backends.slurm.client import SLURM_WAITING, SlurmObservation
from jobctl.core import states
from jobctl.core.units import format_duration, format_gib
from jobctl.engine.rules import dependency_verdict, failure_detail
from jobctl.engine.slurm_common import write_private_text
from jobctl.store.database import Store
from jobctl.store.records import Job

SETTLE = 5.0  # seconds during which a user's own stop/start may not show in Slurm yet


def read_attempt_file(service: Session, row: Job, name: str) -> str | None:
    try:
        return (service.paths.attempt_dir(row.id, row.attempt) / name).read_text().strip() or None
    except OSError:
        return None


def _exit_codes(service: Session, row: Job) -> list[int | None]:
    """What each worker's rank<N>.exit says (None: it wrote none)."""
    codes = [read_attempt_file(service, row, f"rank{rank}.exit") for rank in range(row.num_nodes)]
    return [int(c) if c and c.lstrip("-").isdigit() else None for c in codes]


def batch_output(service: Session, row: Job) -> dict[str, Any]:
    """For `describe`: where Slurm's output of the latest attempt is, and when the job failed or was lost,
    its last lines (errors of the batch script and of Slurm itself show only there)."""
    path = service.paths.attempt_dir(row.id, row.attempt) / "slurm.out"
    failed = row.state == states.FAILED or row.reason in ("worker_lost", "start_error")
    lines = _tail(path, 4096).splitlines()[-10:] if failed else []
    return {"path": str(path), "tail": lines}


def _text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip() or None
    except OSError:
        return None


OOM_MARKS = ("Out Of Memory", "oom-kill event", "oom_kill event")


def _oom(folder: Path) -> bool:
    """Did Slurm's cgroup kill a step of this attempt for memory? (what srun and slurmstepd write to slurm.out)"""
    out = _tail(folder / "slurm.out", 16384)
    return any(mark in out for mark in OOM_MARKS)


def _tail(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


LOST_AFTER = (3, 30.0)  # misses in a row, and seconds since the first, before a job is taken for lost


def missed(service: Session, row: Job, missing: bool) -> SlurmObservation | None:
    """Count the looks in which neither squeue nor sacct knew the job (in `slurm-missing` of its attempt).

    One empty answer (a squeue filtered by the caller's settings, a controller that just restarted)
    never ends a job: it ends when its workers' exit files say how, or as lost after LOST_AFTER."""
    path = service.paths.attempt_dir(row.id, row.attempt) / "slurm-missing"
    if not missing:
        if path.exists():
            path.unlink(missing_ok=True)
        return None
    codes = _exit_codes(service, row)
    if codes and None not in codes:
        return _from_files(service, row)
    first, count = time.time(), 0.0
    try:
        first, count = (float(x) for x in path.read_text().split())
    except (OSError, ValueError):
        pass
    count += 1
    if count >= LOST_AFTER[0] and time.time() - first >= LOST_AFTER[1]:
        return _from_files(service, row)
    try:
        write_private_text(path, f"{first} {int(count)}\n")
    except OSError:
        pass
    return None


def _from_files(service: Session, row: Job) -> SlurmObservation:
    """A job Slurm no longer knows (purged, no accounting): what its workers wrote, else lost."""
    codes, bid = _exit_codes(service, row), row.backend_id or ""
    if codes and None not in codes:
        bad = next((c for c in codes if c), 0)
        folder = service.paths.attempt_dir(row.id, row.attempt)
        times = [p.stat().st_mtime for p in folder.glob("rank*.exit")]  # when the workers ended
        begun = [p.stat().st_mtime for p in folder.glob("slurm-jobid")]  # written when the batch script began
        return SlurmObservation(
            bid,
            "FAILED" if bad else "COMPLETED",
            "exit_code" if bad else None,
            exit_code=bad,
            started_at=begun[0] if begun else None,
            ended_at=max(times) if times else None,
        )
    return SlurmObservation(bid, "FAILED", "worker_lost", f"Slurm has no record of job {bid} any more")


def target_state(state: str, reason: str | None, obs: SlurmObservation, recent: bool) -> str | None:
    """Where a job in `state` goes after Slurm reported `obs`; None: leave it."""
    if obs.transient or obs.state == state:
        return None
    if state == states.SUSPENDED and reason in ("released", "system"):
        if obs.state == states.KILLED or (reason == "released" and obs.state in (states.SUSPENDED, states.PENDING)):
            return None  # put aside by jobctl itself: `jobctl start` brings it back
    if recent and obs.state not in states.TERMINAL:
        return None  # a user's stop/start a moment ago may not show in Slurm yet
    return obs.state


def route(src: str, dst: str, ran: bool = False) -> list[str]:
    """The states from src to dst: a job that ran between two looks went PENDING -> ACTIVE -> COMPLETED."""
    ways = [(), (states.ACTIVE,), (states.PENDING,), (states.PENDING, states.ACTIVE)]
    order = (ways[1], ways[3], ways[0], ways[2]) if ran and src not in states.RUNNING else ways
    for via in order:
        if src in via:
            continue  # never a detour back through where it is (ACTIVE -> PENDING -> ACTIVE)
        path = [src, *via, dst]
        if all(states.allowed(a, b) for a, b in zip(path, path[1:])):
            return path[1:]
    return []


def apply(service: Session, store: Store, cur: Job, obs: SlurmObservation, now: float) -> str | None:
    """Record one observation; returns "cancel" or "again" when Slurm must be told something."""
    state, job_id, n = cur.state, cur.id, cur.num_nodes
    if state == states.RETRYING:
        return "again" if obs.state in states.TERMINAL else None  # its resubmission did not happen yet
    last = next(iter(store.recent_events(job_id, 1)), None)
    recent = (
        last is not None
        and last.actor != "system"
        and now - last.at < SETTLE
        and states.SUSPENDED in (last.from_state, last.to_state)
    )  # a user's stop or start
    spec = service.spec_of(cur)
    limit = spec.get("queue_timeout")
    if limit and obs.state in (states.PENDING, states.BLOCKED) and now >= cur.submitted_at + limit:
        obs = SlurmObservation(
            obs.backend_id,
            states.FAILED,
            "queue_timeout",
            f"waited longer than its queue_timeout of {format_duration(limit)}",
            slurm_state=obs.slurm_state,
        )
    target = target_state(state, cur.reason, obs, recent)
    deps = store.dependencies(job_id)
    if state == states.BLOCKED and target == states.PENDING and dependency_verdict(deps) != "ok":
        target = None  # Slurm has not looked at its dependencies yet (reason None)
    if target is None:
        if state == obs.state == states.PENDING and (
            cur.reason != obs.reason or obs.message and cur.message != obs.message
        ):  # Slurm's reason changed
            store.set_wait_reason(job_id, obs.reason, states.REASON_TEXT.get(obs.reason or ""), obs.message)
        return None
    reason, message, code, action = obs.reason, obs.message, obs.exit_code, None
    codes = _exit_codes(service, cur)
    folder = service.paths.attempt_dir(job_id, cur.attempt)
    if target in (states.FAILED, states.COMPLETED) and reason in (None, "exit_code", "start_error"):
        missing = sorted(folder.glob("workdir_missing.*"))
        if missing:  # the batch script found no workdir on a node (Slurm itself would run it in /tmp)
            target, reason, code = states.FAILED, "start_error", None
            message = (
                f"workdir {spec['workdir']} does not exist on node {_text(missing[0]) or '?'}: "
                "the job's workdir must be on storage the nodes share"
            )
        elif reason == "exit_code" and any(folder.glob("timed_out.*")):
            reason, code = "timed_out", None  # the worker ended it at its timeout (exit 124)
        elif reason == "exit_code" and _oom(folder):
            reason, code = "out_of_memory", 137  # the cgroup killed step .0 (Slurm reports only a failed batch)
        elif reason == "exit_code" and code is None and any(c is not None for c in codes):
            code = next((c for c in codes if c), 0)  # no accounting: what the workers wrote
    if reason == "upstream_failed":
        message = dependency_verdict(deps)
        if message in (None, "ok"):
            return "again"  # jobctl is retrying its upstream: submit it again behind the new attempt
        action = "cancel" if obs.slurm_state == "PENDING" else None
    elif reason == "queue_timeout" or reason == "start_error" and obs.slurm_state in SLURM_WAITING:
        action = "cancel"  # it would wait in Slurm for good
    elif reason == "exit_code" and any(service.paths.attempt_dir(job_id, cur.attempt).glob("setup_failed.*")):
        reason, message = "setup_failed", f"setup failed with exit code {code}"
    elif reason == "exit_code" and n > 1 and any(c is not None for c in codes):
        reason, message = "workers_failed", f"{sum(1 for c in codes if c)}/{n} workers failed"
    elif reason == "out_of_memory":
        message = f"used more than its {format_gib(cur.memory_mib)} GiB of memory; raise resources.memory"
    elif reason == "timed_out" and spec.get("timeout"):
        message = f"ran longer than its timeout of {format_duration(spec['timeout'])}"
    detail = {
        states.BLOCKED: states.blocked_detail([d.dep_id for d in deps]) if deps else None,
        states.SUSPENDED: "by system" if reason == "system" else "in Slurm",
        states.KILLED: "in Slurm",
        states.PENDING: states.REASON_TEXT.get(reason or ""),
    }.get(target)
    fields: dict[str, Any] = {"exit_code": 0} if target == states.COMPLETED else {}
    if target == states.FAILED:
        detail = failure_detail(reason, message, code) if code is not None or reason != "exit_code" else None
        fields = {"exit_code": code}
        if reason not in ("upstream_failed", "queue_timeout"):
            fields["failures"] = cur.failures + 1
            if cur.attempt < cur.max_attempts:  # automatic retry: a new Slurm job
                message = f"attempt {cur.attempt} failed ({detail or 'failed'}); submitting the next one"
                target, action = states.RETRYING, "again"
                detail = f"attempt {cur.attempt + 1}/{cur.max_attempts}"
    if target in states.TERMINAL:
        fields["ended_at"] = obs.ended_at or now
    started = obs.started_at or (now if target in (states.ACTIVE, states.COMPLETED) else None)
    for step in route(state, target, ran=obs.started_at is not None and state != states.SUSPENDED):
        extra = {"started_at": started} if step == states.ACTIVE and started else {}
        # events are stamped with when Slurm says it happened (a job that ended unseen: its own times)
        at = (
            min(now, started)
            if extra and started
            else min(now, obs.ended_at or now)
            if step in states.TERMINAL
            else now
        )
        if step != target:
            store.transition(job_id, step, now=at, fields=extra)
        else:
            store.transition(
                job_id, step, reason=reason, detail=detail, message=message, now=at, fields={**fields, **extra}
            )
    key = (job_id, cur.attempt)  # the attempts and workers rows that `describe` shows
    if started:
        store.attempt_started(*key, started)
        store.add_workers(*key, n, keep_existing=True)
    if target in states.TERMINAL or target == states.RETRYING:
        store.end_attempt(*key, obs.ended_at or now, reason or target.lower(), code)
        store.set_worker_exits(
            *key, [("lost" if c is None and reason == "worker_lost" else "exited", c) for c in codes]
        )
    return action
