"""What both sides of the Slurm backend share (submitting and mirroring in slurm_sync.py, stop/start/kill
in slurm_control.py): the per-session pace of squeue calls, and the files of an attempt's folder."""

from __future__ import annotations

import os
from pathlib import Path

from jobctl.backends.base import Session


def poll_state(service: Session) -> dict[str, float]:
    """Per service (one CLI process): at most one squeue per gap, 0.5 s growing to 5 s."""
    if not hasattr(service, "slurm_poll"):
        setattr(service, "slurm_poll", {"last": 0.0, "gap": 0.0, "down": -60.0})  # noqa: B010 - not in Session
    poll: dict[str, float] = getattr(service, "slurm_poll")  # noqa: B009
    return poll


def new_attempt_dir(service: Session, job_id: int, attempt: int) -> None:
    """The attempt's log folder, and the number the batch script reads to find it (see batch_script)."""
    service.paths.attempt_dir(job_id, attempt).mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_text(service.paths.job_dir(job_id) / "slurm-attempt", f"{attempt}\n")


def write_private_text(path: Path, text: str) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)
