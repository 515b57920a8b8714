"""The service side of the Slurm backend: submit jobs, and record what Slurm reports about them.

Slurm is the source of truth for these jobs; jobctl mirrors it. `refresh` asks Slurm about many
jobs at once (one squeue, one sacct) and records each change with a compare-and-set on the state
the caller saw before asking, so two jobctl processes refreshing at once never record a change
twice. The backend (`jobctl/backends/slurm/client.py`) runs the commands and never writes the database.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobctl.backends.slurm.client import (
    AFTER,
    SlurmBackend,
    SlurmObservation,
    SlurmUnreachable,
    Submission,
    batch_script,
    check_values,
    choose_gres,
)
from jobctl.backends.slurm.client import (
    WAITING as WAITING_IN_SLURM,
)
from jobctl.core import states
from jobctl.core.units import format_duration, format_gib
from jobctl.engine.local import dependency_verdict, failure_detail
from jobctl.errors import BackendError, JobctlError, UsageError
from jobctl.store.database import loads, transition

STALE = "slurm controller unreachable; showing the last known state"
SETTLE = 5.0  # seconds during which a user's own stop/start may not show in Slurm yet
SUBMITTABLE = frozenset({states.PENDING, states.BLOCKED, states.RETRYING, states.SUSPENDED})


def _poll_state(service) -> dict[str, float]:
    """Per service (one CLI process): at most one squeue per gap, 0.5 s growing to 5 s."""
    if not hasattr(service, "slurm_poll"):
        service.slurm_poll = {"last": 0.0, "gap": 0.0, "down": -60.0}
    return service.slurm_poll


def backend_for(service):
    """What control.py uses for stop/start/kill of Slurm jobs (see jobctl/engine/slurm_control.py)."""
    from jobctl.engine.slurm_control import SyncedBackend

    return SyncedBackend(service)


def _row(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def _deps(conn: sqlite3.Connection, job_id: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT d.dep_id, d.condition, j.state, j.name, j.backend, j.backend_id FROM deps d LEFT"
        " JOIN jobs j ON j.id = d.dep_id WHERE d.job_id = ? ORDER BY d.dep_id",
        (job_id,),
    ).fetchall()


def _verdict(deps: list[sqlite3.Row]) -> str | None:
    return dependency_verdict([(d["dep_id"], d["condition"], d["state"], d["name"]) for d in deps])


# -- submitting ------------------------------------------------------------------------------------
def check_launch(
    service, task: dict[str, Any], tasks: list[dict[str, Any]], warnings: list[str], env: dict[str, str]
) -> str | None:
    """Before anything is recorded: refuse what Slurm must never get (UsageError), warn about a GPU type
    the partition lacks, and ask Slurm whether the job could ever start (`sbatch --test-only`): its
    reason when not, else None. Used by `launch` and `launch --dry-run`."""
    spec = task["spec"]
    batch = {t["spec"].name: t["spec"].backend for t in tasks}
    for dep in spec.depends_on:
        ref = dep.ref
        if isinstance(ref, str) and ref in batch:
            other, what = batch[ref], f"{ref}"
        else:
            row = service.store.conn.execute(
                "SELECT id, name, backend FROM jobs WHERE id = ?"
                if isinstance(ref, int) or str(ref).isdigit()
                else "SELECT id, name, backend FROM jobs WHERE name = ? ORDER BY id DESC",
                (ref,),
            ).fetchone()
            if row is None:
                continue  # launch refuses unknown jobs itself
            other, what = row["backend"], f"job {row['id']} ({row['name']})"
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
            f" ({kinds}); asking for {gres.split(':')[-1]} GPU(s) of any type"
        )
    sub = Submission(
        job_id=0,
        job_name=spec.name,
        attempt=1,
        logs=str(service.paths.logs),
        workdir=spec.workdir,
        run=spec.run,
        num_nodes=spec.num_nodes,
        cpus=task["cpus"],
        memory_mib=task["memory_mib"],
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


def submit(service, ids: list[int], again: bool = False) -> None:
    """sbatch each job as a new attempt (the members of one `--array` launch as one array job).

    A refused submission marks its jobs FAILED (submit error) and is raised once the others were tried.
    `again`: also jobs that already had a Slurm job (preempted, or re-linked behind a retried upstream).
    """
    conn = service.store.conn
    rows = [
        r
        for r in (_row(conn, i) for i in sorted(set(ids)))
        if r is not None
        and r["state"] in SUBMITTABLE
        and (again or not r["backend_id"] or r["state"] == states.RETRYING)
    ]
    local = [(r, d) for r in rows for d in _deps(conn, r["id"]) if d["backend"] not in (None, "slurm")]
    if local:
        row, dep = local[0]
        error = UsageError(
            f"job {row['id']} depends on job {dep['dep_id']} ({dep['name']}), which runs on the "
            f"{dep['backend']} backend; a Slurm job can only depend on Slurm jobs"
        )
        _fail(service, rows, "submit_error", str(error))
        raise error
    backend, errors, offers = SlurmBackend(), [], {}
    for group in _groups(conn, rows):
        try:
            _submit_group(service, backend, group, offers, again)
        except JobctlError as exc:
            _fail(service, group, "submit_error", str(exc))
            errors.append(exc)
    if errors:
        raise errors[0]


def _groups(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[list[sqlite3.Row]]:
    """Jobs of one `--array` launch (consecutive IDs and indices, same spec and dependencies) go together."""
    groups: list[list[sqlite3.Row]] = []
    same = ("spec_id", "attempt", "state", "cpus", "memory_mib", "accelerators", "num_nodes", "envs", "labels")
    for row in rows:
        first = groups[-1][0] if groups else None
        if (
            first is not None
            and row["array_index"] is not None
            and first["array_index"] is not None
            and all(row[k] == first[k] for k in same)
            and row["id"] - first["id"] == row["array_index"] - first["array_index"] == len(groups[-1])
            and [tuple(d) for d in _deps(conn, row["id"])] == [tuple(d) for d in _deps(conn, first["id"])]
        ):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _submit_group(service, backend: SlurmBackend, group: list[sqlite3.Row], offers: dict, again: bool) -> None:
    conn, first = service.store.conn, group[0]
    live = [d["dep_id"] for d in _deps(conn, first["id"]) if d["state"] not in states.TERMINAL]
    if live:  # Slurm takes a purged job for a satisfied dependency: learn how the live ones ended first
        refresh(service, [_row(conn, i) for i in live], force=True)
    deps = _deps(conn, first["id"])
    verdict = _verdict(deps)
    if verdict not in (None, "ok"):
        return _fail(service, group, "upstream_failed", verdict)
    after: dict[str, list[str]] = {}
    for d in (d for d in deps if d["state"] not in states.TERMINAL):
        if not d["backend_id"]:
            raise BackendError(f"dependency {d['dep_id']} has not been submitted to Slurm yet")
        after.setdefault(AFTER[d["condition"]], []).append(d["backend_id"])
    spec, partition = service.spec_of(first), service.config.get("slurm.partition")
    accelerators = loads(first["accelerators"], [])
    if accelerators and partition not in offers:
        offers[partition] = backend.gpu_offer(partition)
    gres, accelerator, per_node = choose_gres(accelerators, offers.get(partition))
    never_ran = conn.execute(
        "SELECT 1 FROM attempts WHERE job_id = ? AND n = ? AND started_at IS NULL", (first["id"], first["attempt"])
    ).fetchone()
    attempt = first["attempt"] if again and never_ran else first["attempt"] + 1
    array = [r["array_index"] for r in group] if len(group) > 1 else None
    sub = Submission(
        job_id=first["id"],
        job_name=spec["name"] if array else first["name"],
        attempt=attempt,
        logs=str(service.paths.logs),
        workdir=spec["workdir"],
        run=spec["run"],
        setup=spec.get("setup"),
        num_nodes=first["num_nodes"],
        cpus=first["cpus"],
        memory_mib=first["memory_mib"],
        gres=gres,
        accelerator=accelerator,
        gpus_per_node=per_node,
        timeout=spec.get("timeout"),
        env={
            **{k: v for k, v in (spec.get("envs") or {}).items() if v is not None},
            **(loads(first["envs"], {}).get("env") or {}),
            **_secrets(service, first),
        },
        array=array,
        array_index=None if array else first["array_index"],
        dependency=",".join(f"{kind}:{':'.join(bids)}" for kind, bids in after.items()) or None,
        partition=partition,
        account=service.config.get("slurm.account"),
        comment=",".join(f"{k}={v}" for k, v in loads(first["labels"], {}).items()) or None,
        hold=first["state"] == states.SUSPENDED,
        mounts=_mounts(spec),
    )
    for row in group:
        _new_attempt_dir(service, row["id"], attempt)
    script = service.paths.attempt_dir(first["id"], attempt) / "sbatch.sh"
    _write(script, batch_script(sub))
    slurm_id = backend.submit(str(script), sub)
    if loads(first["envs"], {}).get("secrets"):  # sbatch keeps its own copy: ours keeps no secret value
        _write(
            script,
            batch_script(
                replace(sub, env={k: "***" if k in _secrets(service, first) else v for k, v in sub.env.items()})
            ),
        )
    late: list[tuple[str, str]] = []  # stopped or killed while sbatch ran
    with service.store.write() as wconn:
        for row in group:
            bid = f"{slurm_id}_{row['array_index']}" if array else slurm_id
            wconn.execute(
                "UPDATE jobs SET backend_id = ?, attempt = ?, exit_code = NULL WHERE id = ?", (bid, attempt, row["id"])
            )
            wconn.execute("INSERT OR REPLACE INTO attempts (job_id, n) VALUES (?, ?)", (row["id"], attempt))
            transition(
                wconn,
                row["id"],
                states.PENDING,
                expect={states.RETRYING},
                message=f"attempt {attempt} submitted as Slurm job {bid}",
            )
            state = _row(wconn, row["id"])["state"]
            if state == states.KILLED or (state == states.SUSPENDED and not sub.hold):
                late.append((bid, state))
    for bid, state in late:
        _quietly(backend.cancel if state == states.KILLED else backend.hold, bid)


def _secrets(service, row: sqlite3.Row) -> dict[str, str]:
    """The job's secret values, from its 0600 secrets file (see jobctl/home/secrets.py)."""
    from jobctl.home import secrets as secretfiles

    try:
        return secretfiles.read(service.paths, row["envs"])
    except FileNotFoundError:
        raise UsageError(f"job {row['id']}: its secrets were deleted when it ended; launch it again") from None


