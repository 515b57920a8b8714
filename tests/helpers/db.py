"""Read-only looks at a home's SQLite file, for asserting what was (not) recorded.

Tests never write the database through here; a test that stages a database by hand says so itself.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any


def db_path(home: Path) -> Path:
    return home / "data" / "jobctl.db"


def count_jobs(home: Path) -> int:
    """Rows in the jobs table, read straight from the SQLite file (0 when there is no database yet)."""
    db = db_path(home)
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as conn:  # a plain connection, as a user's sqlite3 would open it
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def job_row(home: Path, job_id: int) -> dict[str, Any]:
    """One row of the jobs table as a dict (KeyError when there is no such job)."""
    with closing(sqlite3.connect(db_path(home))) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise KeyError(job_id)
    return dict(row)
