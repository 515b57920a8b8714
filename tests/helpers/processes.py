"""Cleaning up after a test: the supervisor of a home and whatever its jobs left running."""

from __future__ import annotations

import json
from pathlib import Path


def stop_everything(home: Path) -> None:
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
