"""Launch-side everyday queueing (SPEC section 9): ad-hoc commands, queues, hold, start times,
array throttles, and the `update` and `queue` commands.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import time
from dataclasses import replace
from typing import Any

from jobctl.core import queueing as parse
from jobctl.core import states
from jobctl.core.models import JobSpec, LaunchTask, LoadedFile
from jobctl.errors import UsageError
from jobctl.store.database import Store
from jobctl.store.records import Job

ADHOC_PATH = "command"  # what messages about an ad-hoc command call its "file"
# The caller's environment that decides which programs and which `python` a command finds.
CALLER_ENV = (
    "PATH",
    "VIRTUAL_ENV",
    "VIRTUAL_ENV_PROMPT",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "CONDA_EXE",
    "CONDA_PYTHON_EXE",
    "CONDA_SHLVL",
    "CONDA_PROMPT_MODIFIER",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONNOUSERSITE",
    "PIPENV_ACTIVE",
    "POETRY_ACTIVE",
    "UV_PROJECT_ENVIRONMENT",
)
CALLER_ENV_PREFIXES = ("CONDA_PREFIX_",)  # conda's stacked environments: CONDA_PREFIX_1, ...


def command_name(argv: list[str]) -> str:
    """A job name from a command's first word: `python3.11`, `./train.sh` -> `train.sh`."""
    word = os.path.basename(argv[0].rstrip("/")) or argv[0]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", word).lstrip("._-")[:128]
    if not name:
        return "command"
    return f"cmd-{name}" if name.isdigit() else name


