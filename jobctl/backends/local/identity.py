"""Running a job's workers as the user who launched it (a shared queue, SPEC section 12).

The runner of a shared queue runs as root: it keeps the attempt's state files in a folder only root
may change, and starts each worker in a child that gives up root for good before it runs anything
of the job: supplementary groups (the user's, as initgroups(3) computes them), then gid and uid
(real, effective and saved: setresgid/setresuid), then the job's folder, which it enters as the user
(so a folder the user may not enter stays closed), then exec. HOME, USER, LOGNAME and SHELL come
from the password database.
"""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    user: str
    home: str
    shell: str
    groups: tuple[int, ...]

    @classmethod
    def of(cls, doc: Any) -> RunAs:
        """From a plan's `run_as` ({uid, gid, user}); refused when the account is gone or changed."""
        if not isinstance(doc, dict) or not isinstance(doc.get("uid"), int) or not isinstance(doc.get("user"), str):
            raise RuntimeError("the job's owner is not recorded")
        try:
            entry = pwd.getpwuid(doc["uid"])
        except KeyError:
            raise RuntimeError(f"user {doc['user']} (uid {doc['uid']}) no longer exists") from None
        if entry.pw_name != doc["user"]:
            raise RuntimeError(f"uid {doc['uid']} is now {entry.pw_name}, not {doc['user']} who launched the job")
        if entry.pw_uid == 0:
            raise RuntimeError("a shared queue does not run root's jobs as another user; root's jobs run as root")
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir, entry.pw_shell or "/bin/sh", groups)

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.user, "LOGNAME": self.user, "SHELL": self.shell}

    def give(self, fd: int | None = None, path: str | os.PathLike[str] | None = None, mode: int = 0o600) -> None:
        """Make a file the user's (by descriptor, or by path without following a symlink)."""
        if fd is not None:
            os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, mode)
        elif path is not None:  # a file or folder root just made in a folder only root may change
            os.lchown(path, self.uid, self.gid)
            os.chmod(path, mode)


def spawn_as(
    run_as: RunAs,
    path: str,
    argv: list[str],
    env: dict[str, str],
    log_fd: int,
    workdir: str,
    umask: int,
    default_signals: Iterable[int],
) -> int:
    """Fork a worker that runs `argv` as `run_as`, stdout and stderr to `log_fd`, in `workdir`."""
    signals = tuple(default_signals)
    pid = os.fork()
    if pid != 0:
        return pid
    code = 127
    try:  # the child: from here on only system calls, then exec
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.setgroups(list(run_as.groups))
        os.setresgid(run_as.gid, run_as.gid, run_as.gid)
        os.setresuid(run_as.uid, run_as.uid, run_as.uid)
        if os.getresuid() != (run_as.uid,) * 3 or os.getresgid() != (run_as.gid,) * 3:
            raise RuntimeError("could not give up root")
        try:
            os.chdir(workdir)
        except OSError as exc:
            code = 126
            raise RuntimeError(f"cannot enter the workdir {workdir} as {run_as.user}: {exc.strerror}") from None
        os.umask(umask)
        for sig in signals:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execve(path, argv, env)
    except BaseException as exc:  # noqa: BLE001 - said in the job's log; the exit code says the rest
        try:
            os.write(2, f"jobctl: could not start the job: {exc}\n".encode())
        finally:
            os._exit(code)
    os._exit(code)
