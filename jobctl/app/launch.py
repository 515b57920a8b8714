"""`jobctl launch`: load job files, apply overrides, check the request fits, record, queue.

All jobs of one launch (several files, a pipeline, an array) are recorded in one transaction:
either every job is queued or none is.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from jobctl.app.envfiles import ENV_NAME, env_file_value, parse_env, read_env_file
from jobctl.app.session import LaunchPlan, Service
from jobctl.backends.base import Backend
from jobctl.core import states
from jobctl.core.models import JobSpec, LaunchTask
from jobctl.core.units import resources_text
from jobctl.engine.backends import BACKENDS, backend_class, backend_for
from jobctl.errors import DoesNotFit, JobFileError, UsageError
from jobctl.store.database import Store
from jobctl.store.records import dumps


@dataclass
class LaunchOptions:
    name: str | None = None
    env: list[str] | None = None
    env_file: list[str] | str | None = None  # several: read in order, a later file wins
    cpus: str | None = None
    memory: str | None = None
    gpus: str | None = None
    num_nodes: int | None = None
    array: str | None = None
    backend: str | None = None
    priority: int | None = None
    dry_run: bool = False
    # A shared queue (jobctl/app/caller.py): the env the client resolved, the job files' texts it read
    # as its user, and a check of each job spec before anything is recorded.
    resolved_env: tuple[dict[str, str], list[str]] | None = None
    texts: dict[str, str] | None = None
    check: Any = None
    command: list[str] | None = None  # an ad-hoc command (`launch -- CMD ARG...`) instead of files
    queue: str | None = None
    hold: bool = False
    at: str | None = None  # start time (SPEC section 9)
    # An ad-hoc command on a shared queue: the caller's folder and (allow-listed) environment, not the supervisor's
    cwd: str | None = None
    environ: dict[str, str] | None = None


__all__ = [
    "ENV_NAME",
    "LaunchOptions",
    "build_plan",
    "env_file_value",
    "launch",
    "parse_array",
    "parse_env",
    "read_env_file",
]

ARRAY_LIMIT = 100_000


def parse_array(text: str) -> list[int]:
    """`N` (0..N-1) or `A-B`. The count is checked before any list is built (3e9 is refused at once)."""

    match = re.fullmatch(r"\s*(\d{1,18})\s*(?:-\s*(\d{1,18})\s*)?", text)
    if match is None:
        raise UsageError(f'--array: expected a count such as 10 or a range such as 1-100, got "{text}"')
    if match.group(2) is None:
        lo, hi = 0, int(match.group(1)) - 1
    else:
        lo, hi = int(match.group(1)), int(match.group(2))
    count = hi - lo + 1
    if count < 1 or count > ARRAY_LIMIT:
        raise UsageError(
            f'--array: "{text}" gives {max(count, 0)} jobs; expected 1 to {ARRAY_LIMIT} non-negative indices'
        )
    return list(range(lo, hi + 1))


def build_plan(service: Service, files: list[str], options: LaunchOptions) -> tuple[LaunchPlan, list[LaunchTask]]:
    from jobctl.core.units import parse_memory
    from jobctl.jobfile.loader import apply_overrides, load_jobfile

    plan = LaunchPlan()
    env_values, env_secret = options.resolved_env if options.resolved_env is not None else parse_env(options)
    if options.backend is not None and options.backend not in BACKENDS:
        raise UsageError(f'--backend: expected "local" or "slurm", got "{options.backend}"')
    backends: dict[str, Backend] = {}

    def picked(name: str | None) -> Backend:  # one object per backend for the whole launch
        key = name or "local"
        if key not in backends:
            backends[key] = backend_for(key, service)
        return backends[key]

    default_cpus = float(service.config.get("defaults.cpus"))
    default_mem = parse_memory(service.config.get("defaults.memory"), where_key="defaults.memory")
    from jobctl.app import queueing

    tasks: list[LaunchTask] = []
    now = time.time()
    for path in files or [queueing.ADHOC_PATH]:
        loaded = (
            queueing.adhoc_file(options.command, options.cwd, options.environ)
            if options.command is not None
            else load_jobfile(path, text=options.texts[path] if options.texts is not None else None)
        )
        plan.warnings.extend(loaded.warnings)
        plan.problems.extend(loaded.problems)  # a workdir missing here, nothing to run, ...
        # --name on a file of several jobs (a pipeline) is a prefix: NAME-TASK, links between them kept
        renamed = (
            {t.name: f"{options.name}-{t.name}" for t in loaded.tasks} if options.name and len(loaded.tasks) > 1 else {}
        )
        previous: int | None = None
        for spec in loaded.tasks:
            name = renamed.get(spec.name) if renamed else (options.name if len(loaded.tasks) == 1 else None)
            spec = apply_overrides(
                spec,
                cpus=options.cpus,
                memory=options.memory,
                gpus=options.gpus,
                num_nodes=options.num_nodes,
                name=name,
            )
            if renamed:
                spec = replace(
                    spec,
                    depends_on=[
                        replace(d, ref=renamed.get(d.ref, d.ref)) if isinstance(d.ref, str) else d
                        for d in spec.depends_on
                    ],
                )
            if options.priority is not None:
                spec = replace(spec, priority=options.priority)
            backend = options.backend or spec.backend or service.config.get("backend")
            spec.backend = backend
            refuse_control_characters(loaded.path, spec)
            if options.check is not None:
                options.check(spec)
            missing = [k for k, v in spec.envs.items() if v is None and k not in env_values]
            for key in missing:
                text = f"{loaded.path}: envs.{key}: no value; pass --env {key}=... or --env-file"
                plan.problems.append(text)
            for problem in picked(backend).unsupported(spec):
                plan.problems.append(f"{loaded.path}: {problem}")
            task = LaunchTask(
                spec=spec,
                cpus=spec.cpus if spec.cpus is not None else default_cpus,
                memory_mib=spec.memory_mib if spec.memory_mib is not None else default_mem,
                after=None if loaded.parallel else previous,
                path=loaded.path,
                previous=tasks[previous].spec.name if previous is not None and not loaded.parallel else None,
                **queueing.task_fields(spec, loaded.path, options, now),
            )
            previous = len(tasks)
            tasks.append(task)
    array, throttle = queueing.array_option(options.array) if options.array else (None, None)
    indices: list[int | None] = list(parse_array(array)) if array else [None]
    for task in tasks:
        task.throttle = throttle
    check_names(tasks, indices, options)
    for task in tasks:
        spec = task.spec
        text = resources_text(spec.num_nodes, task.cpus, task.memory_mib, spec.accelerators)
        backend = spec.backend
        fit = picked(backend).never_fits(task, tasks, plan.warnings, env_values)  # Slurm: sbatch --test-only
        if fit:
            hint = picked(backend).fit_hint(spec, fit)
            plan.problems.append(f"{task.path}: resources: {spec.name} {fit}{hint}")
        plan.jobs.append(
            {
                "name": spec.name,
                "resources": text,
                "backend": backend,
                "fits": fit is None,
                "why_not": fit,
                "array": len(indices) if indices != [None] else None,
                "depends_on": list(
                    dict.fromkeys(([task.previous] if task.previous else []) + [d.ref for d in spec.depends_on])
                ),
                "priority": spec.priority,
            }
        )
    return plan, [replace(t, indices=indices, **split_secrets(t.spec, env_values, env_secret)) for t in tasks]


def split_secrets(spec: JobSpec, values: dict[str, str], launch_secret: list[str]) -> dict[str, Any]:
    """Plain launch values (kept in the database) apart from secret ones (kept in a 0600 file).

    Secret: every value of `--env NAME` and `--env-file`, of an env the file declares null, and of
    `secrets:`. Their values are removed from the spec (its body is kept in the database); the
    names stay, so `describe` shows them as ***. A plain `--env K=V` of any other name is kept.
    """
    names = set(spec.secrets) | {k for k, v in spec.envs.items() if v is None} | set(launch_secret)
    secret = {k: v for k, v in spec.envs.items() if k in names and v is not None}
    secret.update({k: v for k, v in values.items() if k in names})
    spec.envs = {k: (None if k in names else v) for k, v in spec.envs.items()}
    return {
        "env": {k: v for k, v in values.items() if k not in names},
        "secret": sorted(secret),
        "secret_values": secret,
    }


CONTROL = {chr(c) for c in range(32)} | {chr(127)}


def _has_control(text: Any) -> bool:
    return isinstance(text, str) and any(ch in CONTROL for ch in text)


def refuse_control_characters(path: str, spec: JobSpec) -> None:
    """Names, labels and paths go into status tables, batch scripts and file names: no control characters
    (a newline there could end a comment in a generated script and start a command)."""
    checks: list[tuple[str, Any]] = [("name", spec.name), ("workdir", spec.workdir), ("source", spec.source)]
    for key, value in (spec.labels or {}).items():
        checks += [(f"labels.{key}" if not _has_control(key) else "labels", key), (f"labels.{key}", value)]
    for dest, src in (spec.file_mounts or {}).items():
        checks += [("file_mounts", dest), (f"file_mounts.{dest}", src)]
    for dep in spec.depends_on:
        checks.append(("depends_on", dep.ref))
    for env in spec.envs:
        checks.append(("envs", env))
    for key, value in checks:
        if _has_control(value) or _has_control(key):
            where = key if not _has_control(key) else key.split(".")[0]
            raise UsageError(
                f"{path}: {where}: holds a control character (such as a newline or a tab); "
                "names, labels and paths may not"
            )


NAME_LIMIT = 128  # characters, the limit of jobfile.NAME_RE, array suffix included


def check_names(tasks: list[LaunchTask], indices: list[int | None], options: LaunchOptions) -> None:
    """Names that `status NAME` and friends can always find: never a number (it would read as a job
    ID; a number taken from a file's stem becomes `job-<stem>`), and at most 128 characters with the
    array suffix (`-<index>`) included: refused, not cut, so that no two tasks look alike."""
    from jobctl.jobfile.loader import default_name

    for task in tasks:
        spec = task.spec
        if spec.name.isdigit():
            if options.name is None and spec.name == default_name(task.path):
                spec.name = f"job-{spec.name}"
            else:
                where = "--name" if options.name is not None else f"{task.path}: name"
                raise UsageError(f'{where}: a name cannot be a number ("{spec.name}"); it would read as a job ID')
        if indices != [None]:
            longest = f"{spec.name}-{max(i for i in indices if i is not None)}"
            if len(longest) > NAME_LIMIT:
                where = "--name" if options.name is not None else f"{task.path}: name"
                raise UsageError(
                    f"{where}: with --array the names end in -<index> and would be up to "
                    f"{len(longest)} characters ({longest[:20]}…{longest[-12:]}); names are at most "
                    f"{NAME_LIMIT}: shorten it to {NAME_LIMIT - len(longest) + len(spec.name)} "
                    f"characters or fewer"
                )


def launch(service: Service, files: list[str], options: LaunchOptions) -> tuple[list[int], LaunchPlan]:
    plan, tasks = build_plan(service, files, options)
    if options.dry_run:
        # what is wrong with the launch itself (unknown depends_on, cycles) is refused as a real
        # launch would be (exit 2); what depends on this machine or on --env stays in plan.problems
        copies = [replace(t, batch_deps=list(t.batch_deps)) for t in tasks]
        if not service.paths.db.exists():  # a new home: nothing to depend on, and nothing is created
            resolve_depends_on(NoJobs(), copies)
            return [], plan
        with service.store.read():
            resolve_depends_on(service.store, copies)
        return [], plan
    for problem in plan.problems:
        if ": resources:" in problem:
            raise DoesNotFit(problem)
        raise UsageError(problem)
    service.env_drop = {name for t in tasks for name in (*t.env, *t.secret)}  # see Service.wake_supervisor
    ids = record(service, tasks, plan)
    by_backend: dict[str, list[int]] = {}
    for job_id, name in ids:
        by_backend.setdefault(name, []).append(job_id)
    for name, job_ids in sorted(by_backend.items(), key=lambda item: backend_class(item[0]).supervised):
        backend_for(name, service).submit(job_ids)  # Slurm: sbatch; the supervisor's: nothing to do
    if any(backend_class(name).supervised for name in by_backend):
        service.wake_supervisor(start=True)
    return [job_id for job_id, _ in ids], plan


def record(service: Service, tasks: list[LaunchTask], plan: LaunchPlan) -> list[tuple[int, str]]:
    """Insert every job of the launch in one transaction; returns (job ID, backend) pairs."""
    from jobctl.home import paths as paths_mod
    from jobctl.home import secrets as secretfiles

    now = time.time()
    ids: list[tuple[int, str]] = []
    umask = paths_mod.CALLER_UMASK if paths_mod.CALLER_UMASK is not None else _current_umask()
    if service.umask is not None:  # a caller of a shared queue
        umask = service.umask
    tokens: list[str] = []
    try:
        store = service.store
        with store.write():
            secretfiles.Sweeper(service.paths).sweep(store)
            _record(service, store, tasks, now, umask, tokens, ids)
    except BaseException:
        for token in tokens:  # written inside the transaction that rolled back
            secretfiles.remove(service.paths, token)
        raise
    return ids


def _current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _record(
    service: Service,
    store: Store,
    tasks: list[LaunchTask],
    now: float,
    umask: int,
    tokens: list[str],
    ids: list[tuple[int, str]],
) -> None:
    from jobctl.app import queueing
    from jobctl.home import secrets as secretfiles

    resolved = resolve_depends_on(store, tasks)
    created: list[list[int]] = []
    config_targets = service.config.notify_targets()  # `[notify]` of config.toml: for every job
    for task, deps in zip(tasks, resolved):
        spec: JobSpec = task.spec
        notify_targets = spec.notify + config_targets
        body = _spec_body(spec)
        digest = service.digest(body)
        spec_id = store.spec_id(digest, body)
        envs_doc: dict[str, Any] = {"umask": umask, **service.record_extra}
        if task.env:
            envs_doc["env"] = task.env
        if task.secret_values:
            tokens.append(secretfiles.write(service.paths, task.secret_values))
            envs_doc.update(secret=task.secret, secrets=tokens[-1])
        envs = dumps(envs_doc)
        after_prev = created[task.after] if task.after is not None else []
        names = [(spec.name if index is None else f"{spec.name}-{index}", index) for index in task.indices]
        mine = store.create_jobs(  # every task of an array at once: a launch of 10,000 takes well under a second
            names,
            spec_id=spec_id,
            priority=spec.priority,
            cpus=task.cpus,
            memory_mib=task.memory_mib,
            accelerators=dumps(spec.accelerators),
            num_nodes=spec.num_nodes,
            labels=dumps(spec.labels),
            envs=envs,
            backend=spec.backend or "local",
            user=service.user,
            submitted_at=now,
            max_attempts=spec.retries + 1,
            queue_deadline=now + spec.queue_timeout if spec.queue_timeout else None,
        )
        batch = [(d, c) for j, c in task.batch_deps for d in created[j]]
        all_deps = [(d, "ok") for d in after_prev] + batch + deps
        for job_id in mine:
            if notify_targets:
                store.set_notify_targets(job_id, notify_targets)
            if all_deps:
                store.add_dependencies(job_id, all_deps)
        first, how = queueing.initial_state(task, bool(all_deps))  # held, scheduled, blocked or pending
        if first == states.BLOCKED:
            how["detail"] = states.blocked_detail([d for d, _ in all_deps])
        store.transition(mine, first, actor=service.user, now=now, **how)
        queueing.record_fields(store, task, mine)
        created.append(mine)
        ids.extend((job_id, spec.backend or "local") for job_id in mine)


def _spec_body(spec: JobSpec) -> str:
    import json

    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


class NoJobs:
    """What `resolve_depends_on` asks of a home without a database: no job is known there."""

    def job(self, job_id: int) -> None:
        return None

    def latest_id_named(self, name: str) -> None:
        return None


def resolve_depends_on(store: Store | NoJobs, tasks: list[LaunchTask]) -> list[list[tuple[int, str]]]:
    """Turn `depends_on` names/IDs into job IDs; refuse unknown ones and cycles (names of this launch)."""
    batch_names = {t.spec.name: i for i, t in enumerate(tasks)}
    resolved: list[list[tuple[int, str]]] = []
    for i, task in enumerate(tasks):
        spec = task.spec
        out = []
        for dep in spec.depends_on:
            ref = dep.ref
            if isinstance(ref, str) and ref in batch_names:
                j = batch_names[ref]
                if j >= i:
                    chain = _cycle(tasks, i, batch_names)
                    raise JobFileError(
                        task.path,
                        None,
                        "depends_on",
                        f"dependency cycle: {chain}" if chain else f"{ref} comes later in this launch",
                    )
                continue  # linked below through the batch (see record)
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                found = store.job(int(ref))
                dep_id = None if found is None else found.id
            else:
                dep_id = store.latest_id_named(ref)
            if dep_id is None:
                raise JobFileError(task.path, None, "depends_on", f"unknown job {ref!r}")
            out.append((dep_id, dep.condition))
        resolved.append(out)
    # dependencies on jobs of this same launch, by name, become links to their new IDs in record()
    for i, task in enumerate(tasks):
        for dep in task.spec.depends_on:
            if isinstance(dep.ref, str) and dep.ref in batch_names and batch_names[dep.ref] < i:
                task.batch_deps.append((batch_names[dep.ref], dep.condition))
    return resolved


def _cycle(tasks: list[LaunchTask], start: int, names: dict[str, int]) -> str | None:
    path, seen, node = [tasks[start].spec.name], {start}, start
    while True:
        nxt = next(
            (names[d.ref] for d in tasks[node].spec.depends_on if isinstance(d.ref, str) and d.ref in names), None
        )
        if nxt is None:
            return None
        path.append(tasks[nxt].spec.name)
        if nxt in seen:
            return " -> ".join(path)
        seen.add(nxt)
        node = nxt
