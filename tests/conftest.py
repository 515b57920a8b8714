"""Shared fixtures: a private JOBCTL_HOME per test and two ways to run the CLI against it.

`jobctl` runs real `jobctl` processes (python -m jobctl) against a temporary home, so the
supervisor, the runners and the jobs are real processes too. Nothing is mocked. `jobctl_inproc`
runs the same entry point inside the test process, for calls where a process adds nothing (see
tests/helpers/cli.py). Everything else the tests share lives in the `helpers` package.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import InProcessJobctl, Jobctl, stop_everything

# A suite started as a background job of a script inherits SIGINT ignored, and so would every
# process a test starts: the Ctrl-C tests would then test nothing. Run as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The width of whatever terminal runs the tests must not change what the commands print: tests that
# want a width (the 80-column ones) set COLUMNS themselves.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
# Every test starts real `python -m jobctl` processes: with PYTHONDONTWRITEBYTECODE set (as some
# shells and CI images do), each would compile jobctl's modules again, a few hundred ms per call.
# They run with the bytecode cache, as an installed jobctl does.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.fixture
def home() -> Iterator[Path]:
    # short path: the supervisor's socket lives under it and AF_UNIX paths are limited in length
    path = Path(tempfile.mkdtemp(prefix="jc-", dir="/tmp"))
    yield path
    stop_everything(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def jobctl(home: Path) -> Jobctl:
    return Jobctl(home)


@pytest.fixture
def jobctl_inproc(home: Path) -> InProcessJobctl:
    return InProcessJobctl(home)


# -- a queue shared by a team (tests/helpers/shared.py): two real users, root's shared supervisor ------
@pytest.fixture(scope="module")
def users():
    from helpers.shared import add_user

    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    made = []
    try:
        for who in ("a", "b"):
            made.append(add_user(f"jc{who}{tag}"))
        yield made
    finally:
        for user in made:
            subprocess.run(["pkill", "-KILL", "-u", str(user.uid)], capture_output=True)  # by uid: only theirs
            subprocess.run(["userdel", "-r", user.name], capture_output=True)


@pytest.fixture(scope="module")
def interpreter(users):
    from helpers.shared import interpreter_env

    made: list[Path] = []  # a readable copy of the package, when the checkout is out of the users' reach
    try:
        yield interpreter_env(users, made)
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shared(interpreter):
    from helpers.shared import Shared

    home = Path(tempfile.mkdtemp(prefix="jcs-", dir="/tmp"))
    os.chmod(home, 0o755)  # users reach the socket folder and their logs through it
    queue = Shared(home, interpreter)
    queue.root("config", "set", "capacity.cpus", "8", check=True)
    queue.root("config", "set", "capacity.memory", '"16GiB"', check=True)
    queue.root("config", "set", "capacity.accelerators", "{H100 = 4}", check=True)
    queue.root("supervisor", "start", "--shared", check=True)
    from helpers import wait_until

    wait_until(queue.supervisor_pid, 30, "the shared supervisor")
    yield queue
    stop_everything(home)
    shutil.rmtree(home, ignore_errors=True)
