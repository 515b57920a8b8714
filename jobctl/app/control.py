"""stop, start, kill, retry, rm, prune: each acts on one job and reports what happened.

The CLI process does the work itself: a compare-and-set in the database, then a signal to the
job's runner (after checking its identity). The supervisor is only woken to re-plan. A command
that does not fit the job's state is refused with a message that names the state.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

from jobctl.app.session import ActionResult, Service
from jobctl.backends.base import Backend
from jobctl.core import states
from jobctl.engine.backends import backend_class, backend_for
from jobctl.store.database import Store
from jobctl.store.records import Dependency, Job, dumps, loads


def _result(row: Job, ok: bool, message: str, state: str | None = None) -> ActionResult:
    return ActionResult(row.id, row.name, ok, message, state)


def _refuse(service: Service, row: Job, wanted: str) -> ActionResult:
    return _result(row, False, f"{service._contextual(row)}; {wanted}", row.state)


def _backend(service: Service, row: Job) -> Backend:
    return backend_for(row, service)


def stop(service: Service, row: Job, release: bool = False) -> ActionResult:
    by = f"by {service.user}"
    if row.state in states.QUEUED:
        if service._cas(
            row,
            states.SUSPENDED,
            states.QUEUED,
            reason="held",
            detail=by,
            message="held: it will not start until `jobctl start`",
        ):
            _backend(service, row).hold(row)
            return _result(row, True, f"job {row.id} held (SUSPENDED)", states.SUSPENDED)
    elif row.state in states.RUNNING:
        reason = "released" if release else "user"
        message = "stopped and released; `jobctl start` requeues it" if release else "frozen; `jobctl start` resumes it"
        if service._cas(row, states.SUSPENDED, states.RUNNING, reason=reason, detail=by, message=message):
            backend = _backend(service, row)
            if release:
                backend.release(row, _grace(service))
            else:
                backend.freeze(row)
            return _result(
                row, True, f"job {row.id} {'released' if release else 'frozen'} (SUSPENDED)", states.SUSPENDED
            )
    return _refuse(service, _fresh(service, row), "only running or waiting jobs can be stopped")


def start(service: Service, row: Job) -> ActionResult:
    if row.state != states.SUSPENDED:
        return _refuse(service, row, "only SUSPENDED jobs can be started")
    if row.reason == "user":  # frozen: thaw it
        if service._cas(row, states.ACTIVE, {states.SUSPENDED}, message="resumed"):
            _backend(service, row).thaw(row)
            return _result(row, True, f"job {row.id} resumed (ACTIVE)", states.ACTIVE)
    else:
        after = _after(service, row)
        target = states.BLOCKED if after else states.PENDING
        if service._cas(
            row, target, {states.SUSPENDED}, reason="dependency" if after else None, detail=after, message="requeued"
        ):
            _backend(service, row).requeue(row)
            return _result(row, True, f"job {row.id} requeued ({target})", target)
    return _refuse(service, _fresh(service, row), "only SUSPENDED jobs can be started")


def kill(service: Service, row: Job, grace: float | None = None, signum: int | None = None) -> ActionResult:
    if row.state in states.TERMINAL:
        if _backend(service, row).cancel_leftover(row):  # taken for ended, but the backend still ran it
            return _result(
                row,
                True,
                f"job {row.id} ({row.state}) was still in Slurm as job {row.backend_id}: cancelled it there",
                row.state,
            )
        return _refuse(service, row, "only unfinished jobs can be killed")
    grace = _grace(service) if grace is None else grace
    src = service._cas(
        row, states.KILLED, states.LIVE, reason="user", detail=f"by {service.user}", message=f"killed by {service.user}"
    )
    if src is None:
        return _refuse(service, _fresh(service, row), "only unfinished jobs can be killed")
    _backend(service, row).kill(row, _fresh(service, row), grace, signum)
    return _result(row, True, f"job {row.id} killed", states.KILLED)


def retry(service: Service, row: Job, values: dict[str, str] | None = None) -> ActionResult:
    """Queue a FAILED or KILLED job again as a new attempt, with a fresh budget of automatic retries.

    Refused while a dependency it needs is itself FAILED or KILLED (retry that one first): a job
    queued again behind such a dependency would only fail again at once. Its dependents that failed
    only because of it (`FAILED (upstream failed)`) wait for it again (BLOCKED), down the chain.
    `values`: secret values given again (`retry --env NAME`, `--env-file`), for a job whose secrets
    file was deleted when it ended (SPEC section 14); names the job does not use are ignored.
    """
    if row.state not in (states.FAILED, states.KILLED):
        return _refuse(service, row, "only FAILED or KILLED jobs can be retried")
    if row.alloc is not None:
        return _result(row, False, f"job {row.id} is still stopping; try again in a moment", row.state)
    from jobctl.home import secrets as secretfiles

    envs = loads(row.envs, {})
    names = [str(n) for n in envs.get("secret") or []]
    secrets = secretfiles.path_of(service.paths, row.envs)
    given = {n: values[n] for n in names if values and n in values}
    if secrets is not None and not secrets.exists():  # removed when the job ended (SPEC section 14)
        missing = [n for n in names if n not in given]
        if missing:
            return _result(
                row,
                False,
                f"job {row.id}: its secrets ({', '.join(missing)}) were deleted when it ended; give them "
                f"again: jobctl retry {row.id} --env-file FILE (or --env NAME)",
                row.state,
            )
    elif given and secrets is not None:  # still there (another task of its array runs): new values win
        try:
            given = {**secretfiles.read(service.paths, row.envs), **given}
        except FileNotFoundError:  # removed meanwhile: only what was given again
            pass
    _backend(service, row).cancel_leftover(row)  # never a second copy beside one the backend still runs
    retries = int(service.spec_of(row).get("retries") or 0)
    attempt, last = row.attempt + 1, row.attempt + retries + 1
    now = time.time()
    store = service.store
    with store.write():
        problem = _unmet_dependency(store, row)
        if problem:
            return _result(row, False, problem, row.state)
        after = _after(service, row)
        target = states.BLOCKED if after else states.PENDING
        fields: dict[str, object] = {
            "failures": 0,
            "ended_at": None,
            "exit_code": None,
            "not_before": None,
            "backend_id": None,
            "max_attempts": last,
        }
        if given:  # a new secrets file, written inside the transaction (see jobctl/home/secrets.py)
            fields["envs"] = dumps({**envs, "secrets": secretfiles.write(service.paths, given)})
        src = store.transition(
            row.id,
            target,
            expect={states.FAILED, states.KILLED},
            reason="dependency" if after else None,
            detail=after,
            actor=service.user,
            now=now,
            message=f"retried by {service.user}: attempt {attempt} of at most {last}",
            fields=fields,
        )
        again = _requeue_dependents(store, row.id, service.user, now) if src else []
    if src:
        _backend(service, row).submit([row.id])
        text = f"job {row.id} queued again as attempt {attempt} of at most {last}"
        if again:
            text += f"; its dependents {', '.join(map(str, again))} wait for it again (BLOCKED)"
        return _result(row, True, text, target)
    fresh = _fresh(service, row)
    if row.reason == "upstream_failed" and fresh.state == states.BLOCKED:
        # its upstream was retried a moment ago (e.g. `jobctl retry up down`): it waits for it again
        return _result(
            row,
            True,
            f"job {row.id} waits for its upstream again ({states.status_text(fresh.state, fresh.detail)})",
            fresh.state,
        )
    return _refuse(service, fresh, "only FAILED or KILLED jobs can be retried")


def _unmet_dependency(store: Store, row: Job) -> str | None:
    """Why a retried `row` could not run because of a dependency, or None.

    A dependency that was removed (`rm`, `prune`) no longer holds back a job that had got past it
    (it ran, or failed for another reason): that dependency is dropped. A job that failed because of
    it (upstream failed or completed) cannot run any more: launch it again."""
    me = f"job {row.id} ({row.name})"
    held_back = row.reason in ("upstream_failed", "upstream_completed")
    removed = []
    for dep in store.dependencies(row.id):
        dep_id, condition, state, name = dep.dep_id, dep.condition, dep.state, dep.name
        if state is None:
            if held_back:
                return f"{me} depends on job {dep_id}, which was removed; it can never run (launch it again)"
            removed.append(dep_id)
        elif condition == "ok" and state in (states.FAILED, states.KILLED):
            return f"{me} depends on job {dep_id} ({name}), which is {state}; retry {dep_id} first"
        elif condition == "failed" and state == states.COMPLETED:
            return f"{me} runs only if job {dep_id} ({name}) fails (condition: failed), and it COMPLETED; it cannot run"
    store.drop_dependencies(row.id, removed)
    return None


def _requeue_dependents(store: Store, job_id: int, actor: str, now: float) -> list[int]:
    """Dependents failed only because `job_id` (now queued again) had failed: BLOCKED again, down the chain."""
    from jobctl.engine.local import dependency_outcome

    again, todo = [], [job_id]
    while todo:
        up = todo.pop(0)
        for dep in store.upstream_failed_dependents(up):
            deps: list[Dependency] = store.dependencies(dep.id)
            if dependency_outcome(deps)[0] != "wait":
                continue  # another dependency still holds it back (or none does any more)
            after = states.blocked_detail([d.dep_id for d in deps])
            if store.transition(
                dep.id,
                states.BLOCKED,
                expect={states.FAILED},
                reason="dependency",
                detail=after,
                message=f"job {up} was retried; waits for it again",
                actor=actor,
                now=now,
                fields={"ended_at": None, "exit_code": None},
            ):
                again.append(dep.id)
                todo.append(dep.id)
    return again


def remove(service: Service, row: Job) -> ActionResult:
    if row.state not in states.TERMINAL or row.alloc is not None:
        return _refuse(service, row, "only finished jobs can be removed (kill it first)")
    store = service.store
    with store.write():
        needed = store.live_dependent(row.id)
        if needed:  # it would fail at once ("dependency no longer exists"): keep the upstream
            return _result(
                row,
                False,
                f"job {row.id} is a dependency of job {needed.id} ({needed.name}),"
                f" which is {needed.state}; kill or remove that job first",
                row.state,
            )
        store.remove_finished(row.id)
    shutil.rmtree(service.paths.job_dir(row.id), ignore_errors=True)
    return _result(row, True, f"job {row.id} removed")


def prune(service: Service, older_than: float) -> list[ActionResult]:
    cutoff = time.time() - older_than
    rows = service.store.prunable(cutoff)  # kept while an unfinished job needs it
    return [remove(service, row) for row in rows]


# For `--all`, and for a name or glob that matches several jobs: the jobs each action applies to.
# The others are skipped without a word (like `scancel -u`, `pueue kill --all`); a job named on its
# own (an ID, or a name that matches one job) is always acted on, so a wrong state is reported.
APPLIES = {
    "stop": lambda r: r.state in states.QUEUED | states.RUNNING,
    "start": lambda r: r.state == states.SUSPENDED,
    "retry": lambda r: r.state in (states.FAILED, states.KILLED),
    "kill": lambda r: r.state not in states.TERMINAL,
    "rm": lambda r: r.state in states.TERMINAL,
    "update": lambda r: r.state not in states.TERMINAL,
}


def bulk(
    service: Service, selectors: list[str], all_jobs: bool, verb: str, action: Callable[[Job], ActionResult]
) -> list[ActionResult]:
    """Act on every job the selectors name, one result per job (and one per selector that names
    nothing). One job's error, whatever it is, never stops the others."""
    import os
    import traceback

    applies = APPLIES[verb]
    todo: list[tuple[str | None, Job, bool]] = []  # (selector, job, skip it if the action does not apply)
    results: list[ActionResult] = []
    seen: set[int] = set()
    if all_jobs:
        todo = [(None, row, True) for row in service.select([], all_jobs=True) if applies(row)]
    for sel in selectors:
        matched = service.select([sel], missing_ok=True)
        if not matched:
            results.append(ActionResult(None, None, False, f"no job matches {sel!r}", None, sel))
            continue
        rows = [r for r in matched if r.id not in seen]
        usable = [r for r in rows if applies(r)] if len(rows) > 1 else []
        for row in usable or rows:  # none applies: act on each anyway, so each refusal says why
            seen.add(row.id)
            todo.append((sel, row, bool(usable)))
    if service.refresh([r for _, r, _ in todo]):  # act on Slurm's current state, not on what was last recorded
        todo = [(sel, _fresh(service, r), skip) for sel, r, skip in todo]
        todo = [(sel, r, skip) for sel, r, skip in todo if applies(r) or not skip]
    debug = os.environ.get("JOBCTL_DEBUG") not in (None, "", "0")
    for selector, row, _ in todo:
        try:
            result = action(row)
        except Exception as exc:  # a race with the supervisor, a backend error, a full disk ...
            if debug:
                traceback.print_exc()
            text = getattr(exc, "message", None) or (
                f"{exc.strerror}: {exc.filename}"
                if isinstance(exc, OSError) and exc.strerror
                else f"{type(exc).__name__}: {exc}"
            )
            result = _result(row, False, f"job {row.id}: {text}", row.state)
        result.selector = selector if selector is not None else str(row.id)
        results.append(result)
    order: dict[str | None, int] = {sel: i for i, sel in enumerate(selectors)}
    results.sort(key=lambda r: order.get(r.selector, len(order)))
    if any(r.ok for r in results):
        service.wake_supervisor(start=any(backend_class(row).supervised for _, row, _ in todo))
    return results


def _after(service: Service, row: Job) -> str | None:
    """The BLOCKED detail ("after 12, 13") for a job with dependencies; None without any."""
    deps = service.store.dependency_ids(row.id)
    return states.blocked_detail(deps) if deps else None


def _grace(service: Service) -> float:
    from jobctl.core.units import parse_duration

    return parse_duration(service.config.get("kill.grace"))


def _fresh(service: Service, row: Job) -> Job:
    return service.store.job(row.id) or row
