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

from jobctl.app.session import LaunchPlan, Service
from jobctl.cli.views import resources_text
from jobctl.core import states
from jobctl.core.models import JobSpec
from jobctl.errors import DoesNotFit, JobFileError, UsageError
from jobctl.store.database import dumps, transition

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what every shell (and the Slurm batch script) takes


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


ARRAY_LIMIT = 100_000
ENV_FILE_LIMIT = 1 << 20  # bytes: an env file is a few lines; /dev/zero is not one


def parse_array(text: str) -> list[int]:
    """`N` (0..N-1) or `A-B`. The count is checked before any list is built (3e9 is refused at once)."""
    import re

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


def env_file_value(raw: str) -> str:
    """A value as docker compose / python-dotenv read it: one pair of matching quotes around the whole
    value is removed (`K="a b"` -> `a b`, `K='x'` -> `x`); anything else, inner quotes included, is kept."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_env_file(path: str) -> str:
    """The env file's text, read with a bound, never echoed (it holds secrets)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(ENV_FILE_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"--env-file: cannot read {path} ({exc.strerror})") from None
    if len(data) > ENV_FILE_LIMIT:
        raise UsageError(
            f"--env-file: {path} is larger than {ENV_FILE_LIMIT // (1 << 20)} MiB; an env file holds KEY=VALUE lines"
        )
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text") from None


def parse_env(options: LaunchOptions) -> tuple[dict[str, str], list[str]]:
    """--env-file, then --env K=V / --env K (from this environment; treated as a secret).

    Every value of an env file is a secret; errors name the file and line, never the text of it.
    """
    values: dict[str, str] = {}
    secret: list[str] = []
    env_files = [options.env_file] if isinstance(options.env_file, str) else list(options.env_file or [])
    for env_file in env_files:  # in order: a later file wins
        lines = read_env_file(env_file).splitlines()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not ENV_NAME.fullmatch(key.strip()):
                raise UsageError(
                    f"{env_file}:{number}: expected KEY=VALUE (KEY: letters, digits and _, "
                    "not starting with a digit); the line is not shown since it may hold a secret"
                )
            if "\0" in value:
                raise UsageError(f"{env_file}:{number}: {key.strip()}: the value holds a NUL byte")
            values[key.strip()] = env_file_value(value)
            if key.strip() not in secret:
                secret.append(key.strip())
    for item in options.env or []:
        key, sep, value = item.partition("=")
        if not ENV_NAME.fullmatch(key):
            raise UsageError(
                f"--env: expected KEY=VALUE or KEY (KEY: letters, digits and _), got {key!r}{'=...' if sep else ''}"
            )
        if "\0" in value:
            raise UsageError(f"--env {key}: the value holds a NUL byte")
        if sep:
            values[key] = value
        elif key in os.environ:
            values[key] = os.environ[key]
            secret.append(key)
        else:
            raise UsageError(f"--env {key}: {key} is not set in this environment")
    return values, secret


