"""Starting the supervisor of a home: one per JOBCTL_HOME, guarded by the lock file in its runtime
folder. Whoever starts one takes the lock first and hands it over to the new process, so that of
many callers at once only one starts a supervisor (see jobctl/supervisor/daemon.py for the process).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from pathlib import Path

from jobctl.home.paths import Paths, make_private_dir

LOCK_FD_ENV = "JOBCTL_SUPERVISOR_LOCK_FD"  # a held lock handed over by whoever started the supervisor


def spawn_detached(paths: Paths, lock_fd: int | None = None, drop: set[str] | frozenset[str] = frozenset()) -> None:
    """Start a supervisor in the background, fully detached: its own session, no terminal, and nobody's
    child (an intermediate process starts it and exits at once; it is reaped here), so a long-lived
    caller such as `launch --wait` never holds it as an unreaped zombie. The caller's blocked signals
    (a runner blocks several) do not carry over.

    `drop`: variables passed with --env/--env-file: later jobs inherit the supervisor's environment,
    so a secret given to one job must not be in it (SPEC section 14).
    """
    paths.ensure()
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.pop(LOCK_FD_ENV, None)
    if lock_fd is not None:
        env[LOCK_FD_ENV] = str(lock_fd)
    if env.get("JOBCTL_HOME"):  # the same home whatever the folder the supervisor and its runners work in
        env["JOBCTL_HOME"] = str(Path(env["JOBCTL_HOME"]).expanduser().resolve())
    argv = [sys.executable, "-m", "jobctl.supervisor"]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            1,
            str(paths.supervisor_log),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
            0o600,
        ),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    defaults = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    pid = os.fork()
    if pid == 0:  # the intermediate: start the supervisor in a new session and leave at once
        code = 0
        try:
            if lock_fd is not None:
                os.set_inheritable(lock_fd, True)  # in this process only: the new supervisor holds the lock too
            os.posix_spawn(
                sys.executable, argv, env, file_actions=actions, setsid=True, setsigmask=(), setsigdef=defaults
            )
        except BaseException:  # noqa: BLE001 - nothing to report to: the caller only sees no supervisor
            code = 1
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def exiting(paths: Paths) -> bool:
    """True when the supervisor holding the lock has said it is leaving (it no longer answers)."""
    try:
        return bool(json.loads(paths.lock.read_text() or "{}").get("exiting"))
    except (OSError, ValueError, AttributeError):
        return False


def start_if_absent(paths: Paths, drop: set[str] | frozenset[str] = frozenset()) -> bool:
    """Start a supervisor unless one holds the lock; True when one was started.

    The lock is taken here and handed over to the new supervisor (it inherits the locked file), so it is
    never free while a supervisor starts: of many callers at once (runners ending together after a
    crash, several waiters), only one starts a supervisor.
    """
    make_private_dir(paths.runtime)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        spawn_detached(paths, lock_fd=fd, drop=drop)
        return True
    finally:
        os.close(fd)
