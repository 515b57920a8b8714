"""Read-only looks at a home's SQLite file, for asserting what was (not) recorded.

Tests never write the database through here; a test that stages a database by hand says so itself.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def db_path(home: Path) -> Path:
    return home / "data" / "jobctl.db"


def count_jobs(home: Path) -> int:
    """Rows in the jobs table, read straight from the SQLite file (0 when there is no database yet)."""
    db = db_path(home)
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as conn:  # a plain connection, as a user's sqlite3 would open it
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
