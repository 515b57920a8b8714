"""The use cases of a shared queue (SPEC section 12), run inside root's supervisor for one caller.

The caller is who the kernel says is at the other end of the socket (see jobctl/shared/protocol.py).
Each request runs the same code as single-user mode (jobctl/app/session.py, launch.py, control.py)
through a `CallerService`, a Service that acts with the caller's name, and these rules:

- everyone sees every job (status, describe, wait);
- only the owner of a job, root, or a member of config `shared.admin_group` may stop, start, kill,
  retry, update or remove it, or read its logs and its env values: anyone else gets
  `job 7 belongs to bob` (exit 1);
- with `shared.allowed_group` set, a user outside that group is refused before anything is read.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobctl.app.session import ActionResult, Service
from jobctl.errors import JobctlError, NotFound, UsageError
from jobctl.home.paths import Paths
from jobctl.shared.protocol import LAUNCH_OPTIONS, Peer
from jobctl.store.database import Store, loads
from jobctl.store.records import Job


class Refused(JobctlError):
    """A caller who may not do this (exit 1)."""


# The caller's environment variables a job gets in a shared queue (besides --env values, HOME, USER,
# LOGNAME and SHELL from the password database): the tools it runs, never a token of the caller's shell.
BASE_ENV = re.compile(
    r"PATH|LANG|LANGUAGE|LC_[A-Z]+|TERM|TZ|TMPDIR|VIRTUAL_ENV|CONDA_[A-Z_]+|PYTHONPATH|LD_LIBRARY_PATH"
    r"|CUDA_HOME|CUDA_PATH|HF_HOME|TORCH_HOME|XDG_CACHE_HOME"
)


def base_env(environ: dict[str, str]) -> dict[str, str]:
    """What of a caller's environment its jobs inherit (BASE_ENV names; no control characters but tab)."""
    return {
        k: v
        for k, v in environ.items()
        if isinstance(k, str) and isinstance(v, str) and BASE_ENV.fullmatch(k) and "\0" not in v and len(v) < 65536
    }


def _group_gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


@dataclass(frozen=True)
class Caller:
    pid: int
    uid: int
    gid: int
    name: str
    groups: frozenset[int]
    admin: bool

    @classmethod
    def of(cls, peer: Peer, config: Any) -> Caller:
        """Who the kernel says is calling; Refused when config `shared.allowed_group` leaves them out."""
        try:
            entry = pwd.getpwuid(peer.uid)
        except KeyError:
            raise Refused(
                f"uid {peer.uid} has no entry in the password database; the shared queue runs jobs as users"
            ) from None
        groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        allowed = config.get("shared.allowed_group")
        if allowed and peer.uid != 0:
            gid = _group_gid(allowed)
            if gid is None or gid not in groups:
                raise Refused(
                    f"user {entry.pw_name} is not in group {allowed}, the group that may use this queue "
                    "(config shared.allowed_group); ask its administrator"
                )
        admin_group = config.get("shared.admin_group")
        admin_gid = _group_gid(admin_group) if admin_group else None
        admin = peer.uid == 0 or (admin_gid is not None and admin_gid in groups)
        return cls(peer.pid, peer.uid, entry.pw_gid, entry.pw_name, groups, admin)

    def owns(self, row: Job) -> bool:
        return owner_uid(row) == self.uid

    def may_control(self, row: Job) -> bool:
        return self.admin or self.owns(row)


def owner_uid(row: Job) -> int | None:
    """The uid a job runs as: recorded at launch (`run_as`); else the uid of its user name."""
    run_as = loads(row.envs, {}).get("run_as") if row.envs else None
    if isinstance(run_as, dict) and isinstance(run_as.get("uid"), int):
        return run_as["uid"]
    try:
        return pwd.getpwnam(row.user).pw_uid
    except KeyError:
        return None


def belongs(row: Job) -> str:
    return f"job {row.id} belongs to {row.user}"


class CallerService(Service):
    """A Service acting for one caller inside the shared supervisor (its own database connection)."""

    def __init__(self, paths: Paths, caller: Caller, store: Store, poke: Callable[[], None]):
        super().__init__(paths)
        self.user = caller.name
        self.caller = caller
        self._store = store
        self._poke = poke
        self.only_own = False  # `--all` of a control command: the caller's own jobs (everyone's for admins)
        self.umask = None
        self.record_extra = {}

    def refresh_local(self) -> None:
        """Nothing to do: this is the supervisor, alive by definition."""

    def wake_supervisor(self, start: bool = True) -> bool:
        self._poke()
        return True

    def select(self, selectors: list[str], *, all_jobs: bool = False, missing_ok: bool = False) -> list[Job]:
        rows = super().select(selectors, all_jobs=all_jobs, missing_ok=missing_ok)
        if all_jobs and self.only_own and not self.caller.admin:
            rows = [r for r in rows if self.caller.owns(r)]
        return rows


