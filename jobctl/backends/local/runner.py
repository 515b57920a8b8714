"""The per-attempt runner of the local backend.

The supervisor forks one runner per attempt. The runner starts its own session, makes itself a
child subreaper (so a descendant that double-forks or calls setsid is re-parented to it, not to
init), starts one bash worker per rank, and waits. It outlives the supervisor: everything it
learns goes to files in the attempt folder, written atomically, and the supervisor (this one or
the next) turns them into database rows. The runner never touches the database.

Files in the attempt folder:
  plan.json            what to run (written by the runner itself, first thing after the fork); it holds
                       secret names and the path of the job's secrets file, never a secret value
  runner.json          {"pid", "start"}: written first thing, before any worker starts; then again
                       with "workers": {rank: pid} once they have run WORKERS_AFTER (a shorter
                       attempt names them in result.json only)
  rank<N>.log          the worker's stdout and stderr
  rank<N>.exit         {"exit_code", "ended_at"}: written when a worker exits while others still run
                       (every exit code is in result.json at the end)
  kill.json            {"reason", "grace", "message"}: a request to end the attempt (then SIGTERM); read
                       again after runner.json is written, so a kill that raced the start starts nothing
  result.json          the outcome, written last, just before the runner exits

Signals (no handlers: they are blocked and taken with sigtimedwait, one loop, no races):
  SIGTERM end the attempt (reason in kill.json), SIGUSR1 freeze the tree, SIGUSR2 thaw it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from jobctl.backends.local.plan import RunnerPlan
from jobctl.home.statefiles import BadStateFile, read_json, write_json, write_private

__all__ = ["BadStateFile", "read_json", "run_attempt", "write_json", "write_private"]

PR_SET_CHILD_SUBREAPER = 36
BASH = "/bin/bash" if os.path.exists("/bin/bash") else "/usr/bin/bash"
WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP}
# What a worker gets back at its default: the watched signals, and those Python ignores (an ignored
# signal stays ignored across exec: `yes | head -1` would say "Broken pipe"), as subprocess does.
WORKER_DEFAULTS = WATCHED | {signal.SIGPIPE, signal.SIGXFSZ}

# Runs setup then run, in the job's workdir; the scripts come as arguments ($3, $4), so nothing
# is written to disk for them; a script too long for one argument comes as a file ($5, $6), named
# by an argument, never pasted into a shell string. A failing setup leaves a marker file.
WORKER_SCRIPT = r"""
dir=$1; rank=$2
if [ -n "$5" ]; then bash "$5"; else bash -c "$3" jobctl-setup; fi
code=$?
if [ $code -ne 0 ]; then
  echo "jobctl: setup failed with exit code $code" >&2
  : > "$dir/setup_failed.$rank"
  exit $code
