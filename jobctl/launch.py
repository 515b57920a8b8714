"""`jobctl launch`: load job files, apply overrides, check the request fits, record, queue.

All jobs of one launch (several files, a pipeline, an array) are recorded in one transaction:
either every job is queued or none is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobctl import states
from jobctl.errors import DoesNotFit, JobFileError, UsageError
from jobctl.models import JobSpec
from jobctl.service import LaunchPlan, Service
from jobctl.store import dumps, transition
from jobctl.views import resources_text


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


def parse_array(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
        else:
            lo, hi = 0, int(text) - 1
    except ValueError:
        raise UsageError(f'--array: expected a count such as 10 or a range such as 1-100, got "{text}"') from None
    count = max(hi - lo + 1, 0)
    if not 1 <= count <= 100_000 or lo < 0:  # checked before the list is made: `--array 0-1e12` is refused at once
        raise UsageError(f'--array: "{text}" gives {count} jobs; expected 1 to 100000 non-negative indices')
    return list(range(lo, hi + 1))


def parse_env(options: LaunchOptions) -> tuple[dict[str, str], list[str]]:
    """Each --env-file in order (a later one wins), then --env K=V / --env K (from this environment;
    treated as a secret)."""
    values: dict[str, str] = {}
    secret: list[str] = []
    env_files = [options.env_file] if isinstance(options.env_file, str) else list(options.env_file or [])
    for env_file in env_files:
        try:
            lines = Path(env_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--env-file: cannot read {env_file} ({exc})") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not key.strip().isidentifier():
                raise UsageError(f"{env_file}:{number}: expected KEY=VALUE, got {line[:40]!r}")
            values[key.strip()] = value.strip().strip("'\"")
            if key.strip() not in secret:
                secret.append(key.strip())
    for item in options.env or []:
        key, sep, value = item.partition("=")
        if not key.isidentifier():
            raise UsageError(f"--env: expected KEY=VALUE or KEY, got {item!r}")
        if sep:
            values[key] = value
        elif key in os.environ:
            values[key] = os.environ[key]
            secret.append(key)
        else:
            raise UsageError(f"--env {key}: {key} is not set in this environment")
    return values, secret


def build_plan(service: Service, files: list[str], options: LaunchOptions) -> tuple[LaunchPlan, list[dict[str, Any]]]:
    from jobctl.jobfile import apply_overrides, load_jobfile
    from jobctl.units import parse_memory

    plan = LaunchPlan()
    env_values, env_secret = parse_env(options)
    if options.backend not in (None, "local", "slurm"):
        raise UsageError(f'--backend: expected "local" or "slurm", got "{options.backend}"')
    default_cpus = float(service.config.get("defaults.cpus"))
    default_mem = parse_memory(service.config.get("defaults.memory"), where_key="defaults.memory")
    tasks: list[dict[str, Any]] = []
    for path in files:
        loaded = load_jobfile(path)
        plan.warnings.extend(loaded.warnings)
        plan.problems.extend(loaded.problems)  # a workdir missing here, nothing to run, ...
        # --name on a file of several jobs (a pipeline) is a prefix: NAME-TASK, links between them kept
        renamed = {t.name: f"{options.name}-{t.name}" for t in loaded.tasks} if options.name and \
            len(loaded.tasks) > 1 else {}
        previous: int | None = None
        for spec in loaded.tasks:
            name = renamed.get(spec.name) if renamed else (options.name if len(loaded.tasks) == 1 else None)
            spec = apply_overrides(spec, cpus=options.cpus, memory=options.memory, gpus=options.gpus,
                                   num_nodes=options.num_nodes, name=name)
            if renamed:
                spec = replace(spec, depends_on=[replace(d, ref=renamed.get(d.ref, d.ref)) if isinstance(d.ref, str)
                                                 else d for d in spec.depends_on])
            if options.priority is not None:
                spec = replace(spec, priority=options.priority)
            backend = options.backend or spec.backend or service.config.get("backend")
            spec.backend = backend
            missing = [k for k, v in spec.envs.items() if v is None and k not in env_values]
            for key in missing:
                text = f"{loaded.path}: envs.{key}: no value; pass --env {key}=... or --env-file"
                plan.problems.append(text)
            if spec.workdir_git and backend == "slurm":
                plan.problems.append(f"{loaded.path}: workdir: a git repository is cloned by the local backend "
                                     "only; clone it on the cluster's shared storage and give that folder")
            if spec.file_mounts and backend == "local":
                plan.problems.append(f"{loaded.path}: file_mounts: not supported by the local backend "
                                     "(copy the files into the workdir, or use --backend slurm with shared storage)")
            task = {
                "spec": spec, "cpus": spec.cpus if spec.cpus is not None else default_cpus,
                "memory_mib": spec.memory_mib if spec.memory_mib is not None else default_mem,
                "after": None if loaded.parallel else previous, "path": loaded.path,
                "previous": tasks[previous]["spec"].name if previous is not None and not loaded.parallel else None,
            }
            previous = len(tasks)
            tasks.append(task)
    indices = parse_array(options.array) if options.array else [None]
    check_names(tasks, indices, options)
    capacity = None
    for task in tasks:
        spec = task["spec"]
        text = resources_text(spec.num_nodes, task["cpus"], task["memory_mib"], spec.accelerators)
        fit = None
        backend = spec.backend
        if backend == "local":
            capacity = capacity or local_capacity(service, any(t["spec"].accelerators for t in tasks))
            fit = fits(task, capacity)
            if fit:
                plan.problems.append(f"{task['path']}: resources: {spec.name} {fit}")
        plan.jobs.append({"name": spec.name, "resources": text, "backend": backend, "fits": fit is None,
                          "why_not": fit, "array": len(indices) if indices != [None] else None,
                          "depends_on": list(dict.fromkeys(([task["previous"]] if task["previous"] else [])
                                                           + [d.ref for d in spec.depends_on])),
                          "priority": spec.priority})
    return plan, [dict(t, indices=indices, env=env_values, secret=env_secret) for t in tasks]


NAME_LIMIT = 128  # characters, the limit of jobfile.NAME_RE, array suffix included


def check_names(tasks: list[dict[str, Any]], indices: list[int | None], options: LaunchOptions) -> None:
    """Names that `status NAME` and friends can always find: never a number (it would read as a job
    ID; a number taken from a file's stem becomes `job-<stem>`), and at most 128 characters with the
    array suffix (`-<index>`) included: refused, not cut, so that no two tasks look alike."""
    from jobctl.jobfile import default_name

    for task in tasks:
        spec = task["spec"]
        if spec.name.isdigit():
            if options.name is None and spec.name == default_name(task["path"]):
                spec.name = f"job-{spec.name}"
            else:
                where = "--name" if options.name is not None else f"{task['path']}: name"
                raise UsageError(f'{where}: a name cannot be a number ("{spec.name}"); it would read as a job ID')
        if indices != [None]:
            longest = f"{spec.name}-{max(indices)}"
            if len(longest) > NAME_LIMIT:
                where = "--name" if options.name is not None else f"{task['path']}: name"
                raise UsageError(f"{where}: with --array the names end in -<index> and would be up to "
                                 f"{len(longest)} characters ({longest[:20]}…{longest[-12:]}); names are at most "
                                 f"{NAME_LIMIT}: shorten it to {NAME_LIMIT - len(longest) + len(spec.name)} "
                                 f"characters or fewer")


def local_capacity(service: Service, with_gpus: bool):
    from jobctl import capacity

    return capacity.detect(service.config, with_gpus=with_gpus)


def fits(task: dict[str, Any], capacity) -> str | None:
    from jobctl.scheduler import Request, never_fits

    spec = task["spec"]
    n = spec.num_nodes
    accs = tuple((str(name).upper(), int(count) * n) for name, count in spec.accelerators)
    upper = replace(capacity, devices={k.upper(): v for k, v in capacity.devices.items()})
    return never_fits(Request(0, 0, 0.0, task["cpus"] * n, task["memory_mib"] * n, accs), upper)


def launch(service: Service, files: list[str], options: LaunchOptions) -> tuple[list[int], LaunchPlan]:
    plan, tasks = build_plan(service, files, options)
    if options.dry_run:
        # what is wrong with the launch itself (unknown depends_on, cycles) is refused as a real
        # launch would be (exit 2); what depends on this machine or on --env stays in plan.problems
        with service.store.read() as conn:
            resolve_dependencies(conn, [dict(t) for t in tasks])
        return [], plan
    for problem in plan.problems:
        if ": resources:" in problem:
            raise DoesNotFit(problem)
        raise UsageError(problem)
    ids = record(service, tasks, plan)
    slurm = [job_id for job_id, backend in ids if backend == "slurm"]
    if slurm:
        from jobctl.slurm_sync import submit

        submit(service, slurm)
    if len(slurm) < len(ids):
        service.wake_supervisor(start=True)
    return [job_id for job_id, _ in ids], plan


def record(service: Service, tasks: list[dict[str, Any]], plan: LaunchPlan) -> list[tuple[int, str]]:
    """Insert every job of the launch in one transaction; returns (job ID, backend) pairs."""
    now = time.time()
    ids: list[tuple[int, str]] = []
    with service.store.write() as conn:
        resolved = resolve_dependencies(conn, tasks)
        created: list[list[int]] = []
        for task, deps in zip(tasks, resolved):
            spec: JobSpec = task["spec"]
            body = _spec_body(spec)
            digest = service.digest(body)
            conn.execute("INSERT OR IGNORE INTO specs (hash, body) VALUES (?, ?)", (digest, body))
            spec_id = conn.execute("SELECT id FROM specs WHERE hash = ?", (digest,)).fetchone()[0]
            envs = dumps({"env": task["env"], "secret": task["secret"]} if task["env"] else None)
            mine = []
            after_prev = created[task["after"]] if task["after"] is not None else []
            for index in task["indices"]:
                name = spec.name if index is None else f"{spec.name}-{index}"
                cur = conn.execute(
                    "INSERT INTO jobs (name, state, spec_id, priority, cpus, memory_mib, accelerators, num_nodes,"
                    " labels, envs, array_index, backend, user, submitted_at, max_attempts, queue_deadline)"
                    " VALUES (?, 'CREATED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, spec_id, spec.priority, task["cpus"], task["memory_mib"], dumps(spec.accelerators),
                     spec.num_nodes, dumps(spec.labels), envs, index, spec.backend, service.user, now,
                     spec.retries + 1, now + spec.queue_timeout if spec.queue_timeout else None),
                )
                job_id = cur.lastrowid
                conn.execute("INSERT INTO events (job_id, at, from_state, to_state, actor) VALUES (?, ?, NULL, 'CREATED', ?)",
                             (job_id, now, service.user))
                batch = [(d, c) for j, c in task.get("batch_deps", []) for d in created[j]]
                all_deps = [(d, "ok") for d in after_prev] + batch + deps
                conn.executemany("INSERT OR IGNORE INTO deps (job_id, dep_id, condition) VALUES (?, ?, ?)",
                                 [(job_id, d, c) for d, c in all_deps])
                if all_deps:
                    transition(conn, job_id, states.BLOCKED, reason="dependency",
                               detail=states.blocked_detail([d for d, _ in all_deps]), actor=service.user, now=now)
                else:
                    transition(conn, job_id, states.PENDING, actor=service.user, now=now)
                mine.append(job_id)
            created.append(mine)
            ids.extend((job_id, spec.backend) for job_id in mine)
    return ids


def _spec_body(spec: JobSpec) -> str:
    import json

    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def resolve_dependencies(conn, tasks: list[dict[str, Any]]) -> list[list[tuple[int, str]]]:
    """Turn `depends_on` names/IDs into job IDs; refuse unknown ones and cycles (names of this launch)."""
    batch_names = {t["spec"].name: i for i, t in enumerate(tasks)}
    resolved: list[list[tuple[int, str]]] = []
    for i, task in enumerate(tasks):
        spec = task["spec"]
        out = []
        for dep in spec.depends_on:
            ref = dep.ref
            if isinstance(ref, str) and ref in batch_names:
                j = batch_names[ref]
                if j >= i:
                    chain = _cycle(tasks, i, batch_names)
                    raise JobFileError(task["path"], None, "depends_on",
                                       f"dependency cycle: {chain}" if chain else f"{ref} comes later in this launch")
                continue  # linked below through the batch (see record)
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                row = conn.execute("SELECT id FROM jobs WHERE id = ?", (int(ref),)).fetchone()
            else:
                row = conn.execute("SELECT MAX(id) FROM jobs WHERE name = ?", (ref,)).fetchone()
                row = row if row and row[0] is not None else None
            if row is None:
                raise JobFileError(task["path"], None, "depends_on", f"unknown job {ref!r}")
            out.append((row[0], dep.condition))
        resolved.append(out)
    # dependencies on jobs of this same launch, by name, become links to their new IDs in record()
    for i, task in enumerate(tasks):
        for dep in task["spec"].depends_on:
            if isinstance(dep.ref, str) and dep.ref in batch_names and batch_names[dep.ref] < i:
                task.setdefault("batch_deps", []).append((batch_names[dep.ref], dep.condition))
    return resolved


def _cycle(tasks: list[dict[str, Any]], start: int, names: dict[str, int]) -> str | None:
    path, seen, node = [tasks[start]["spec"].name], {start}, start
    while True:
        nxt = next((names[d.ref] for d in tasks[node]["spec"].depends_on if isinstance(d.ref, str) and d.ref in names),
                   None)
        if nxt is None:
            return None
        path.append(tasks[nxt]["spec"].name)
        if nxt in seen:
            return " -> ".join(path)
        seen.add(nxt)
        node = nxt