def _new_attempt_dir(service, job_id: int, attempt: int) -> None:
    """The attempt's log folder, and the number the batch script reads to find it (see batch_script)."""
    service.paths.attempt_dir(job_id, attempt).mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(service.paths.job_dir(job_id) / "slurm-attempt", f"{attempt}\n")


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


def _write(path: Path, text: str) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)


def _fail(service, rows: list[sqlite3.Row], reason: str, message: str) -> None:
    with service.store.write() as conn:
        for row in rows:
            transition(
                conn,
                row["id"],
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
def refresh(service, rows: list[sqlite3.Row], force: bool = False) -> None:
    """Mirror Slurm's view of these jobs into the database (one squeue and one sacct for all of them)."""
    rows = sorted(
        (
            r
            for r in rows
            if r is not None and r["backend"] == "slurm" and r["backend_id"] and r["state"] not in states.TERMINAL
        ),
        key=lambda r: r["id"],
    )
    now = time.monotonic()
    _poll = _poll_state(service)
    if not rows or (not force and now - _poll["last"] < _poll["gap"]):
        return
    _poll["last"], _poll["gap"] = now, min(5.0, max(0.5, _poll["gap"] * 1.25))
    backend, by_bid = SlurmBackend(), {r["backend_id"]: r for r in rows}
    try:
        seen = backend.poll(list(by_bid), lambda bid: _read(service, by_bid[bid], "slurm-jobid"))
    except BackendError as exc:  # never fail a status for it: show what was known, marked stale
        _poll["down"] = time.monotonic() if isinstance(exc, SlurmUnreachable) else -60.0
        text = STALE if isinstance(exc, SlurmUnreachable) else f"{exc}; showing the last known state"
        with service.store.write() as conn:
            conn.executemany(
                "UPDATE jobs SET message = ? WHERE id = ? AND state NOT IN ('COMPLETED', 'FAILED', 'KILLED')",
                [(text, r["id"]) for r in rows],
            )
        return
    todo: dict[str, list] = {"cancel": [], "again": []}
    ended: list[tuple[int, int, str]] = []  # (job, attempt, Slurm ID) of attempts that ended now
    with service.store.write() as conn:
        for row in rows:
            cur = _row(conn, row["id"])
            if cur is None or cur["state"] != row["state"] or cur["backend_id"] != row["backend_id"]:
                continue  # changed by someone else since the caller looked: their change stands
            if (cur["message"] or "").endswith("showing the last known state"):
                conn.execute("UPDATE jobs SET message = NULL WHERE id = ?", (cur["id"],))
            obs = seen.get(cur["backend_id"])
            obs = _missed(service, cur, obs is None) or obs
            if obs is None:
                continue  # not in Slurm's answer this time: no news until misses confirm it is gone
            action = _apply(service, conn, cur, obs, time.time())
            after = _row(conn, cur["id"])
            if after is not None and after["state"] != cur["state"] and after["state"] in _ENDS_ATTEMPT:
                ended.append((cur["id"], cur["attempt"], cur["backend_id"]))
            if action:
                todo[action].append(cur["backend_id"] if action == "cancel" else cur["id"])
        from jobctl.home.secrets import Sweeper

        Sweeper(service.paths).sweep(conn)  # the secrets of jobs that just ended go (no supervisor on Slurm)
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


def record_usage(service, backend: SlurmBackend, ended: list[tuple[int, int, str]]) -> None:
    """Each ended attempt's usage from sacct (TotalCPU, MaxRSS, Elapsed, AllocTRES); best effort: a
    cluster without accounting leaves it unknown."""
    from jobctl.store import usage as usage_store

    try:
        found = backend.usage([bid for _, _, bid in ended])
    except Exception:  # noqa: BLE001 - accounting never fails a refresh
        return
    if not found:
        return
    with service.store.write() as conn:
        for job_id, attempt, bid in ended:
            usage_store.record(conn, job_id, attempt, found.get(bid))


UPSTREAM_POLL = 3.0  # seconds between looks at Slurm while a local job waits for a Slurm job


def refresh_upstreams(service) -> float | None:
    """For the supervisor: mirror the unfinished Slurm jobs that BLOCKED local jobs depend on (so a local
    job starts when its Slurm upstream ends, without a CLI command); when to look again, None: no such job."""
    rows = service.store.conn.execute(
        "SELECT DISTINCT j.* FROM deps d JOIN jobs w ON w.id = d.job_id JOIN jobs j ON j.id = d.dep_id"
        " WHERE w.backend = 'local' AND w.state = 'BLOCKED' AND j.backend = 'slurm' AND j.backend_id IS NOT NULL"
        " AND j.state NOT IN ('COMPLETED', 'FAILED', 'KILLED')"
    ).fetchall()
    if not rows:
        return None
    refresh(service, rows, force=True)
    return time.time() + UPSTREAM_POLL


def _read(service, row: sqlite3.Row, name: str) -> str | None:
    try:
        return (service.paths.attempt_dir(row["id"], row["attempt"]) / name).read_text().strip() or None
    except OSError:
        return None


def _exit_codes(service, row: sqlite3.Row) -> list[int | None]:
    """What each worker's rank<N>.exit says (None: it wrote none)."""
    codes = [_read(service, row, f"rank{rank}.exit") for rank in range(row["num_nodes"])]
    return [int(c) if c and c.lstrip("-").isdigit() else None for c in codes]


def batch_output(service, row: sqlite3.Row) -> dict[str, Any]:
    """For `describe`: where Slurm's output of the latest attempt is, and when the job failed or was lost,
    its last lines (errors of the batch script and of Slurm itself show only there)."""
    path = service.paths.attempt_dir(row["id"], row["attempt"]) / "slurm.out"
    failed = row["state"] == states.FAILED or row["reason"] in ("worker_lost", "start_error")
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


def _missed(service, row: sqlite3.Row, missing: bool) -> SlurmObservation | None:
    """Count the looks in which neither squeue nor sacct knew the job (in `slurm-missing` of its attempt).

    One empty answer (a squeue filtered by the caller's settings, a controller that just restarted)
    never ends a job: it ends when its workers' exit files say how, or as lost after LOST_AFTER."""
    path = service.paths.attempt_dir(row["id"], row["attempt"]) / "slurm-missing"
    if not missing:
        if path.exists():
            path.unlink(missing_ok=True)
        return None
    codes = _exit_codes(service, row)
    if codes and None not in codes:
        return _from_files(service, row)
    first, count = time.time(), 0
    try:
        first, count = (float(x) for x in path.read_text().split())
    except (OSError, ValueError):
        pass
    count += 1
    if count >= LOST_AFTER[0] and time.time() - first >= LOST_AFTER[1]:
        return _from_files(service, row)
    try:
        _write(path, f"{first} {int(count)}\n")
    except OSError:
        pass
    return None


def _from_files(service, row: sqlite3.Row) -> SlurmObservation:
    """A job Slurm no longer knows (purged, no accounting): what its workers wrote, else lost."""
    codes, bid = _exit_codes(service, row), row["backend_id"]
    if codes and None not in codes:
        bad = next((c for c in codes if c), 0)
        folder = service.paths.attempt_dir(row["id"], row["attempt"])
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


def _apply(service, conn: sqlite3.Connection, cur: sqlite3.Row, obs: SlurmObservation, now: float) -> str | None:
    """Record one observation; returns "cancel" or "again" when Slurm must be told something."""
    state, job_id, n = cur["state"], cur["id"], cur["num_nodes"]
    if state == states.RETRYING:
        return "again" if obs.state in states.TERMINAL else None  # its resubmission did not happen yet
    last = conn.execute("SELECT * FROM events WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)).fetchone()
    recent = (
        last is not None
        and last["actor"] != "system"
        and now - last["at"] < SETTLE
        and states.SUSPENDED in (last["from_state"], last["to_state"])
    )  # a user's stop or start
    spec = service.spec_of(cur)
    limit = spec.get("queue_timeout")
    if limit and obs.state in (states.PENDING, states.BLOCKED) and now >= cur["submitted_at"] + limit:
        obs = SlurmObservation(
            obs.backend_id,
            states.FAILED,
            "queue_timeout",
            f"waited longer than its queue_timeout of {format_duration(limit)}",
            slurm_state=obs.slurm_state,
        )
    target = target_state(state, cur["reason"], obs, recent)
    deps = _deps(conn, job_id)
    if state == states.BLOCKED and target == states.PENDING and _verdict(deps) != "ok":
        target = None  # Slurm has not looked at its dependencies yet (reason None)
    if target is None:
        if state == obs.state == states.PENDING and (
            cur["reason"] != obs.reason or obs.message and cur["message"] != obs.message
        ):  # Slurm's reason changed
            conn.execute(
                "UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE id = ?",
                (obs.reason, states.REASON_TEXT.get(obs.reason or ""), obs.message, job_id),
            )
        return None
    reason, message, code, action = obs.reason, obs.message, obs.exit_code, None
    codes = _exit_codes(service, cur)
    folder = service.paths.attempt_dir(job_id, cur["attempt"])
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
        message = _verdict(deps)
        if message in (None, "ok"):
            return "again"  # jobctl is retrying its upstream: submit it again behind the new attempt
        action = "cancel" if obs.slurm_state == "PENDING" else None
    elif reason == "queue_timeout" or reason == "start_error" and obs.slurm_state in WAITING_IN_SLURM:
        action = "cancel"  # it would wait in Slurm for good
    elif reason == "exit_code" and any(service.paths.attempt_dir(job_id, cur["attempt"]).glob("setup_failed.*")):
        reason, message = "setup_failed", f"setup failed with exit code {code}"
    elif reason == "exit_code" and n > 1 and any(c is not None for c in codes):
        reason, message = "workers_failed", f"{sum(1 for c in codes if c)}/{n} workers failed"
    elif reason == "out_of_memory":
        message = f"used more than its {format_gib(cur['memory_mib'])} GiB of memory; raise resources.memory"
    elif reason == "timed_out" and spec.get("timeout"):
        message = f"ran longer than its timeout of {format_duration(spec['timeout'])}"
    detail = {
        states.BLOCKED: states.blocked_detail([d["dep_id"] for d in deps]) if deps else None,
        states.SUSPENDED: "by system" if reason == "system" else "in Slurm",
        states.KILLED: "in Slurm",
        states.PENDING: states.REASON_TEXT.get(reason or ""),
    }.get(target)
    fields: dict[str, Any] = {"exit_code": 0} if target == states.COMPLETED else {}
    if target == states.FAILED:
        detail = failure_detail(reason, message, code) if code is not None or reason != "exit_code" else None
        fields = {"exit_code": code}
        if reason not in ("upstream_failed", "queue_timeout"):
            fields["failures"] = cur["failures"] + 1
            if cur["attempt"] < cur["max_attempts"]:  # automatic retry: a new Slurm job
                message = f"attempt {cur['attempt']} failed ({detail or 'failed'}); submitting the next one"
                target, action = states.RETRYING, "again"
                detail = f"attempt {cur['attempt'] + 1}/{cur['max_attempts']}"
    if target in states.TERMINAL:
        fields["ended_at"] = obs.ended_at or now
    started = obs.started_at or (now if target in (states.ACTIVE, states.COMPLETED) else None)
    for step in route(state, target, ran=obs.started_at is not None and state != states.SUSPENDED):
        extra = {"started_at": started} if step == states.ACTIVE and started else {}
        # events are stamped with when Slurm says it happened (a job that ended unseen: its own times)
        at = min(now, started) if extra else min(now, obs.ended_at or now) if step in states.TERMINAL else now
        if step != target:
            transition(conn, job_id, step, now=at, fields=extra)
        else:
            transition(
                conn, job_id, step, reason=reason, detail=detail, message=message, now=at, fields={**fields, **extra}
            )
    key = (job_id, cur["attempt"])  # the attempts and workers rows that `describe` shows
    if started:
        conn.execute(
            "UPDATE attempts SET started_at = COALESCE(started_at, ?) WHERE job_id = ? AND n = ?", (started, *key)
        )
        conn.executemany(
            "INSERT OR IGNORE INTO workers (job_id, attempt, rank, state) VALUES (?, ?, ?, 'running')",
            [(*key, rank) for rank in range(n)],
        )
    if target in states.TERMINAL or target == states.RETRYING:
        conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, exit_code = ? WHERE job_id = ? AND n = ?",
            (obs.ended_at or now, reason or target.lower(), code, *key),
        )
        conn.executemany(
            "UPDATE workers SET state = ?, exit_code = ? WHERE job_id = ? AND attempt = ? AND rank = ?",
            [("lost" if c is None and reason == "worker_lost" else "exited", c, *key, r) for r, c in enumerate(codes)],
        )
    return action