def caller_env(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    environ = dict(os.environ if environ is None else environ)
    return {
        k: v
        for k, v in environ.items()
        if (k in CALLER_ENV or k.startswith(CALLER_ENV_PREFIXES)) and "\0" not in v and "\n" not in k
    }


def adhoc_file(argv: list[str], cwd: str | None = None, environ: dict[str, str] | None = None) -> LoadedFile:
    """An ad-hoc command as a loaded job file of one task: bash runs it in this directory with this
    shell's PATH and virtualenv/conda variables; its words are quoted so that bash sees them as typed.
    A shared queue's supervisor passes the caller's folder and environment (`cwd`, `environ`)."""
    if not argv or not argv[0]:
        raise UsageError("launch --: give a command after -- (e.g. jobctl launch -- python train.py)")
    spec = JobSpec(
        name=command_name(argv),
        run=shlex.join(argv),
        workdir=cwd or os.getcwd(),
        envs=dict(caller_env(environ)),
    )
    spec.source = None
    return LoadedFile(path=ADHOC_PATH, tasks=[spec])


def array_option(text: str) -> tuple[str, int | None]:
    try:
        return parse.parse_array_throttle(text)
    except ValueError as exc:
        raise UsageError(f"--array: {exc}") from None


def queue_option(name: str | None, where: str = "--queue") -> str | None:
    if name is None:
        return None
    try:
        return parse.check_queue(name)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def start_option(text: str | None, now: float, where: str = "--at") -> float | None:
    if text is None:
        return None
    try:
        return parse.parse_start(text, now)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def task_fields(spec: JobSpec, path: str, options: Any, now: float) -> dict[str, Any]:
    """The queueing part of one task of a launch: its queue, start time and hold."""
    queue = queue_option(getattr(options, "queue", None)) or spec.queue or parse.DEFAULT_QUEUE
    at = getattr(options, "at", None)
    start_at = start_option(at, now) if at is not None else start_option(spec.start_at, now, f"{path}: start_at")
    return {"queue": queue, "start_at": start_at, "hold": bool(getattr(options, "hold", False))}


def initial_state(task: LaunchTask, has_deps: bool) -> tuple[str, dict[str, Any]]:
    """The state a job enters when recorded, and the transition's keywords."""
    if task.hold:
        return states.SUSPENDED, {
            "reason": "held",
            "detail": "held",
            "message": "held at launch: it will not start until `jobctl start`",
        }
    if has_deps:
        return states.BLOCKED, {"reason": "dependency"}
    if task.start_at is not None and task.start_at > time.time():
        from jobctl.engine.queueing import start_text

        return states.PENDING, {"reason": "scheduled", "detail": start_text(task.start_at)}
    return states.PENDING, {}


def record_fields(store: Store, task: LaunchTask, job_ids: list[int]) -> None:
    """Queue, start time and array of the jobs one task of a launch just recorded."""
    store.set_launch_fields(
        job_ids,
        queue=task.queue or parse.DEFAULT_QUEUE,
        start_at=task.start_at,
        array_throttle=task.throttle,
        is_array=task.indices not in (None, [None]),
    )


# -- queue list and set --------------------------------------------------------------------------------
QUEUE_FIELDS = ("queue", "running", "waiting", "max_running", "cpus", "gpus", "paused")


def queue_doc(q: Any) -> dict[str, Any]:
    """A queue as `queue list --json` shows it (and as a shared queue's socket sends it)."""
    return {
        "queue": q.name,
        "running": q.running,
        "waiting": q.waiting,
        "max_running": q.max_running,
        "cpus": q.cpus,
        "gpus": q.gpus,
        "paused": q.paused,
    }


def queue_row(doc: dict[str, Any]) -> Any:
    from jobctl.store.queues import QueueRow

    fields: dict[str, Any] = {("name" if k == "queue" else k): doc.get(k) for k in QUEUE_FIELDS}
    return QueueRow(**fields)


def queue_changes(doc: Any) -> dict[str, Any]:
    """The caps of a `queue set|pause|resume` request, checked as the CLI checks its options."""
    if not isinstance(doc, dict) or not doc:
        raise UsageError("queue set: expected changes of max_running, cpus, gpus or paused")
    changes: dict[str, Any] = {}
    for key, value in doc.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if key == "max_running" and (value is None or (number and value == int(value) and 1 <= value <= 1_000_000)):
            changes[key] = None if value is None else int(value)
        elif key == "gpus" and (value is None or (number and value == int(value) and 0 <= value <= 1_000_000)):
            changes[key] = None if value is None else int(value)
        elif key == "cpus" and (value is None or (number and 0 < value <= 100_000)):
            changes[key] = None if value is None else float(value)
        elif key == "paused" and value in (0, 1) and not isinstance(value, float):
            changes[key] = int(value)
        else:
            raise UsageError(f"queue set: {str(key)[:40]}: not a cap it takes, or out of range")
    return changes


# -- update ------------------------------------------------------------------------------------------
UPDATABLE_WHILE_RUNNING = {"priority", "labels"}


def update(service: Any, row: Job, changes: dict[str, Any]) -> Any:
    """Change a job that has not finished: priority and labels of any, queue, timeout and retries of
    waiting ones (they apply from its next attempt); an event records what changed."""
    from jobctl.app.control import _fresh, _refuse, _result
    from jobctl.engine.backends import backend_for
    from jobctl.store.records import dumps, loads

    if row.state in states.TERMINAL:
        return _refuse(service, row, "only unfinished jobs can be updated")
    running = row.alloc is not None or row.state in states.RUNNING
    late = sorted(k for k in changes if k not in UPDATABLE_WHILE_RUNNING)
    if running and late:
        keys = ", ".join(f"--{k}" for k in late)
        return _refuse(service, row, f"{keys} applies only to waiting jobs (priority and labels also to running ones)")
    store: Store = service.store
    with store.write():
        fresh = store.job(row.id)
        if fresh is None or fresh.state in states.TERMINAL:
            return _refuse(service, fresh or row, "only unfinished jobs can be updated")
        fields: dict[str, Any] = {}
        said: list[str] = []
        if "priority" in changes and changes["priority"] != fresh.priority:
            fields["priority"] = changes["priority"]
            said.append(f"priority {fresh.priority} -> {changes['priority']}")
        if "queue" in changes and changes["queue"] != fresh.queue:
            fields["queue"] = changes["queue"]
            if fresh.state == states.PENDING:  # why it waits is the new queue's to say
                fields.update(reason=None, detail=None)
            said.append(f"queue {fresh.queue} -> {changes['queue']}")
        if "labels" in changes:
            labels = {**loads(fresh.labels, {}), **changes["labels"]}
            labels = {k: v for k, v in labels.items() if v != ""}  # --label k= removes k
            if labels != loads(fresh.labels, {}):
                fields["labels"] = dumps(labels)
                said.append("labels " + ", ".join(f"{k}={v}" for k, v in changes["labels"].items()))
        if "timeout" in changes or "retries" in changes:
            import json

            spec = JobSpec.from_dict(json.loads(store.spec_body(fresh.spec_id)))
            new = spec
            if "timeout" in changes and changes["timeout"] != spec.timeout:
                new = replace(new, timeout=changes["timeout"])
                said.append(f"timeout {_seconds(spec.timeout)} -> {_seconds(changes['timeout'])}")
            if "retries" in changes and changes["retries"] != spec.retries:
                new = replace(new, retries=changes["retries"])
                fields["max_attempts"] = max(fresh.attempt + 1, fresh.max_attempts + changes["retries"] - spec.retries)
                said.append(f"retries {spec.retries} -> {changes['retries']}")
            if new is not spec:
                text = json.dumps(new.to_dict(), sort_keys=True, separators=(",", ":"))
                fields["spec_id"] = store.spec_id(service.digest(text), text)
        if not fields:
            return _result(row, True, f"job {row.id}: nothing to change", fresh.state)
        message = "updated: " + "; ".join(said)
        if not store.update_job(row.id, fresh.state, fields, service.user, message):
            return _refuse(service, _fresh(service, row), "it changed state meanwhile; try again")
    from jobctl.errors import JobctlError

    try:
        backend_for(row.backend, service).update(row, changes)
    except JobctlError as exc:  # recorded here; the backend kept its own value (say so, on the same line)
        return _result(row, False, f"job {row.id} {message}; but Slurm refused: {exc.message}", fresh.state)
    return _result(row, True, f"job {row.id} {message}", fresh.state)


def _seconds(value: float | None) -> str:
    from jobctl.core.units import format_duration

    return "none" if value is None else format_duration(value)
