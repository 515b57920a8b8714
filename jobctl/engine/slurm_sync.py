"""The service side of the Slurm backend: submit jobs, and record what Slurm reports about them.

Slurm is the source of truth for these jobs; jobctl mirrors it. `refresh` asks Slurm about many
jobs at once (one squeue, one sacct) and records each change with a compare-and-set on the state
the caller saw before asking, so two jobctl processes refreshing at once never record a change
twice. The backend (`jobctl/backends/slurm/client.py`) runs the commands and never writes the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobctl.backends.base import Session
from jobctl.backends.slurm.client import (
    AFTER,
    SlurmBackend,
    SlurmUnreachable,
    Submission,
    batch_script,
    check_values,
    choose_gres,
)
from jobctl.core import states
from jobctl.core.models import LaunchTask
from jobctl.engine.rules import dependency_verdict
from jobctl.engine.slurm_common import new_attempt_dir, poll_state, write_private_text
from jobctl.engine.slurm_observe import apply, batch_output, missed, read_attempt_file, route, target_state
from jobctl.errors import BackendError, JobctlError, UsageError
from jobctl.store.database import Store
from jobctl.store.records import Dependency, Job, loads

__all__ = ["batch_output", "check_launch", "refresh", "refresh_upstreams", "route", "submit", "target_state"]

STALE = "slurm controller unreachable; showing the last known state"
SUBMITTABLE = frozenset({states.PENDING, states.BLOCKED, states.RETRYING, states.SUSPENDED})


def _verdict(deps: list[Dependency]) -> str | None:
    return dependency_verdict(deps)


# -- submitting ------------------------------------------------------------------------------------
def check_launch(
    service: Session, task: LaunchTask, tasks: list[LaunchTask], warnings: list[str], env: dict[str, str]
) -> str | None:
    """Before anything is recorded: refuse what Slurm must never get (UsageError), warn about a GPU type
    the partition lacks, and ask Slurm whether the job could ever start (`sbatch --test-only`): its
    reason when not, else None. Used by `launch` and `launch --dry-run`."""
    spec = task.spec
    batch = {t.spec.name: t.spec.backend for t in tasks}
    for dep in spec.depends_on:
        ref = dep.ref
        if isinstance(ref, str) and ref in batch:
            other, what = batch[ref], f"{ref}"
        else:
            store = service.store
            row = store.job(int(ref)) if isinstance(ref, int) or str(ref).isdigit() else store.latest_named(str(ref))
            if row is None:
                continue  # launch refuses unknown jobs itself
            other, what = row.backend, f"job {row.id} ({row.name})"
        if other not in (None, "slurm"):
            raise UsageError(
                f"{spec.name} depends on {what}, which runs on the {other} backend; "
                "a Slurm job can only depend on Slurm jobs"
            )
    partition, account = service.config.get("slurm.partition"), service.config.get("slurm.account")
    body = spec.to_dict()
    backend = SlurmBackend()
    try:
        offer = backend.gpu_offer(partition) if spec.accelerators else None
    except JobctlError:
        offer = None
    gres, accelerator, per_node = choose_gres(spec.accelerators, offer)
    if (
        offer
        and spec.accelerators
        and not any(str(n).lower() in offer or str(n).lower().replace("-", "_") in offer for n, _ in spec.accelerators)
    ):
        kinds = ", ".join(sorted(k for k in offer if k)) or "untyped GPUs only"
        warnings.append(
            f"accelerators: the Slurm partition offers no {' or '.join(str(n) for n, _ in spec.accelerators)}"
            f" ({kinds}); asking for {(gres or '').split(':')[-1]} GPU(s) of any type"
        )
    sub = Submission(
        job_id=0,
        job_name=spec.name,
        attempt=1,
        logs=str(service.paths.logs),
        workdir=spec.workdir,
        run=spec.run,
        num_nodes=spec.num_nodes,
        cpus=task.cpus,
        memory_mib=task.memory_mib,
        gres=gres,
        accelerator=accelerator,
        gpus_per_node=per_node,
        timeout=spec.timeout,
        env={**{k: v for k, v in spec.envs.items() if v is not None}, **env},
        partition=partition,
        account=account,
        comment=",".join(f"{k}={v}" for k, v in spec.labels.items()) or None,
        mounts=_mounts(body),
    )
    check_values(sub)
    try:
        return backend.never_starts(sub)
    except JobctlError:
        return None  # Slurm cannot be asked now: sbatch will say it


def submit(service: Session, ids: list[int], again: bool = False) -> None:
    """sbatch each job as a new attempt (the members of one `--array` launch as one array job).

    A refused submission marks its jobs FAILED (submit error) and is raised once the others were tried.
    `again`: also jobs that already had a Slurm job (preempted, or re-linked behind a retried upstream).
    """
    store: Store = service.store
    rows = [
        r
        for r in (store.job(i) for i in sorted(set(ids)))
        if r is not None and r.state in SUBMITTABLE and (again or not r.backend_id or r.state == states.RETRYING)
    ]
    local = [(r, d) for r in rows for d in store.dependencies(r.id) if d.backend not in (None, "slurm")]
    if local:
        row, dep = local[0]
        error = UsageError(
            f"job {row.id} depends on job {dep.dep_id} ({dep.name}), which runs on the "
            f"{dep.backend} backend; a Slurm job can only depend on Slurm jobs"
        )
        _fail(service, rows, "submit_error", str(error))
        raise error
    backend = SlurmBackend()
    errors: list[JobctlError] = []
    offers: dict[str | None, Any] = {}
    for group in _groups(store, rows):
        try:
            _submit_group(service, backend, group, offers, again)
        except JobctlError as exc:
            _fail(service, group, "submit_error", str(exc))
            errors.append(exc)
    if errors:
        raise errors[0]


def slurm_queueing(first: Job, spec: dict[str, Any], array: bool) -> dict[str, Any]:
    """The Submission fields of SPEC section 9: a start time, an array throttle, a warning signal."""
    from jobctl.core.queueing import parse_warning, signal_name

    fields: dict[str, Any] = {}
    if first.start_at is not None and first.start_at > time.time():
        fields["begin"] = first.start_at
    if array and first.array_throttle:
        fields["throttle"] = first.array_throttle
    if spec.get("signal"):
        signum, before = parse_warning(spec["signal"])
        fields["warn_signal"] = (signal_name(signum), before)
    return fields


def _groups(store: Store, rows: list[Job]) -> list[list[Job]]:
    """Jobs of one `--array` launch (consecutive IDs and indices, same spec and dependencies) go together."""
    groups: list[list[Job]] = []
    same = ("spec_id", "attempt", "state", "cpus", "memory_mib", "accelerators", "num_nodes", "envs", "labels")
    for row in rows:
        first = groups[-1][0] if groups else None
        if (
            first is not None
            and row.array_index is not None
            and first.array_index is not None
            and all(getattr(row, k) == getattr(first, k) for k in same)
            and row.id - first.id == row.array_index - first.array_index == len(groups[-1])
            and store.dependencies(row.id) == store.dependencies(first.id)
        ):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _submit_group(service: Session, backend: SlurmBackend, group: list[Job], offers: dict, again: bool) -> None:
    store: Store = service.store
    first = group[0]
    live = [d.dep_id for d in store.dependencies(first.id) if d.state not in states.TERMINAL]
    if live:  # Slurm takes a purged job for a satisfied dependency: learn how the live ones ended first
        refresh(service, [store.job(i) for i in live], force=True)
    deps = store.dependencies(first.id)
    verdict = _verdict(deps)
    if verdict not in (None, "ok"):
        return _fail(service, group, "upstream_failed", verdict)
    after: dict[str, list[str]] = {}
    for d in (d for d in deps if d.state not in states.TERMINAL):
        if not d.backend_id:
            raise BackendError(f"dependency {d.dep_id} has not been submitted to Slurm yet")
        after.setdefault(AFTER[d.condition], []).append(d.backend_id)
    spec, partition = service.spec_of(first), service.config.get("slurm.partition")
    accelerators = loads(first.accelerators, [])
    if accelerators and partition not in offers:
        offers[partition] = backend.gpu_offer(partition)
    gres, accelerator, per_node = choose_gres(accelerators, offers.get(partition))
    latest = store.attempt(first.id, first.attempt)
    never_ran = latest is not None and latest.started_at is None
    attempt = first.attempt if again and never_ran else first.attempt + 1
    array = [r.array_index for r in group] if len(group) > 1 else None
    sub = Submission(
        job_id=first.id,
        job_name=spec["name"] if array else first.name,
        attempt=attempt,
        logs=str(service.paths.logs),
        workdir=spec["workdir"],
        run=spec["run"],
        setup=spec.get("setup"),
        num_nodes=first.num_nodes,
        cpus=first.cpus,
        memory_mib=first.memory_mib,
        gres=gres,
        accelerator=accelerator,
        gpus_per_node=per_node,
        timeout=spec.get("timeout"),
        env={
            **{k: v for k, v in (spec.get("envs") or {}).items() if v is not None},
            **(loads(first.envs, {}).get("env") or {}),
            **_secrets(service, first),
        },
        array=[i for i in array if i is not None] if array else None,
        array_index=None if array else first.array_index,
        dependency=",".join(f"{kind}:{':'.join(bids)}" for kind, bids in after.items()) or None,
        partition=partition,
        account=service.config.get("slurm.account"),
        comment=",".join(f"{k}={v}" for k, v in loads(first.labels, {}).items()) or None,
        hold=first.state == states.SUSPENDED,
        mounts=_mounts(spec),
        **slurm_queueing(first, spec, bool(array)),  # --begin, --array ...%N, --signal (SPEC section 9)
    )
    for row in group:
        new_attempt_dir(service, row.id, attempt)
    script = service.paths.attempt_dir(first.id, attempt) / "sbatch.sh"
    write_private_text(script, batch_script(sub))
    slurm_id = backend.submit(str(script), sub)
    if loads(first.envs, {}).get("secrets"):  # sbatch keeps its own copy: ours keeps no secret value
        write_private_text(
            script,
            batch_script(
                replace(sub, env={k: "***" if k in _secrets(service, first) else v for k, v in sub.env.items()})
            ),
        )
    late: list[tuple[str, str]] = []  # stopped or killed while sbatch ran
    with store.write():
        for row in group:
            bid = f"{slurm_id}_{row.array_index}" if array else slurm_id
            store.set_submitted(row.id, bid, attempt)
            store.open_attempt(row.id, attempt)
            store.transition(
                row.id,
                states.PENDING,
                expect={states.RETRYING},
                message=f"attempt {attempt} submitted as Slurm job {bid}",
            )
            now_in = store.job(row.id)
            state = now_in.state if now_in is not None else None
            if state == states.KILLED or (state == states.SUSPENDED and not sub.hold):
                late.append((bid, state))
    for bid, state in late:
        _quietly(backend.cancel if state == states.KILLED else backend.hold, bid)


def _secrets(service: Session, row: Job) -> dict[str, str]:
    """The job's secret values, from its 0600 secrets file (see jobctl/home/secrets.py)."""
    from jobctl.home import secrets as secretfiles

    try:
        return secretfiles.read(service.paths, row.envs)
    except FileNotFoundError:
        raise UsageError(f"job {row.id}: its secrets were deleted when it ended; launch it again") from None