# -- what crosses the socket -----------------------------------------------------------------------
def row_doc(row: Job, caller: Caller) -> dict[str, Any]:
    """A job's row as sent to a caller: the `envs` document (env values, the secrets file) only to
    whoever may control the job."""
    doc = row._asdict()
    if not caller.may_control(row):
        doc["envs"] = None
    return doc


def result_doc(result: ActionResult) -> dict[str, Any]:
    return asdict(result)


# -- the use cases -----------------------------------------------------------------------------------
def guarded(svc: CallerService, action: Callable[[Job], ActionResult]) -> Callable[[Job], ActionResult]:
    """`action`, for jobs the caller may control; `job 7 belongs to bob` for the others."""

    def act(row: Job) -> ActionResult:
        if not svc.caller.may_control(row):
            return ActionResult(row.id, row.name, False, belongs(row), row.state)
        return action(row)

    return act


def control(
    svc: CallerService, verb: str, selectors: list[str], all_jobs: bool, options: dict[str, Any]
) -> list[ActionResult]:
    from jobctl.app import control as control_mod

    svc.only_own = True
    if verb == "stop":
        release = bool(options.get("release"))
        action: Callable[[Job], ActionResult] = lambda row: control_mod.stop(svc, row, release)  # noqa: E731
    elif verb == "start":
        action = lambda row: control_mod.start(svc, row)  # noqa: E731
    elif verb == "retry":
        action = lambda row: control_mod.retry(svc, row)  # noqa: E731
    elif verb == "kill":
        grace = options.get("grace")
        if grace is not None and (
            not isinstance(grace, (int, float)) or isinstance(grace, bool) or not 0 <= grace <= 86400 * 365
        ):
            raise UsageError("--grace: expected a duration")
        signum = kill_signal(options.get("signal"))
        action = lambda row: control_mod.kill(svc, row, grace, signum)  # noqa: E731
    elif verb == "rm":
        action = lambda row: control_mod.remove(svc, row)  # noqa: E731
    elif verb == "update":
        from jobctl.app.queueing import update

        changes = update_changes(options.get("changes"))
        action = lambda row: update(svc, row, changes)  # noqa: E731
    else:
        raise UsageError(f"unknown action {verb[:40]!r}")
    if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
        raise UsageError("selectors: expected a list of strings")
    return control_mod.bulk(svc, selectors, bool(all_jobs), verb, guarded(svc, action))


def kill_signal(value: Any) -> int | None:
    """`kill --signal`: a signal number of this system, or None for the default TERM-then-KILL."""
    if value is None:
        return None
    from jobctl.core.queueing import parse_signal

    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError("--signal: expected a signal number")
    try:
        return parse_signal(value)
    except ValueError as exc:
        raise UsageError(f"--signal: {exc}") from None


UPDATE_KEYS = ("priority", "queue", "timeout", "retries", "labels")


