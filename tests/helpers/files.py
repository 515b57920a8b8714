"""Where things are (the repository, the SkyPilot fixtures) and how a test writes a job file."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("JOBCTL_FIXTURES", REPO.parent / "shared" / "fixtures" / "skypilot"))


def write_job(folder: Path, name: str, text: str) -> Path:
    """`folder/name.yaml` holding `text`; returns its path."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path