def _mounts(spec: dict[str, Any]) -> dict[str, str]:
    """file_mounts with a local source, which each node links to (so it must be on shared storage)."""
    base = Path(spec["source"]).parent if spec.get("source") else Path(spec["workdir"])
    mounts = {}
    for dest, source in (spec.get("file_mounts") or {}).items():
        if not isinstance(source, str) or "://" in source:
            raise UsageError(
                f"file_mounts: {dest}: the slurm backend links local paths only (got {source!r}); "
                "copy the data to storage the nodes share and use that path"
            )
        mounts[str(dest)] = str((base / os.path.expanduser(source)).resolve())
    return mounts


def _fail(service: Session, rows: list[Job], reason: str, message: str) -> None:
    store: Store = service.store
    with store.write():
        for row in rows:
            store.transition(
                row.id,
                states.FAILED,
                expect=SUBMITTABLE | {states.CREATED},
                reason=reason,
                detail=states.REASON_TEXT[reason],
                message=message,
            )


def _quietly(action: Callable[[str], None], bid: str) -> None:
    try:
        action(bid)
    except JobctlError:
        pass  # the next refresh shows what Slurm did


# -- mirroring -------------------------------------------------------------------------------------
def refresh(service: Session, jobs: Sequence[Job | None], force: bool = False) -> None:
    """Mirror Slurm's view of these jobs into the database (one squeue and one sacct for all of them)."""
    rows = sorted(
        (r for r in jobs if r is not None and r.backend == "slurm" and r.backend_id and r.state not in states.TERMINAL),
        key=lambda r: r.id,
    )
    now = time.monotonic()
    _poll = poll_state(service)
    if not rows or (not force and now - _poll["last"] < _poll["gap"]):
        return
    _poll["last"], _poll["gap"] = now, min(5.0, max(0.5, _poll["gap"] * 1.25))
    backend, by_bid = SlurmBackend(), {r.backend_id: r for r in rows if r.backend_id}
    try:
        seen = backend.poll(list(by_bid), lambda bid: read_attempt_file(service, by_bid[bid], "slurm-jobid"))
    except BackendError as exc:  # never fail a status for it: show what was known, marked stale
        _poll["down"] = time.monotonic() if isinstance(exc, SlurmUnreachable) else -60.0
        text = STALE if isinstance(exc, SlurmUnreachable) else f"{exc}; showing the last known state"
        with service.store.write():
            service.store.mark_stale([r.id for r in rows], text)
        return
    todo: dict[str, list] = {"cancel": [], "again": []}
    ended: list[tuple[int, int, str]] = []  # (job, attempt, Slurm ID) of attempts that ended now
    store: Store = service.store
    with store.write():
        for row in rows:
            cur = store.job(row.id)
            if cur is None or cur.state != row.state or cur.backend_id != row.backend_id:
                continue  # changed by someone else since the caller looked: their change stands
            if (cur.message or "").endswith("showing the last known state"):
                store.clear_message(cur.id)
            obs = seen.get(cur.backend_id) if cur.backend_id else None
            obs = missed(service, cur, obs is None) or obs
            if obs is None:
                continue  # not in Slurm's answer this time: no news until misses confirm it is gone
            action = apply(service, store, cur, obs, time.time())
            after = store.job(cur.id)
            if after is not None and after.state != cur.state and after.state in _ENDS_ATTEMPT and cur.backend_id:
                ended.append((cur.id, cur.attempt, cur.backend_id))
            if action:
                todo[action].append(cur.backend_id if action == "cancel" else cur.id)
        from jobctl.home.secrets import Sweeper

        Sweeper(service.paths).sweep(store)  # the secrets of jobs that just ended go (no supervisor on Slurm)
    if ended:
        record_usage(service, backend, ended)
    for bid in todo["cancel"]:
        _quietly(backend.cancel, bid)
    if todo["again"]:
        try:
            submit(service, todo["again"], again=True)
        except JobctlError:
            pass  # recorded on the jobs (FAILED, submit error); a refresh raises no errors of its own


_ENDS_ATTEMPT = states.TERMINAL | {states.RETRYING}


def record_usage(service: Session, backend: SlurmBackend, ended: list[tuple[int, int, str]]) -> None:
    """Each ended attempt's usage from sacct (TotalCPU, MaxRSS, Elapsed, AllocTRES); best effort: a
    cluster without accounting leaves it unknown."""
    try:
        found = backend.usage([bid for _, _, bid in ended])
    except Exception:  # noqa: BLE001 - accounting never fails a refresh
        return
    if not found:
        return
    with service.store.write():
        for job_id, attempt, bid in ended:
            service.store.record_usage(job_id, attempt, found.get(bid))


UPSTREAM_POLL = 3.0  # seconds between looks at Slurm while a local job waits for a Slurm job


def refresh_upstreams(service: Session) -> float | None:
    """For the supervisor: mirror the unfinished Slurm jobs that BLOCKED local jobs depend on (so a local
    job starts when its Slurm upstream ends, without a CLI command); when to look again, None: no such job."""
    rows = service.store.slurm_upstreams()
    if not rows:
        return None
    refresh(service, rows, force=True)
    return time.time() + UPSTREAM_POLL