fi
if [ -n "$6" ]; then exec bash "$6"; fi
exec bash -c "$4" jobctl-run
"""
WORKERS_AFTER = 0.2  # seconds: runner.json names the workers of an attempt that runs longer than this
ARG_LIMIT = 100_000  # bytes: a longer script goes through a file (Linux caps one argument at 128 KiB)
FROZEN_MARK = "frozen"
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


def exit_code_of(status: int) -> int:
    """A wait status as a shell would show it: the exit code, or 128 + the signal number."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def notify(sock_path: str) -> bool:
    """Wake the supervisor, if one is listening; True when one was. Never fails."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            sock.connect(sock_path)
            sock.sendall(b"w")
        return True
    except OSError:
        return False


class Home:
    """The jobctl home, resolved only when a runner has to start a supervisor (rarely: none listens),
    from the folder the runner started in, since JOBCTL_HOME may be a relative path."""

    def __init__(self) -> None:
        try:
            self.cwd: str | None = os.getcwd()
        except OSError:  # a folder removed meanwhile: only an absolute JOBCTL_HOME resolves
            self.cwd = None

    def resolve(self) -> Any:
        try:
            from jobctl.home.paths import resolve

            if self.cwd is not None:
                os.chdir(self.cwd)
            return resolve()
        except Exception:  # noqa: BLE001 - the next jobctl command starts one as well
            return None


def tell_supervisor(plan: RunnerPlan, home: Any) -> None:
    """The attempt has ended: make sure a supervisor records it and moves the queue on (SPEC section 7).

    The supervisor that forked us learns it from SIGCHLD; another one that adopted us, from the socket;
    with none listening (it was killed), we start one, so a chain of jobs moves on with nobody typing.
    """
    if os.getppid() == plan.supervisor_pid:
        return
    if notify(plan.socket) or home is None:
        return
    if isinstance(home, Home):
        home = home.resolve()
        if home is None:
            return
    try:
        from jobctl.home.launcher import start_if_absent

        start_if_absent(home)
    except Exception:  # noqa: BLE001 - the next jobctl command starts one as well
        pass


PR_SET_NAME = 15
_LIBC: list[Any] = []
_ARGS: list[int] = []  # [pid, arg_start, arg_end] of this process, read once (a slot runner sets its title often)


def libc() -> Any:
    """The C library, loaded once (the supervisor loads it before it forks: runners inherit it)."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def set_title(title: str) -> None:
    """Tell this runner apart from the supervisor it was forked from, in ps, top and psutil.

    The short name (`comm`) through prctl(PR_SET_NAME); the command line by overwriting the argument
    area in place, as setproctitle(3) does: when its last byte is not NUL, Linux shows the text up to
    the first NUL. Best effort: a failure leaves the old title.
    """
    raw = title.encode()
    try:
        libc().prctl(PR_SET_NAME, ctypes.c_char_p(raw.split()[0][:15]), 0, 0, 0)  # its first word
        if not _ARGS or _ARGS[0] != os.getpid():
            with open("/proc/self/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(b")") + 2 :].split()  # fields from the third (state) on
            _ARGS[:] = [os.getpid(), int(fields[45]), int(fields[46])]  # arg_start and arg_end (fields 48, 49)
        start, end = _ARGS[1], _ARGS[2]
        size = end - start
        if start <= 0 or size < 2:
            return
        data = raw[: size - 1] + b"\0"
        ctypes.memmove(start, data + b" " * (size - len(data)), size)
    except (OSError, AttributeError, ValueError, IndexError):
        pass


