"""Shared test fixtures: a private JOBCTL_HOME per test and a way to run the real CLI.

Every test runs real `jobctl` processes (python -m jobctl) against a temporary home, so the
supervisor, the runners and the jobs are real processes too. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("JOBCTL_FIXTURES", REPO.parent / "shared" / "fixtures" / "skypilot"))


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class Jobctl:
    """Runs the real CLI against one home."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {**os.environ, "JOBCTL_HOME": str(home), "NO_COLOR": "1"}
        self.env.pop("JOBCTL_DEBUG", None)

    def __call__(
        self,
        *args: str,
        check: bool | None = None,
        timeout: float = 60,
        input: str | None = None,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "jobctl", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"jobctl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def launch(self, path: Path | str, *args: str) -> int:
        proc = self("launch", str(path), *args, check=True)
        return int(proc.stdout.split()[0])

    def job(self, job_id: int | str) -> dict:
        proc = self("describe", str(job_id), "--json", check=True)
        return json.loads(proc.stdout)

    def state(self, job_id: int | str) -> str:
        return self.job(job_id)["state"]

    def wait_state(self, job_id: int | str, *states: str, timeout: float = 15.0) -> dict:
        return wait_until(
            lambda: (j := self.job(job_id))["state"] in states and j, timeout, f"job {job_id} to reach {states}"
        )

    def config(self, key: str, value: str) -> None:
        self("config", "set", key, value, check=True)


def count_jobs(home: Path) -> int:
    """Rows in the jobs table, read straight from the SQLite file (0 when there is no database yet)."""
    import sqlite3

    db = home / "data" / "jobctl.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def write_job(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def home():
    # short path: the supervisor's socket lives under it and AF_UNIX paths are limited in length
    path = Path(tempfile.mkdtemp(prefix="jc-", dir="/tmp"))
    yield path
    _stop_everything(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def jobctl(home) -> Jobctl:
    return Jobctl(home)


def _stop_everything(home: Path) -> None:
    """Stop the supervisor of this home and any process still running from its jobs."""
    import psutil

    lock = home / "run" / "supervisor.lock"
    try:
        info = json.loads(lock.read_text() or "{}")
        proc = psutil.Process(info["pid"])
        if abs(proc.create_time() - info["started"]) < 2:
            proc.kill()
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    logs = home / "state" / "logs"
    for runner in logs.glob("*/*/runner.json"):
        try:
            info = json.loads(runner.read_text())
            proc = psutil.Process(info["pid"])
            if abs(proc.create_time() - info["start"]) < 0.01:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):  # TypeError: a job wrote garbage there
            pass
