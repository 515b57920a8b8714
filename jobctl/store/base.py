"""What the query mixins of the Store share: the connection, and records built from rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from jobctl.store.records import Job, build, build_all, columns

JOB_COLUMNS = columns(Job)
JOB_COLUMNS_J = columns(Job, "j")  # for joins, where the jobs table is `j`


class Queries:
    """Base of the query mixins; `Store` provides the open connection."""

    conn: sqlite3.Connection

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Rows as plain tuples (cheaper than sqlite3.Row), to build records from."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

    def _jobs(self, sql: str, params: Sequence[Any] = ()) -> list[Job]:
        return build_all(Job, self._tuples(sql, params))

    def _job(self, sql: str, params: Sequence[Any] = ()) -> Job | None:
        row = self._tuples(sql, params).fetchone()
        return None if row is None else build(Job, row)
