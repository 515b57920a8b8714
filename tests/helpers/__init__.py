"""What the tests share besides fixtures: runners for the CLI, polling, read-only database peeks.

`tests/conftest.py` holds only fixtures; test modules import from here (`from helpers import ...`;
pyproject.toml puts `tests/` on the path, so this works from a clean clone with `python -m pytest`).
"""

from helpers.cli import InProcessJobctl, Jobctl
from helpers.db import count_jobs
from helpers.files import FIXTURES, REPO, write_job
from helpers.processes import stop_everything
from helpers.waiting import wait_until

__all__ = [
    "FIXTURES",
    "REPO",
    "InProcessJobctl",
    "Jobctl",
    "count_jobs",
    "stop_everything",
    "wait_until",
    "write_job",
]