def update_changes(doc: Any) -> dict[str, Any]:
    """The changes of an `update` request, checked as the CLI checks its options (one line otherwise)."""
    import math

    from jobctl.app.queueing import queue_option

    if not isinstance(doc, dict) or not doc:
        raise UsageError("update: changes: expected an object of --priority, --queue, --timeout, --retries, --label")
    unknown = [k for k in doc if k not in UPDATE_KEYS]
    if unknown:
        raise UsageError(f"update: {str(unknown[0])[:40]!r}: not something update changes")

    def whole(key: str, value: Any, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise UsageError(f"--{key}: expected a whole number from {lo} to {hi}")
        return value

    changes: dict[str, Any] = {}
    if "priority" in doc:
        changes["priority"] = whole("priority", doc["priority"], -1_000_000, 1_000_000)
    if "retries" in doc:
        changes["retries"] = whole("retries", doc["retries"], 0, 1000)
    if "queue" in doc:
        if not isinstance(doc["queue"], str):
            raise UsageError("--queue: expected a queue name")
        changes["queue"] = queue_option(doc["queue"])
    if "timeout" in doc:
        timeout = doc["timeout"]
        if timeout is not None and (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or not 0 < timeout <= 86400 * 3650
        ):
            raise UsageError("--timeout: expected a duration in seconds, or null for no limit")
        changes["timeout"] = None if timeout is None else float(timeout)
    if "labels" in doc:
        labels = doc["labels"]
        if not isinstance(labels, dict) or not labels or len(labels) > 1000:
            raise UsageError("--label: expected an object of k=v labels")
        for key, value in labels.items():
            if not key or not isinstance(value, str) or len(key) > 256 or len(value) > 4096:
                raise UsageError("--label: expected k=v, a key of at most 256 characters and a value of 4096")
            if any(ch in CONTROL for ch in key + value):
                raise UsageError(f"--label: {key[:40]!r}: holds a control character")
        changes["labels"] = dict(labels)
    return changes


CONTROL = {chr(c) for c in range(32)} | {chr(127)}


def prune(svc: CallerService, older_than: float) -> list[ActionResult]:
    import time

    from jobctl.app import control as control_mod

    rows = [r for r in svc.store.prunable(time.time() - older_than) if svc.caller.may_control(r)]
    return [control_mod.remove(svc, row) for row in rows]


def queue_op(svc: CallerService, verb: Any, name: Any, changes: Any) -> Any:
    """`queue list` for everyone; `queue set|pause|resume` for root and members of shared.admin_group."""
    from jobctl.app.queueing import queue_changes, queue_doc, queue_option

    if verb == "list":
        return [queue_doc(q) for q in svc.queue_rows()]
    if verb != "set":
        raise UsageError(f"queue: unknown action {str(verb)[:40]!r} (list or set)")
    if not isinstance(name, str):
        raise UsageError("queue: name: expected a queue name")
    name = queue_option(name)
    if not svc.caller.admin:
        group = svc.config.get("shared.admin_group")
        who = f"root or a member of group {group} (shared.admin_group)" if group else "root"
        raise Refused(f"queue {name}: only {who} changes the queues of a shared queue")
    checked = queue_changes(changes)
    svc.set_queue(name, checked)
    return {"name": name, "changes": checked}


def readable_job(svc: CallerService, selector: str) -> Job:
    """The job whose logs the caller wants; Refused unless they may read them."""
    row = svc.job(selector)
    if not svc.caller.may_control(row):
        raise Refused(belongs(row))
    return row


def spec_doc(svc: CallerService, job_id: int) -> dict[str, Any]:
    row = svc.store.job(job_id)
    if row is None:
        raise NotFound(f"no job matches '{job_id}'")
    spec = svc.spec_of(row)
    if not svc.caller.may_control(row):  # another user's env values are theirs
        spec["envs"] = {k: (None if v is None else "***") for k, v in (spec.get("envs") or {}).items()}
    return spec


# -- launch ------------------------------------------------------------------------------------------
def _owner_text(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_job_file(path: str, caller: Caller) -> None:
    """A job file of a shared queue is the caller's own (or root's): a file someone else can change
    decides what runs as the caller."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    if st.st_uid not in (caller.uid, 0) and not caller.uid == 0:
        raise UsageError(
            f"{path}: owned by {_owner_text(st.st_uid)}, not by you; a shared queue runs only job files you own "
            "(copy it to launch it)"
        )


def check_workdir(path: str, caller: Caller, what: str = "workdir") -> None:
    """Refuse a workdir that is, or passes through, a symbolic link into another user's files, or a
    folder of another user the caller cannot enter (the job would run there as the caller)."""
    if caller.uid == 0:
        return
    import stat

    parts = Path(path).parts
    current = Path(parts[0])
    for part in parts[1:]:
        current = current / part
        try:
            st = os.lstat(current)
        except OSError:
            return  # missing: the loader's own check says so
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(current)
            try:
                owner = os.stat(target).st_uid
            except OSError:
                owner = None
            if owner not in (caller.uid, 0):
                raise UsageError(
                    f"{what}: {path}: {current} is a symbolic link to {target}, owned by "
                    f"{_owner_text(owner) if owner is not None else 'nobody it can check'}; "
                    "a shared queue runs jobs only in folders of their owner"
                )
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_uid in (caller.uid, 0):
        return
    bits = stat.S_IXGRP if st.st_gid in caller.groups else stat.S_IXOTH
    if not st.st_mode & bits:
        raise UsageError(f"{what}: {path}: a folder of {_owner_text(st.st_uid)} that you cannot enter")


COMMAND_WORDS = 4096  # words of an ad-hoc command (the request's size caps their length)


def adhoc_command(value: Any) -> list[str] | None:
    """`launch -- CMD ARG...`: the command's words (None: a launch of job files)."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > COMMAND_WORDS
        or not all(isinstance(w, str) and "\0" not in w for w in value)
        or not value[0]
    ):
        raise UsageError("launch --: expected the command as a list of words (no NUL characters)")
    return value


def adhoc_cwd(value: Any, caller: Caller) -> str:
    """The folder an ad-hoc command runs in: the caller's current folder, checked as a workdir is
    (no symbolic link into another user's files, no folder of another user they cannot enter)."""
    from jobctl.jobfile.loader import workdir_problem

    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value or len(value) > 4096:
        raise UsageError("launch --: cwd: expected the absolute path of the current folder")
    path = os.path.normpath(value)
    if any(ch in CONTROL for ch in path):
        raise UsageError("launch --: the current folder's path holds a control character; run it from another folder")
    check_workdir(path, caller, "launch --: the current folder")
    problem = workdir_problem(path)
    if problem:
        raise UsageError(f"launch --: the current folder: {problem}")
    return path


def launch(svc: CallerService, args: dict[str, Any]) -> dict[str, Any]:
    from jobctl.app import launch as launch_mod

    caller = svc.caller
    command = adhoc_command(args.get("command"))
    files = args.get("files")
    if command is not None and files:
        raise UsageError("launch: give job files or a command after --, not both")
    if command is None and (
        not isinstance(files, list)
        or not files
        or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("text"), str) for f in files
        )
    ):
        raise UsageError("launch: expected files as [{path, text}]")
    files = files or []
    texts: dict[str, str] = {}
    for f in files:
        if not os.path.isabs(f["path"]):
            raise UsageError(f"launch: {f['path'][:200]}: expected an absolute path")
        check_job_file(f["path"], caller)
        texts[f["path"]] = f["text"]
    opts = args.get("options") or {}
    options = launch_mod.LaunchOptions()
    if not isinstance(opts, dict):
        raise UsageError("launch: options: expected an object")
    for key in LAUNCH_OPTIONS:
        value = opts.get(key)
        wanted = int if key in ("num_nodes", "priority") else bool if key in ("dry_run", "hold") else str
        if value is not None and (not isinstance(value, wanted) or (wanted is int and isinstance(value, bool))):
            raise UsageError(f"launch: options.{key}: expected {wanted.__name__}")
        setattr(options, key, value)
    options.dry_run = bool(options.dry_run)
    options.hold = bool(options.hold)
    env, secret = args.get("env") or {}, args.get("secret") or []
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise UsageError("launch: env: expected an object of strings")
    if not isinstance(secret, list) or not all(isinstance(s, str) for s in secret):
        raise UsageError("launch: secret: expected a list of names")
    for key in env:
        if not launch_mod.ENV_NAME.fullmatch(key):
            raise UsageError(f"--env: {key[:40]!r}: not a variable name")
    options.resolved_env = (env, secret)
    options.texts = texts
    given = args.get("base_env")
    environ = base_env(given) if isinstance(given, dict) else {}
    if command is not None:  # in the caller's folder, with the caller's PATH and virtualenv (allow-listed)
        options.command = command
        options.cwd = adhoc_cwd(args.get("cwd"), caller)
        options.environ = environ

    def check(spec: Any) -> None:
        from jobctl.engine.backends import backend_class

        if not backend_class(spec.backend or "local").supervised:  # Slurm: not the supervisor's to run
            raise UsageError(
                f"{spec.source or spec.name}: backend: a shared queue runs local jobs; submit to Slurm from your own home"
            )
        if spec.workdir:
            check_workdir(spec.workdir, caller)

    options.check = check
    umask = args.get("umask")
    svc.umask = umask if isinstance(umask, int) and 0 <= umask <= 0o777 else 0o022
    svc.record_extra = (
        {"run_as": {"uid": caller.uid, "gid": caller.gid, "user": caller.name}, "base_env": environ}
        if caller.uid != 0
        else {}  # root's jobs run as root, as in single-user mode
    )
    ids, plan = launch_mod.launch(svc, list(texts), options)
    rows = [row_doc(r, caller) for r in svc.select([str(i) for i in ids])] if ids else []
    return {"ids": ids, "plan": asdict(plan), "rows": rows}