def build_plan(service: Service, files: list[str], options: LaunchOptions) -> tuple[LaunchPlan, list[dict[str, Any]]]:
    from jobctl.core.units import parse_memory
    from jobctl.jobfile.loader import apply_overrides, load_jobfile

    plan = LaunchPlan()
    env_values, env_secret = options.resolved_env if options.resolved_env is not None else parse_env(options)
    if options.backend not in (None, "local", "slurm"):
        raise UsageError(f'--backend: expected "local" or "slurm", got "{options.backend}"')
    default_cpus = float(service.config.get("defaults.cpus"))
    default_mem = parse_memory(service.config.get("defaults.memory"), where_key="defaults.memory")
    tasks: list[dict[str, Any]] = []
    for path in files:
        loaded = load_jobfile(path, text=options.texts[path] if options.texts is not None else None)
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
            if spec.workdir_git and backend == "slurm":
                plan.problems.append(
                    f"{loaded.path}: workdir: a git repository is cloned by the local backend "
                    "only; clone it on the cluster's shared storage and give that folder"
                )
            if spec.file_mounts and backend == "local":
                plan.problems.append(
                    f"{loaded.path}: file_mounts: not supported by the local backend "
                    "(copy the files into the workdir, or use --backend slurm with shared storage)"
                )
            task = {
                "spec": spec,
                "cpus": spec.cpus if spec.cpus is not None else default_cpus,
                "memory_mib": spec.memory_mib if spec.memory_mib is not None else default_mem,
                "after": None if loaded.parallel else previous,
                "path": loaded.path,
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
                hint = (
                    f" (declare GPUs with: jobctl config set capacity.accelerators '{{{spec.accelerators[0][0]} = N}}')"
                    if "this machine has" in fit
                    else ""
                )
                plan.problems.append(f"{task['path']}: resources: {spec.name} {fit}{hint}")
        elif backend == "slurm":  # ask Slurm (sbatch --test-only); also refuses what cannot go into a batch script
            from jobctl.engine.slurm_sync import check_launch

            fit = check_launch(service, task, tasks, plan.warnings, env_values)
            if fit:
                plan.problems.append(f"{task['path']}: resources: {spec.name} {fit}")
        plan.jobs.append(
            {
                "name": spec.name,
                "resources": text,
                "backend": backend,
                "fits": fit is None,
                "why_not": fit,
                "array": len(indices) if indices != [None] else None,
                "depends_on": list(
                    dict.fromkeys(([task["previous"]] if task["previous"] else []) + [d.ref for d in spec.depends_on])
                ),
                "priority": spec.priority,
            }
        )
    return plan, [dict(t, indices=indices, **split_secrets(t["spec"], env_values, env_secret)) for t in tasks]


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


def check_names(tasks: list[dict[str, Any]], indices: list[int | None], options: LaunchOptions) -> None:
    """Names that `status NAME` and friends can always find: never a number (it would read as a job
    ID; a number taken from a file's stem becomes `job-<stem>`), and at most 128 characters with the
    array suffix (`-<index>`) included: refused, not cut, so that no two tasks look alike."""
    from jobctl.jobfile.loader import default_name

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
                raise UsageError(
                    f"{where}: with --array the names end in -<index> and would be up to "
                    f"{len(longest)} characters ({longest[:20]}…{longest[-12:]}); names are at most "
                    f"{NAME_LIMIT}: shorten it to {NAME_LIMIT - len(longest) + len(spec.name)} "
                    f"characters or fewer"
                )


def local_capacity(service: Service, with_gpus: bool):
    from jobctl.backends.local import capacity

    return capacity.detect(service.config, with_gpus=with_gpus)


def fits(task: dict[str, Any], capacity) -> str | None:
    from jobctl.core.scheduler import Request, never_fits

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
    service.env_drop = {name for t in tasks for name in (*t["env"], *t["secret"])}  # see Service.wake_supervisor
    ids = record(service, tasks, plan)
    slurm = [job_id for job_id, backend in ids if backend == "slurm"]
    if slurm:
        from jobctl.engine.slurm_sync import submit

        submit(service, slurm)
    if len(slurm) < len(ids):
        service.wake_supervisor(start=True)
    return [job_id for job_id, _ in ids], plan


def record(service: Service, tasks: list[dict[str, Any]], plan: LaunchPlan) -> list[tuple[int, str]]:
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
        with service.store.write() as conn:
            secretfiles.Sweeper(service.paths).sweep(conn)
            _record(service, conn, tasks, now, umask, tokens, ids)
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
    conn,
    tasks: list[dict[str, Any]],
    now: float,
    umask: int,
    tokens: list[str],
    ids: list[tuple[int, str]],
) -> None:
    from jobctl.home import secrets as secretfiles

    resolved = resolve_dependencies(conn, tasks)
    created: list[list[int]] = []
    for task, deps in zip(tasks, resolved):
        spec: JobSpec = task["spec"]
        body = _spec_body(spec)
        digest = service.digest(body)
        conn.execute("INSERT OR IGNORE INTO specs (hash, body) VALUES (?, ?)", (digest, body))
        spec_id = conn.execute("SELECT id FROM specs WHERE hash = ?", (digest,)).fetchone()[0]
        envs_doc: dict[str, Any] = {"umask": umask, **service.record_extra}
        if task["env"]:
            envs_doc["env"] = task["env"]
        if task["secret_values"]:
            tokens.append(secretfiles.write(service.paths, task["secret_values"]))
            envs_doc.update(secret=task["secret"], secrets=tokens[-1])
        envs = dumps(envs_doc)
        mine = []
        after_prev = created[task["after"]] if task["after"] is not None else []
        for index in task["indices"]:
            name = spec.name if index is None else f"{spec.name}-{index}"
            cur = conn.execute(
                "INSERT INTO jobs (name, state, spec_id, priority, cpus, memory_mib, accelerators, num_nodes,"
                " labels, envs, array_index, backend, user, submitted_at, max_attempts, queue_deadline)"
                " VALUES (?, 'CREATED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    spec_id,
                    spec.priority,
                    task["cpus"],
                    task["memory_mib"],
                    dumps(spec.accelerators),
                    spec.num_nodes,
                    dumps(spec.labels),
                    envs,
                    index,
                    spec.backend,
                    service.user,
                    now,
                    spec.retries + 1,
                    now + spec.queue_timeout if spec.queue_timeout else None,
                ),
            )
            job_id = cur.lastrowid
            conn.execute(
                "INSERT INTO events (job_id, at, from_state, to_state, actor) VALUES (?, ?, NULL, 'CREATED', ?)",
                (job_id, now, service.user),
            )
            batch = [(d, c) for j, c in task.get("batch_deps", []) for d in created[j]]
            all_deps = [(d, "ok") for d in after_prev] + batch + deps
            conn.executemany(
                "INSERT OR IGNORE INTO deps (job_id, dep_id, condition) VALUES (?, ?, ?)",
                [(job_id, d, c) for d, c in all_deps],
            )
            if all_deps:
                transition(
                    conn,
                    job_id,
                    states.BLOCKED,
                    reason="dependency",
                    detail=states.blocked_detail([d for d, _ in all_deps]),
                    actor=service.user,
                    now=now,
                )
            else:
                transition(conn, job_id, states.PENDING, actor=service.user, now=now)
            mine.append(job_id)
        created.append(mine)
        ids.extend((job_id, spec.backend) for job_id in mine)


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
                    raise JobFileError(
                        task["path"],
                        None,
                        "depends_on",
                        f"dependency cycle: {chain}" if chain else f"{ref} comes later in this launch",
                    )
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
        nxt = next(
            (names[d.ref] for d in tasks[node]["spec"].depends_on if isinstance(d.ref, str) and d.ref in names), None
        )
        if nxt is None:
            return None
        path.append(tasks[nxt]["spec"].name)
        if nxt in seen:
            return " -> ".join(path)
        seen.add(nxt)
        node = nxt
