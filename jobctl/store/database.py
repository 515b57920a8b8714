"""The store: plain sqlite3, numbered migrations, WAL, and `BEGIN IMMEDIATE` for read-then-write.

Every change of a job's state goes through `transition`: a compare-and-set on the job's current
state, checked against the table in `states.py`, plus an appended event, in the caller's
transaction. sqlite3 errors are turned into one-line `StoreError`s at this layer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, overload

from jobctl.core import states
from jobctl.errors import StoreError
from jobctl.store.attempts import AttemptQueries
from jobctl.store.dashboard import DashboardQueries
from jobctl.store.history import HistoryQueries
from jobctl.store.jobs import JobQueries
from jobctl.store.notifications import NotificationQueries, enqueue
from jobctl.store.queues import QueueQueries
from jobctl.store.records import TERMINAL_SQL, dumps, loads
from jobctl.store.shared import SharedQueries
from jobctl.store.usage import UsageQueries

__all__ = ["DatabaseError", "MIGRATIONS", "SCHEMA_VERSION", "Store", "dumps", "explain", "loads", "transition"]

BUSY_TIMEOUT_MS = 30_000
DatabaseError = sqlite3.Error  # what a query raises outside `write()`/`read()`, which explain it

MIGRATIONS: list[str] = [
    # 1: the first schema
    f"""
    CREATE TABLE specs (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        detail TEXT,
        message TEXT,
        spec_id INTEGER NOT NULL REFERENCES specs(id),
        priority INTEGER NOT NULL DEFAULT 0,
        cpus REAL NOT NULL,
        memory_mib INTEGER NOT NULL,
        accelerators TEXT,
        num_nodes INTEGER NOT NULL DEFAULT 1,
        labels TEXT,
        envs TEXT,
        array_index INTEGER,
        backend TEXT NOT NULL DEFAULT 'local',
        backend_id TEXT,
        user TEXT NOT NULL,
        submitted_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 1,
        failures INTEGER NOT NULL DEFAULT 0,
        not_before REAL,
        alloc TEXT
    );
    CREATE INDEX jobs_name ON jobs(name);
    CREATE INDEX jobs_live ON jobs(state) WHERE state NOT IN {TERMINAL_SQL};
    CREATE TABLE deps (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        dep_id INTEGER NOT NULL,
        condition TEXT NOT NULL DEFAULT 'ok',
        PRIMARY KEY (job_id, dep_id)
    ) WITHOUT ROWID;
    CREATE INDEX deps_dep ON deps(dep_id);
    CREATE TABLE attempts (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        started_at REAL,
        ended_at REAL,
        runner_pid INTEGER,
        runner_start REAL,
        outcome TEXT,
        exit_code INTEGER,
        PRIMARY KEY (job_id, n)
    ) WITHOUT ROWID;
    CREATE TABLE workers (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        rank INTEGER NOT NULL,
        pid INTEGER,
        state TEXT NOT NULL,
        exit_code INTEGER,
        PRIMARY KEY (job_id, attempt, rank)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT,
        actor TEXT,
        message TEXT
    );
    CREATE INDEX events_job ON events(job_id);
    """,
    # 2: indexes for every query of the supervisor's tick, so its cost does not grow with history
    """
    ALTER TABLE jobs ADD COLUMN queue_deadline REAL;
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_holding ON jobs(id) WHERE alloc IS NOT NULL;
    CREATE INDEX jobs_queue ON jobs(priority DESC, submitted_at, id) WHERE state IN ('PENDING', 'RETRYING');
    CREATE INDEX jobs_deadline ON jobs(queue_deadline) WHERE queue_deadline IS NOT NULL;
    """,
    # 3: everyday queueing (SPEC section 9): named queues, start times, array throttles; see store/queues.py
    """
    ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE jobs ADD COLUMN start_at REAL;
    ALTER TABLE jobs ADD COLUMN array_id INTEGER;
    ALTER TABLE jobs ADD COLUMN array_throttle INTEGER;
    CREATE INDEX jobs_array ON jobs(array_id) WHERE array_id IS NOT NULL;
    CREATE INDEX jobs_start_at ON jobs(start_at) WHERE start_at IS NOT NULL;
    CREATE INDEX jobs_pending_queue ON jobs(queue, reason) WHERE state = 'PENDING';
    CREATE TABLE queues (
        name TEXT PRIMARY KEY,
        max_running INTEGER,
        cpus REAL,
        gpus INTEGER,
        paused INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    # 4: notifications (an outbox, see store/notifications.py) and per-attempt usage (SPEC sections 10, 11)
    """
    ALTER TABLE jobs ADD COLUMN notify TEXT;
    ALTER TABLE attempts ADD COLUMN usage TEXT;
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        attempt INTEGER,
        created_at REAL NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending',
        tries INTEGER NOT NULL DEFAULT 0,
        next_try_at REAL NOT NULL,
        claim_pid INTEGER,
        claim_start REAL,
        claimed_at REAL,
        last_error TEXT,
        done_at REAL
    );
    CREATE INDEX notifications_due ON notifications(next_try_at) WHERE outcome = 'pending';
    CREATE INDEX notifications_job ON notifications(job_id);
    CREATE TABLE notification_tries (
        id INTEGER PRIMARY KEY,
        notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        ok INTEGER NOT NULL,
        message TEXT
    );
    CREATE INDEX notification_tries_job ON notification_tries(job_id);
    """,
    # 5: an array of 10,000 waiting tasks as one status row (SPEC section 9) read from indexes alone: each
    # array's counts and its newest unfinished task without a table row per task, and the other live jobs
    # without stepping over the arrays' tasks (jobs_array_tasks leads with array_id: it replaces jobs_array)
    f"""
    CREATE INDEX jobs_array_tasks ON jobs(array_id, state, backend, array_index, started_at, ended_at)
        WHERE array_id IS NOT NULL;
    CREATE INDEX jobs_live_single ON jobs(state) WHERE array_id IS NULL AND state NOT IN {TERMINAL_SQL};
    DROP INDEX jobs_array;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def explain(exc: sqlite3.Error, db: Path) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(f"{db}: database is busy (locked by another jobctl for over {BUSY_TIMEOUT_MS // 1000} s)")
    if "full" in text or ("disk I/O" in text and _disk_full(db)):
        return StoreError(f"{db}: the disk is full; nothing was changed (free some space and try again)")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{db}: the database is read-only; check the permissions of {db.parent}")
    if "unable to open" in text:
        return StoreError(f"{db}: cannot open the database; check that {db.parent} exists and is writable")
    if "malformed" in text or "not a database" in text:
        return StoreError(f"{db}: the database file is damaged ({text})")
    return StoreError(f"{db}: database error: {text}")


def _disk_full(db: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(db.parent).free < 1024 * 1024
    except OSError:
        return False


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class Store(
    JobQueries,
    AttemptQueries,
    HistoryQueries,
    DashboardQueries,
    QueueQueries,
    NotificationQueries,
    UsageQueries,
    SharedQueries,
):
    """One connection to the jobctl database. Cheap to open; not shared between processes.

    The named queries (jobctl/store/jobs.py, attempts.py, history.py, dashboard.py, queues.py,
    notifications.py, usage.py, shared.py) run on this connection, in
    whatever transaction the caller opened with `write()` or `read()`; every change of a job's
    state goes through `transition`.
    """

    def __init__(self, db: Path):
        self.db = db
        self.read_only = db.exists() and _read_only_fs(db.parent)
        try:
            if not self.read_only:
                db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not db.exists():
                    os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreError(f"{db}: cannot create the database ({exc.strerror})") from None
        try:
            if self.read_only:  # a read-only file system: reading still works, writing says why not
                self.conn = self._open_read_only(db)
            else:
                self.conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise explain(exc, db) from None

    @staticmethod
    def _open_read_only(db: Path) -> sqlite3.Connection:
        # With its -wal and -shm files present SQLite reads a WAL database in place; without them
        # (a clean shutdown checkpointed everything) only `immutable` can open it.
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error:
            return sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True, isolation_level=None)

    def close(self, checkpoint: bool = False) -> None:
        if checkpoint and not self.read_only:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db}: written by a newer jobctl (schema {version}; this one knows up to {SCHEMA_VERSION}); "
                "upgrade jobctl, nothing was changed"
            )
        if version == SCHEMA_VERSION or self.read_only:
            return
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, time.time()))
                conn.execute(f"PRAGMA user_version = {number}")

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A read-then-write transaction: BEGIN IMMEDIATE takes the write lock up front."""
        if self.read_only:
            raise StoreError(f"{self.db}: the database is on a read-only file system; nothing was changed")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise explain(exc, self.db) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise explain(exc, self.db) from None
        except BaseException:
            self._rollback()
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        try:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise explain(exc, self.db) from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def savepoint(self, name: str) -> Iterator[None]:
        """A nested step of a write transaction: rolled back alone when it raises, then re-raised."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    @overload
    def transition(self, job_id: int, to: str, **kw: Any) -> str | None: ...
    @overload
    def transition(self, job_id: list[int], to: str, **kw: Any) -> list[int]: ...
    def transition(self, job_id: int | list[int], to: str, **kw: Any) -> str | None | list[int]:
        """Change a job's state (see `transition`) in the open write transaction; a list of IDs:
        the same move for each of them (each still a compare-and-set with its event)."""
        return transition(self.conn, job_id, to, **kw)


def transition(
    conn: sqlite3.Connection,
    job_id: int | list[int],
    to: str,
    *,
    expect: frozenset[str] | set[str] | tuple[str, ...] | None = None,
    reason: str | None = None,
    detail: str | None = None,
    message: str | None = None,
    actor: str = "system",
    now: float | None = None,
    fields: dict[str, Any] | None = None,
    undo: bool = False,
    event_reason: str | None = None,
    event_message: str | None = None,
) -> str | None | list[int]:
    """Compare-and-set a job's state inside the caller's write transaction.

    Returns the state the job was in, or None when the job is missing, not in `expect`, or the
    table does not allow the move (the caller decides whether that is an error). `undo`: also the
    reverse of a move the table allows (a backend refused what was just recorded). The event gets
    `event_reason` and `event_message` where given, else the job's own reason and message.

    A list of job IDs makes the same move for each (a launch of a 10,000-task array): the same
    checks, compare-and-sets and events, in a few statements instead of three per job; returns the
    IDs that moved.
    """
    now = time.time() if now is None else now
    many = not isinstance(job_id, int)
    ids = list(job_id) if many else [job_id]  # type: ignore[arg-type]
    found: list[tuple[int, str, str | None]] = []
    for lo in range(0, len(ids), 500):
        chunk = ids[lo : lo + 500]
        found += conn.execute(
            f"SELECT id, state, notify FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk
        ).fetchall()
    moves = [
        (jid, src, notify)
        for jid, src, notify in found
        if (expect is None or src in expect) and (states.allowed(src, to) or (undo and states.allowed(to, src)))
    ]
    if not moves:
        return [] if many else None
    values = {"state": to, "reason": reason, "detail": detail, "message": message, **(fields or {})}
    if to in states.TERMINAL and "ended_at" not in values:
        values["ended_at"] = now
    if to in states.TERMINAL or to == states.ACTIVE:
        values.setdefault("queue_deadline", None)  # no longer waiting in the queue
    assignments = ", ".join(f"{key} = ?" for key in values)
    cursor = conn.executemany(
        f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?", [(*values.values(), j, src) for j, src, _ in moves]
    )
    if cursor.rowcount != len(moves):  # outside a write transaction another process won some: keep the winners
        if not many:
            return None
        now_in = {j for j, state in _states(conn, [j for j, _, _ in moves]) if state == to}
        moves = [m for m in moves if m[0] in now_in]
    conn.executemany(
        "INSERT INTO events (job_id, at, from_state, to_state, reason, actor, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                j,
                now,
                src,
                to,
                reason if event_reason is None else event_reason,
                actor,
                message if event_message is None else event_message,
            )
            for j, src, _ in moves
        ],
    )
    for j, _, notify in moves:
        if notify:  # the job asks to be told of some states: record the deliveries with the change itself
            enqueue(conn, j, notify, to, states.status_text(to, detail), now)
    return [j for j, _, _ in moves] if many else moves[0][1]


def _states(conn: sqlite3.Connection, ids: list[int]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for lo in range(0, len(ids), 500):
        chunk = ids[lo : lo + 500]
        out += conn.execute(f"SELECT id, state FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
    return out