class Runner:
    def __init__(self, attempt_dir: Path, plan: RunnerPlan):
        self.dir = attempt_dir
        self.plan = plan
        self.workers: dict[int, int] = {}  # pid -> rank
        self.exits: dict[int, int] = {}  # rank -> exit code
        self.frozen_since: float | None = None
        self.frozen_total = 0.0
        self.started = time.monotonic()
        self.kill_request: dict[str, Any] | None = None
        self.kill_deadline: float | None = None
        self.cgroup: Any = None  # a MemoryCgroup when the machine offers one
        self.meter: Any = None  # a UsageMeter once the workers are about to start (SPEC section 11)
        self.identity: dict[str, Any] = {}
        self.run_as: Any = None  # a shared queue: the RunAs the workers run as (jobctl/backends/local/identity.py)
        self.marks = attempt_dir  # where a worker leaves setup_failed.<rank> (a folder of the job's owner when shared)
        self.warned = False  # the job's warning signal (`signal: USR1@60s`) was sent this attempt
        # A slot runner (slots.py) runs attempts one after another: a late signal can be meant for an
        # attempt that already ended, so it acts only on what this attempt's own files ask for.
        self.slot = False
        self.environ: dict[str, str] | None = None  # a slot runner's environment, copied once (else os.environ)
        self.child_peak = 0  # the largest peak RSS (bytes) of a process reaped in this attempt (wait4)
        self.pids: dict[str, int] = {}  # rank -> worker PID, as started
        self.pids_due: float | None = None  # when runner.json is to name the workers (None: done, or none yet)

    # -- the tree ------------------------------------------------------------------------------
    def descendants(self) -> list[Any]:
        if not self.has_children():
            return []  # a subreaper with no child has no descendant at all: skip the /proc scan
        import psutil

        try:
            return psutil.Process().children(recursive=True)
        except psutil.Error:
            return []

    @staticmethod
    def has_children() -> bool:
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return True
        except ChildProcessError:
            return False

    def signal_tree(self, sig: int) -> None:
        import psutil

        for proc in self.descendants():
            try:
                proc.send_signal(sig)  # psutil checks the PID was not reused
            except psutil.Error:
                pass

    def freeze_tree(self) -> None:
        """SIGSTOP every process of the attempt. One may fork while the tree is read, and its child would
        run on unseen: read the tree again until it holds no process not stopped yet (a process that has
        SIGSTOP pending forks no more, so each new reading finds fewer new ones)."""
        import psutil

        stopped: set[Any] = set()
        while True:
            fresh = [proc for proc in self.descendants() if proc not in stopped]
            if not fresh:
                return
            for proc in fresh:
                stopped.add(proc)
                try:
                    proc.send_signal(signal.SIGSTOP)
                except psutil.Error:
                    pass

    # -- life ----------------------------------------------------------------------------------
    def start_workers(self) -> None:
        plan = self.plan
        run, setup = plan.run, plan.setup or ""
        run_file = setup_file = ""
        if len(run.encode()) > ARG_LIMIT:
            run_file = str(self.dir / "run.sh")
            write_private(Path(run_file), run)
            if self.run_as is not None:
                self.run_as.give(path=run_file)
        if len(setup.encode()) > ARG_LIMIT:
            setup_file = str(self.dir / "setup.sh")
            write_private(Path(setup_file), setup)
            if self.run_as is not None:
                self.run_as.give(path=setup_file)
        base = dict(self.environ if self.environ is not None else os.environ)
        if self.run_as is not None:  # a shared queue: the caller's recorded environment, never root's
            base = {str(k): str(v) for k, v in (plan.base_env or {}).items()}
            base.update(self.run_as.env())
        base.update(plan.env or {})
        base.update(self.secrets())
        umask = plan.umask
        old_umask = os.umask(umask if isinstance(umask, int) and 0 <= umask <= 0o777 else 0o022)
        try:
            self._spawn_all(base, run, setup, run_file, setup_file)
        finally:
            os.umask(old_umask)
        # The workers' PIDs join the runner's identity once they have run WORKERS_AFTER (see `loop`); a
        # shorter attempt says them in result.json: two files fewer to make for a short job.
        self.pids = {str(r): p for p, r in self.workers.items()}
        self.pids_due = time.monotonic() + WORKERS_AFTER

    def secrets(self) -> dict[str, str]:
        """The job's secret values, from its 0600 secrets file (removed when the job ends)."""
        path = self.plan.secrets_file
        if not path:
            return {}
        values = read_json(Path(path))
        if values is None:
            raise RuntimeError(f"its secrets file {path} is gone (the job ended, or was removed); launch it again")
        return {str(k): str(v) for k, v in values.items()}

    def _spawn_all(self, base: dict[str, str], run: str, setup: str, run_file: str, setup_file: str) -> None:
        plan = self.plan
        for rank in range(plan.num_nodes):
            env = dict(base)
            env.update(plan.rank_env[rank])
            log = os.open(self.dir / f"rank{rank}.log", LOG_FLAGS, 0o600)
            if self.run_as is not None:  # the job's owner's, 0600
                self.run_as.give(fd=log)
            if setup:
                argv = [
                    "bash",
                    "-c",
                    WORKER_SCRIPT,
                    "jobctl-worker",
                    str(self.marks),
                    str(rank),
                    "" if setup_file else setup,  # a script in a file is not an argument as well
                    "" if run_file else run,
                    setup_file,
                    run_file,
                ]
            elif run_file:
                argv = ["bash", run_file]
            else:
                argv = ["bash", "-c", run, "jobctl-run"]  # one bash per worker
            if self.run_as is not None:
                from jobctl.backends.local.identity import spawn_as

                try:
                    mask = os.umask(0o077)  # read the caller's umask (set by start_workers) and put it back
                    os.umask(mask)
                    pid = spawn_as(self.run_as, BASH, argv, env, log, plan.workdir, mask, WORKER_DEFAULTS)
                finally:
                    os.close(log)
                self.workers[pid] = rank
                continue
            try:
                pid = os.posix_spawn(
                    BASH,
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, log, 1),
                        (os.POSIX_SPAWN_DUP2, log, 2),
                        (os.POSIX_SPAWN_CLOSE, log),
                    ],
                    setsigmask=(),
                    setsigdef=tuple(WORKER_DEFAULTS),
                )
            finally:
                os.close(log)
            self.workers[pid] = rank

    def chdir(self) -> None:
        git = self.plan.workdir_git
        if git:  # a git workdir: a fresh clone at the ref, in this attempt's folder
            from jobctl.backends.local.gitworkdir import clone

            self.plan.workdir = str(clone(git["url"], git.get("ref"), self.dir / "workdir"))
            if self.run_as is not None:  # the clone is the job's owner's
                for folder, dirs, files in os.walk(self.plan.workdir):
                    for name in [*dirs, *files]:
                        os.lchown(os.path.join(folder, name), self.run_as.uid, self.run_as.gid)
                os.lchown(self.plan.workdir, self.run_as.uid, self.run_as.gid)
        if self.run_as is not None:
            return  # each worker enters the workdir itself, as the job's owner (jobctl/backends/local/identity.py)
        os.chdir(self.plan.workdir)

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.child_peak = max(self.child_peak, usage.ru_maxrss * 1024)  # Linux: KiB
            rank = self.workers.pop(pid, None)
            if rank is None:
                continue  # an orphaned descendant re-parented to us
            code = exit_code_of(status)
            self.exits[rank] = code
            if self.workers:  # others still run: say so now (the last one's end is in result.json)
                write_json(self.dir / f"rank{rank}.exit", {"exit_code": code, "ended_at": time.time()})
                notify(self.plan.socket)

    def reap_all(self) -> None:
        """Wait until every process of the attempt is reaped (after a SIGKILL of the tree)."""
        while self.descendants():
            signal.sigtimedwait({signal.SIGCHLD}, 0.05)
            self.reap()
        self.reap()

    def active_seconds(self) -> float:
        frozen = self.frozen_total + (time.monotonic() - self.frozen_since if self.frozen_since else 0.0)
        return time.monotonic() - self.started - frozen

    def warning(self) -> tuple[int, float] | None:
        """The job's warning signal and how long before its timeout it comes (`signal: USR1@60s`)."""
        warn = self.plan.warn_signal
        if isinstance(warn, list) and len(warn) == 2 and isinstance(warn[0], int):
            return int(warn[0]), float(warn[1])
        return None

    def warn_workers(self) -> None:
        """Send the warning signal to every worker (each rank's process: bash, or what it exec'ed)."""
        warn = self.warning()
        if warn is None or self.warned:
            return
        self.warned = True
        for pid in list(self.workers):  # our own unreaped children: their PIDs cannot have been reused
            with contextlib.suppress(OSError):
                os.kill(pid, warn[0])

    def request_end(self, reason: str, grace: float, message: str | None = None, signum: int | None = None) -> None:
        if self.kill_request is not None:
            return
        self.kill_request = {"reason": reason, "grace": grace, "message": message}
        self.kill_deadline = time.monotonic() + grace
        if grace > 0:
            self.warn_workers()  # the start of the grace period of a kill or preemption (SPEC section 9)
        self.signal_tree(signum or signal.SIGTERM)  # `kill --signal INT`: that signal first
        self.signal_tree(signal.SIGCONT)  # a frozen process must wake to see SIGTERM
        self.frozen_since = None

    def freeze_asked(self) -> bool:
        """Whether this attempt is to be frozen: the `frozen` mark that `stop` leaves in the attempt folder
        before it signals (and `start` removes before it signals), so a late signal changes nothing."""
        return os.path.lexists(self.dir / FROZEN_MARK)

    def handle(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                req = read_json(self.dir / "kill.json") or {}
                grace = float(req.get("grace", self.plan.grace))
                reason, message = str(req.get("reason", "killed")), req.get("message")
                signum = req.get("signal")
                signum = signum if isinstance(signum, int) and 0 < signum < signal.NSIG else None
                if self.slot and not req:
                    return  # no request for this attempt: the signal was meant for an earlier one
            except (BadStateFile, TypeError, ValueError):
                grace, reason, message = float(self.plan.grace), "killed", None
                signum = None
            self.request_end(reason, grace, message if isinstance(message, str) else None, signum)
        elif sig == signal.SIGUSR1 and self.frozen_since is None and self.kill_request is None:
            if not self.freeze_asked():
                return
            self.frozen_since = time.monotonic()
            self.freeze_tree()
        elif sig == signal.SIGUSR2 and self.frozen_since is not None and not self.freeze_asked():
            self.signal_tree(signal.SIGCONT)
            self.frozen_total += time.monotonic() - self.frozen_since
            self.frozen_since = None

    def loop(self) -> None:
        timeout = self.plan.timeout
        while self.workers or (self.kill_request and self.descendants()):
            wait = 1.0
            if self.pids_due is not None:
                due = self.pids_due - time.monotonic()
                if due <= 0:
                    write_json(self.dir / "runner.json", {**self.identity, "workers": self.pids})
                    self.pids_due = None
                else:
                    wait = min(wait, due)
            if self.kill_deadline is not None:
                left = self.kill_deadline - time.monotonic()
                if left <= 0:
                    self.signal_tree(signal.SIGKILL)
                    wait = 0.05
                else:
                    wait = min(wait, left)
            elif timeout and self.frozen_since is None:
                left = timeout - self.active_seconds()
                warn = self.warning()
                if warn is not None and not self.warned:  # the warning signal, `before` seconds ahead
                    if left <= warn[1]:
                        self.warn_workers()
                    else:
                        wait = min(wait, left - warn[1])
                if left <= 0:
                    limit = self.plan.timeout_text
                    self.request_end("timed_out", float(self.plan.grace), f"ran longer than its timeout of {limit}")
                    continue
                wait = min(wait, left)
            info = signal.sigtimedwait(WATCHED, max(wait, 0.01))
            if info is not None:
                self.handle(info.si_signo)
            self.reap()
            if self.meter is not None and self.meter.due():
                self.meter.sample(self.descendants())
            if self.cgroup is not None and self.kill_request is None and self.cgroup.oom_killed():
                self.request_end("out_of_memory", 0.0, self.oom_message())
        # Whatever the workers left running in the background does not outlive the attempt.
        leftovers = self.descendants()
        if leftovers:
            self.signal_tree(signal.SIGTERM)
            self.signal_tree(signal.SIGCONT)
            deadline = time.monotonic() + 2.0
            while self.descendants() and time.monotonic() < deadline:
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)
                self.reap()
            self.signal_tree(signal.SIGKILL)
            while self.descendants():
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)
                self.reap()

    def oom_message(self) -> str:
        from jobctl.core.units import format_gib

        limit = self.plan.memory_mib or 0
        peak = self.cgroup.peak_mib() if self.cgroup is not None else None
        if peak and peak < limit:
            what = f"used {format_gib(peak)} GiB of its {format_gib(limit)} GiB memory limit"
        else:
            what = f"reached its {format_gib(limit)} GiB memory limit"
        return (
            f"{what} and was killed by the kernel; raise resources.memory in the job file (or --memory) to allow more"
        )

    def result(self) -> dict[str, Any]:
        n = self.plan.num_nodes
        codes = [self.exits.get(rank) for rank in range(n)]
        failed = [c for c in codes if c != 0]
        setup_failed = any(os.path.lexists(self.marks / f"setup_failed.{r}") for r in range(n))
        req = self.kill_request
        if req is None and self.cgroup is not None and self.cgroup.oom_killed():
            req = self.kill_request = {"reason": "out_of_memory", "grace": 0.0, "message": self.oom_message()}
        if req is not None:
            outcome = req["reason"]
        elif setup_failed:
            outcome = "setup_failed"
        elif not failed:
            outcome = "completed"
        else:
            outcome = "failed"
        exit_code = next((c for c in codes if c), 0)
        result = {
            "outcome": outcome,
            "message": req.get("message") if req else None,
            "exit_codes": codes,
            "failed": len(failed),
            "exit_code": exit_code,
            "ended_at": time.time(),
            "workers": self.pids,
        }
        if self.meter is not None:
            try:
                result["usage"] = self.meter.result(self.active_seconds(), self.child_peak)
            except Exception:  # noqa: BLE001 - accounting never costs the job its result
                pass
        return result


