"""The engine's rules without a database: how a failure reads, whether dependencies are met, the
scheduler's view of a job (a Request when it waits, a Running when it holds resources), and the
plan a local attempt's runner gets."""

from __future__ import annotations

import os
from typing import Any

from jobctl.backends.local.plan import RunnerPlan
from jobctl.core import states
from jobctl.core.models import JobSpec
from jobctl.core.scheduler import Allocation, Request, Running
from jobctl.store.records import Dependency, Job, loads


def failure_detail(reason: str | None, message: str | None, exit_code: int | None) -> str | None:
    if reason == "exit_code":
        return f"exit {exit_code}"
    if reason == "workers_failed":
        return message
    return states.REASON_TEXT.get(reason or "", reason)


def dependency_verdict(deps: list[Dependency]) -> str | None:
    """'ok' when every dependency is satisfied, a message when one never can be, else None."""
    verdict, _, message = dependency_outcome(deps)
    return {"ok": "ok", "wait": None}.get(verdict, message)


def dependency_outcome(deps: list[Dependency]) -> tuple[str, str | None, str | None]:
    """('ok', None, None) when every dependency (dep_id, condition, state, name) is satisfied,
    ('never', reason code, message) when one never can be, else ('wait', None, None).

    The reason says which way it went: `upstream_failed` (a dependency that had to succeed did
    not, or was removed) or `upstream_completed` (one with `condition: failed` succeeded)."""
    waiting = False
    for dep in deps:
        dep_id, condition, state, name = dep.dep_id, dep.condition, dep.state, dep.name
        label = f"{dep_id} ({name})" if name else str(dep_id)
        if state is None:
            return "never", "upstream_failed", f"dependency {dep_id} no longer exists"
        if state not in states.TERMINAL:
            waiting = True
        elif condition == "ok" and state != states.COMPLETED:
            return "never", "upstream_failed", f"dependency {label} ended {state}"
        elif condition == "failed" and state == states.COMPLETED:
            return (
                "never",
                "upstream_completed",
                (f"dependency {label} completed, but this job runs only after a failure (condition: failed)"),
            )
    return ("wait", None, None) if waiting else ("ok", None, None)


def request_of(row: Job, limit: float | None = None) -> Request:
    n = row.num_nodes
    accs = tuple((str(name).upper(), int(count) * n) for name, count in loads(row.accelerators, []))
    return Request(
        row.id,
        row.priority,
        row.submitted_at,
        row.cpus * n,
        row.memory_mib * n,
        accs,
        limit,
        queue=row.queue,
        group=row.array_id,
        user=row.user,
    )


def running_of(row: Job, ends_by: float | None = None) -> Running:
    alloc = loads(row.alloc, {})
    devices = ((alloc["accelerator"], tuple(alloc["devices"])),) if alloc.get("devices") else ()
    frozen = row.state == states.SUSPENDED and row.reason not in ("system", "released")
    releasing = row.state in (states.SUSPENDED, states.KILLED) and not frozen
    return Running(
        row.id,
        row.priority,
        row.submitted_at,
        alloc.get("cpus", 0.0),
        alloc.get("memory_mib", 0),
        devices,
        preemptible=not (frozen or releasing),
        releasing=releasing,
        ends_by=ends_by,
        queue=row.queue,
        group=row.array_id,
        user=row.user,
    )


def rank_environment(job: Job, attempt: int, alloc: Allocation) -> list[dict[str, str]]:
    """The variables each rank of a local attempt gets (JOBCTL_*, SKYPILOT_*, its GPUs)."""
    n = job.num_nodes
    per_rank = len(alloc.devices) // n if alloc.devices else 0
    rank_env = []
    for rank in range(n):
        e = {
            "JOBCTL_JOB_ID": str(job.id),
            "JOBCTL_JOB_NAME": job.name,
            "JOBCTL_ATTEMPT": str(attempt),
            "JOBCTL_NODE_RANK": str(rank),
            "JOBCTL_NUM_NODES": str(n),
            "SKYPILOT_NODE_RANK": str(rank),
            "SKYPILOT_NUM_NODES": str(n),
            "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * n),
            "SKYPILOT_NUM_GPUS_PER_NODE": str(per_rank),
        }
        if job.array_index is not None:
            e["JOBCTL_ARRAY_INDEX"] = str(job.array_index)
        if per_rank:
            mine = ",".join(str(d) for d in alloc.devices[rank * per_rank : (rank + 1) * per_rank])
            e["CUDA_VISIBLE_DEVICES"] = mine
            e["JOBCTL_ACCELERATORS"] = f"{alloc.accelerator}:{mine}"
        rank_env.append(e)
    return rank_env


def build_runner_plan(
    job: Job,
    spec: JobSpec,
    attempt: int,
    alloc: Allocation,
    *,
    grace: float,
    socket: str,
    cgroup_pool: str | None,
    secrets_file: str | None,
    umask: int | None,
    env: dict[str, str],
    run_as: dict[str, Any] | None = None,
    base_env: dict[str, str] | None = None,
) -> RunnerPlan:
    """What the runner of one local attempt runs (see jobctl/backends/local/plan.py)."""
    from jobctl.core.units import format_duration

    n = job.num_nodes
    return RunnerPlan(
        job_id=job.id,
        attempt=attempt,
        num_nodes=n,
        run=spec.run,
        setup=spec.setup,
        workdir=spec.workdir,
        workdir_git=spec.workdir_git,
        env=env,
        rank_env=rank_environment(job, attempt, alloc),
        timeout=spec.timeout,
        timeout_text=format_duration(spec.timeout) if spec.timeout else None,
        warn_signal=_warning(spec),
        grace=grace,
        socket=socket,
        memory_mib=job.memory_mib * n,
        supervisor_pid=os.getpid(),
        cgroup_pool=cgroup_pool,
        secrets_file=secrets_file,
        umask=umask,
        run_as=run_as or None,
        base_env=base_env if run_as else None,
    )


def _warning(spec: JobSpec) -> list[float] | None:
    """`signal: USR1@60s` as [signal number, seconds before the timeout]; None without one."""
    if not getattr(spec, "signal", None):
        return None
    from jobctl.core.queueing import parse_warning

    signum, before = parse_warning(spec.signal)
    return [signum, before]
