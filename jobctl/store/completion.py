"""The one read shell completion makes: job IDs and names, read-only, never waiting long."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def recent_jobs(db: Path, limit: int = 500) -> list[tuple[int, str]]:
    """(ID, name) of the newest jobs; [] when the database cannot be read at once (best effort)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        rows = conn.execute("SELECT id, name FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        conn.close()
    except sqlite3.Error:
        return []
    return [(int(job_id), str(name)) for job_id, name in rows]
