"""A shared queue for tests (SPEC section 12): real Unix users, root's shared supervisor, the CLI
as root or as a user. The fixtures that use these (`users`, `interpreter`, `shared`) are in
tests/conftest.py; tests/test_shared.py and tests/test_shared_ops.py use them.

The users run jobctl from this checkout with an interpreter they can execute (the virtualenv's, or
the system's with the virtualenv's packages on PYTHONPATH), or from a readable copy of the package
when the checkout is out of their reach; when nothing works the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from helpers.files import REPO

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd: the shared queue runs jobs as real users (CI runs these as root)",
)


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path


def add_user(name: str) -> User:
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def interpreter_env(users: list[User], made: list[Path]) -> tuple[str, dict[str, str]]:
    """An interpreter and PYTHONPATH with which every user can run this checkout's jobctl. A copy
    of the package made for them is added to `made` (the caller removes it)."""
    site = sysconfig.get_paths()["purelib"]
    candidates = [
        (sys.executable, {"PYTHONPATH": str(REPO)}),
        (os.path.realpath(sys.executable), {"PYTHONPATH": f"{REPO}:{site}"}),
        ("/usr/bin/python3", {"PYTHONPATH": f"{REPO}:{site}"}),
    ]

    def works(python: str, extra: dict[str, str], u: User) -> bool:
        try:
            return (
                subprocess.run(
                    [python, "-m", "jobctl", "--version"],
                    user=u.uid,
                    group=u.gid,
                    extra_groups=[],
                    env={"PATH": "/usr/bin:/bin", "HOME": str(u.home), **extra},
                    cwd="/",
                    capture_output=True,
                ).returncode
                == 0
            )
        except OSError:  # the interpreter itself is out of the user's reach
            return False

    for python, extra in candidates:
        if all(works(python, extra, u) for u in users):
            return python, extra
    # the checkout itself may be out of their reach (a clone under /root): a readable copy of the package
    copy = Path(tempfile.mkdtemp(prefix="jobctl-shared-src-"))
    made.append(copy)
    os.chmod(copy, 0o755)
    shutil.copytree(REPO / "jobctl", copy / "jobctl", ignore=shutil.ignore_patterns("__pycache__"))
    for python in (sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"):
        extra = {"PYTHONPATH": f"{copy}:{site}"}
        if all(works(python, extra, u) for u in users):
            return python, extra
    pytest.skip(
        f"the test users cannot run jobctl from {REPO} with {sys.executable} or /usr/bin/python3 "
        "(a folder on the way is not readable by them); install jobctl where every user can read it"
    )


class Shared:
    """A shared home, root's supervisor on it, and the CLI as root or as a user."""

    def __init__(self, home: Path, interpreter):
        self.home = home
        self.python, self.extra = interpreter

    def root(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBCTL_HOME": str(self.home), "NO_COLOR": "1"}
        env.pop("JOBCTL_DEBUG", None)
        proc = subprocess.run(
            [sys.executable, "-m", "jobctl", *args], env=env, capture_output=True, text=True, timeout=60
        )
        if check and proc.returncode:
            raise AssertionError(f"root: jobctl {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def user_env(self, user: User, env: dict | None = None) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(user.home),
            "USER": user.name,
            "JOBCTL_HOME": str(self.home),
            "NO_COLOR": "1",
            **self.extra,
            **(env or {}),
        }

    def as_user(
        self, user: User, *args: str, check: bool = False, cwd: Path | None = None, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [self.python, "-m", "jobctl", *args],
            user=user.uid,
            group=user.gid,
            extra_groups=list(os.getgrouplist(user.name, user.gid)),
            env=self.user_env(user, env),
            cwd=str(cwd or user.home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode:
            raise AssertionError(
                f"{user.name}: jobctl {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start_as_user(self, user: User, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        """The CLI as `user`, not waited for (read it with communicate())."""
        return subprocess.Popen(
            [self.python, "-m", "jobctl", *args],
            user=user.uid,
            group=user.gid,
            extra_groups=list(os.getgrouplist(user.name, user.gid)),
            env=self.user_env(user),
            cwd=str(cwd or user.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def launch(self, user: User, path: Path, *args: str) -> list[int]:
        proc = self.as_user(user, "launch", str(path), *args, check=True, cwd=path.parent)
        return [int(x) for x in proc.stdout.split()]

    def job(self, user: User, job_id: int) -> dict:
        return json.loads(self.as_user(user, "describe", str(job_id), "--json", check=True).stdout)

    def jobs(self) -> list[dict]:
        return json.loads(self.root("status", "--all", "--json", check=True).stdout)

    def supervisor_pid(self) -> int | None:
        try:
            info = json.loads((self.home / "run" / "supervisor.lock").read_text() or "{}")
            proc = psutil.Process(info["pid"])
            if abs(proc.create_time() - info["started"]) < 2 and proc.status() != psutil.STATUS_ZOMBIE:
                return info["pid"]
        except (OSError, ValueError, KeyError, psutil.Error):
            pass
        return None


def own_folder(user: User) -> Path:
    """A folder of the user's, for job files and what jobs write."""
    folder = Path(tempfile.mkdtemp(prefix=f"jcs-{user.name}-", dir="/tmp"))
    os.chown(folder, user.uid, user.gid)
    os.chmod(folder, 0o755)
    return folder


def job_file(user: User, folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    os.chown(path, user.uid, user.gid)
    return path


def one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def proc_ids(pid: int) -> tuple[list[int], list[int]]:
    """The Uid and Gid lines of /proc/PID/status: real, effective, saved, filesystem."""
    text = Path(f"/proc/{pid}/status").read_text()
    uid = next(line for line in text.splitlines() if line.startswith("Uid:")).split()[1:]
    gid = next(line for line in text.splitlines() if line.startswith("Gid:")).split()[1:]
    return [int(x) for x in uid], [int(x) for x in gid]


RAW_ASK = r"""
import json, socket, struct, sys
path = sys.argv[1]
def ask(payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if len(data) < 4:
        return {"closed": True}
    return json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])
print(json.dumps([ask(p) for p in json.load(sys.stdin)]))
"""


def raw_requests(queue: Shared, user: User, requests: list) -> list[dict]:
    """Send each request (an object, or a string sent as the body as it is) on the socket as `user`,
    one connection each, as a hostile client would; the supervisor's responses, in order."""
    proc = subprocess.run(
        [queue.python, "-c", RAW_ASK, str(queue.home / "run" / "supervisor.sock")],
        input=json.dumps(requests),
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refused(answer: dict, code: int, *words: str) -> None:
    """A one-line refusal with this exit code, saying these words."""
    assert answer.get("ok") is False, answer
    assert answer.get("exit_code") == code, answer
    assert "\n" not in answer["error"], answer
    for word in words:
        assert word in answer["error"], (word, answer)