def shared_attempt(runner: Runner, attempt_dir: Path) -> None:
    """A shared queue's attempt: its workers run as the job's owner, who gets a folder for the marks
    they leave (the attempt folder itself stays root's, with the state files in it)."""
    from jobctl.backends.local.identity import RunAs

    try:
        runner.run_as = RunAs.of(runner.plan.run_as)
    except RuntimeError as exc:
        runner.run_as = None
        raise StartRefused(str(exc)) from None
    marks = attempt_dir / "own"
    marks.mkdir(mode=0o700)
    runner.run_as.give(path=marks, mode=0o700)
    runner.marks = marks


class StartRefused(Exception):
    """The attempt cannot start (its owner is gone); said in result.json as a start error."""


def become_runner() -> None:
    """Its own session, a child subreaper, the watched signals blocked (taken with sigtimedwait)."""
    os.setsid()
    try:
        libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    for sig in WATCHED:
        signal.signal(sig, signal.SIG_DFL)


def process_identity() -> dict[str, Any]:
    """What runner.json says of this process: its PID and its start, which together never repeat."""
    import psutil

    return {"pid": os.getpid(), "start": psutil.Process().create_time()}


class CgroupHolder:
    """The memory cgroup of a runner's attempts: claimed per attempt and given back at its end (a runner
    of one attempt), or kept and set to each attempt's limit in turn (a slot runner, see slots.py)."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.cgroup: Any = None

    def claim(self, plan: RunnerPlan) -> Any:
        if not plan.memory_mib or not plan.cgroup_pool:
            self.release()  # an attempt without a limit runs outside the cgroup
            return None
        from jobctl.backends.local.cgroups import MemoryCgroup

        pool, limit = Path(plan.cgroup_pool), int(plan.memory_mib)
        if self.cgroup is not None and not self.cgroup.reset(pool, limit):
            self.release()
        if self.cgroup is None:
            self.cgroup = MemoryCgroup.claim(pool, limit)
        return self.cgroup

    def attempt_ended(self) -> None:
        if not self.keep:
            self.release()

    def release(self) -> None:
        if self.cgroup is not None:
            self.cgroup.release()
            self.cgroup = None


def unstarted_result(outcome: str, message: str | None, ranks: int = 0) -> dict[str, Any]:
    """result.json of an attempt that started no worker (killed before its start, or unable to start)."""
    return {
        "outcome": outcome,
        "message": message,
        "exit_codes": [None] * ranks,
        "failed": 0,
        "exit_code": None,
        "ended_at": time.time(),
    }


def one_attempt(
    attempt_dir: Path,
    plan: RunnerPlan,
    identity: dict[str, Any],
    cgroups: CgroupHolder,
    slot: bool = False,
    environ: dict[str, str] | None = None,
) -> None:
    """Run one attempt to its end and write its result.json; the caller is a runner already
    (`become_runner`). Raises only when the attempt's files cannot be written: then no result.json
    exists and the runner must exit, so that the attempt is seen as lost.

    The attempt folder and plan.json are made here, not in the supervisor: file system work is off
    the supervisor's path, which is shared by every job.
    """
    attempt_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if plan.run_as:  # a shared queue: users reach their own logs (0600) through these folders
        os.chmod(attempt_dir.parent, 0o711)
        os.chmod(attempt_dir, 0o711)
    write_json(attempt_dir / "plan.json", plan.to_json())
    write_json(attempt_dir / "runner.json", identity)
    # A kill that raced the start wrote kill.json before it could signal us (no runner.json yet):
    # look for it only now, after runner.json, so that one of the two sides always sees the other.
    request = read_json(attempt_dir / "kill.json")
    if request is not None:
        write_json(
            attempt_dir / "result.json",
            unstarted_result(request.get("reason", "killed"), request.get("message"), int(plan.num_nodes)),
        )
        return
    runner = Runner(attempt_dir, plan)
    runner.identity = identity
    runner.slot = slot
    runner.environ = environ
    if plan.memory_mib:
        runner.cgroup = cgroups.claim(plan)
    try:
        if plan.run_as:
            shared_attempt(runner, attempt_dir)
        runner.chdir()
        from jobctl.backends.local.usage import UsageMeter, devices_of

        if os.environ.get("JOBCTL_ACCOUNTING") != "0":  # 0: off, only to measure what it costs
            runner.meter = UsageMeter(devices_of(runner.plan), runner.cgroup)
        runner.start_workers()
        # A `stop` that raced the start left its mark before it could signal us (no runner.json yet): as
        # with kill.json, look for it only now, after runner.json, so one of the two sides sees the other.
        runner.handle(signal.SIGUSR1)  # freezes the workers only if the `frozen` mark is there
    except Exception as exc:  # noqa: BLE001 - a bad workdir, a missing bash, a bad plan
        runner.signal_tree(signal.SIGKILL)
        runner.reap_all()
        cgroups.attempt_ended()
        write_json(attempt_dir / "result.json", unstarted_result("start_error", f"could not start the job: {exc}"))
        return
    runner.loop()
    result = runner.result()
    cgroups.attempt_ended()
    write_json(attempt_dir / "result.json", result)


def log_crash(attempt_dir: Path) -> None:
    """The runner's own failure, in the attempt folder (its traceback): best effort."""
    import traceback

    with (
        contextlib.suppress(OSError),
        os.fdopen(os.open(attempt_dir / "runner-error.log", LOG_FLAGS, 0o600), "a") as handle,
    ):
        traceback.print_exc(file=handle)


def run_attempt(attempt_dir: Path, plan: RunnerPlan) -> None:
    """Body of a runner forked for one attempt. Never returns: it ends the process with os._exit."""
    code = 0
    try:
        set_title(f"jobctl-runner job {plan.job_id} attempt {plan.attempt}")
        home = Home()  # resolved only if needed, from here (JOBCTL_HOME may be relative)
        become_runner()
        cgroups = CgroupHolder(keep=False)
        try:
            one_attempt(attempt_dir, plan, process_identity(), cgroups)
        finally:
            cgroups.release()
        tell_supervisor(plan, home)
    except BaseException:  # noqa: BLE001 - the runner must always leave a trace and exit
        code = 70
        log_crash(attempt_dir)
    finally:
        os._exit(code)
