"""`jobctl launch`: load job files, apply overrides, check the request fits, record, queue.

All jobs of one launch (several files, a pipeline, an array) are recorded in one transaction:
either every job is queued or none is.
"""

from __future__ import annotations

import os
import re
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

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what every shell (and the Slurm batch script) takes


@dataclass
class LaunchOptions:
    name: str | None = None
    env: list[str] | None = None
    env_file: str | None = None
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
            indices = list(range(lo, hi + 1))
        else:
            indices = list(range(int(text)))
    except ValueError:
        raise UsageError(f'--array: expected a count such as 10 or a range such as 1-100, got "{text}"') from None
    if not indices or len(indices) > 100_000 or indices[0] < 0:
        raise UsageError(f'--array: "{text}" gives {len(indices)} jobs; expected 1 to 100000 non-negative indices')
    return indices


def parse_env(options: LaunchOptions) -> tuple[dict[str, str], list[str]]:
    """--env-file, then --env K=V / --env K (from this environment; treated as a secret)."""
    values: dict[str, str] = {}
    secret: list[str] = []
    if options.env_file:
        try:
            lines = Path(options.env_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--env-file: cannot read {options.env_file} ({exc})") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not ENV_NAME.fullmatch(key.strip()):
                raise UsageError(f"{options.env_file}:{number}: expected KEY=VALUE, got {line[:40]!r}")
            values[key.strip()] = value.strip().strip("'\"")
            secret.append(key.strip())
    for item in options.env or []:
        key, sep, value = item.partition("=")
        if not ENV_NAME.fullmatch(key):
            raise UsageError(f"--env: expected KEY=VALUE or KEY (KEY: letters, digits and _), got {item!r}")
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
        if options.name and len(loaded.tasks) > 1 and not loaded.pipeline_name:
            raise UsageError("--name: this file holds several jobs; name them in the file instead")
        previous: int | None = None
        for spec in loaded.tasks:
            spec = apply_overrides(spec, cpus=options.cpus, memory=options.memory, gpus=options.gpus,
                                   num_nodes=options.num_nodes, name=options.name if len(loaded.tasks) == 1 else None)
            if options.priority is not None:
                spec = replace(spec, priority=options.priority)
            backend = options.backend or spec.backend or service.config.get("backend")
            spec.backend = backend
            missing = [k for k, v in spec.envs.items() if v is None and k not in env_values]
            for key in missing:
                text = f"{loaded.path}: envs.{key}: no value; pass --env {key}=... or --env-file"
                plan.problems.append(text)
            if spec.file_mounts and backend == "local":
                plan.problems.append(f"{loaded.path}: file_mounts: not supported by the local backend "
                                     "(copy the files into the workdir, or use --backend slurm with shared storage)")
            task = {
                "spec": spec, "cpus": spec.cpus if spec.cpus is not None else default_cpus,
                "memory_mib": spec.memory_mib if spec.memory_mib is not None else default_mem,
                "after": previous, "path": loaded.path,
            }
            previous = len(tasks)
            tasks.append(task)
    indices = parse_array(options.array) if options.array else [None]
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
        elif backend == "slurm":  # ask Slurm (sbatch --test-only); also refuses what cannot go into a batch script
            from jobctl.slurm_sync import check_launch

            fit = check_launch(service, task, tasks, plan.warnings, env_values)
            if fit:
                plan.problems.append(f"{task['path']}: resources: {spec.name} {fit}")
        plan.jobs.append({"name": spec.name, "resources": text, "backend": backend, "fits": fit is None,
                          "why_not": fit, "array": len(indices) if indices != [None] else None,
                          "depends_on": [d.ref for d in spec.depends_on], "priority": spec.priority})
    return plan, [dict(t, indices=indices, env=env_values, secret=env_secret) for t in tasks]


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
