"""The notification outbox (SPEC section 10): every SQL statement about notifications.

A delivery is recorded before it is tried: `transition` (store/database.py) calls `enqueue` in
the same transaction as the state change that triggers it, so a change that is committed always
has its deliveries, and a crash can only lose a try, never a delivery. The supervisor picks due
rows (`due_notifications`), a delivery process claims one (`claim_notification`: its PID and start
time, so a later supervisor can tell a claim of a live process from one left by a dead one) and
records the outcome of each try (`record_notification_try`): delivered, or failed with a next try
after a backoff, or given up after the last.

Tables (migration 3): `notifications` (one row per job, state reached and target; the record
`Notification`) and `notification_tries` (one row per try, `NotificationTry`: what `describe`
shows). `Store` has these methods through `NotificationQueries`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from jobctl.store.base import Queries
from jobctl.store.records import Notification, NotificationTry, build, build_all, columns

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_TRIES = 5
BACKOFF = (5.0, 30.0, 120.0, 600.0)  # seconds before try 2, 3, 4, 5
CLAIM_STALE_AFTER = 120.0  # a claim older than this is taken over even if its process still lives

_COLUMNS = columns(Notification)


def enqueue(conn: sqlite3.Connection, job_id: int, notify: str, state: str, status: str, now: float) -> int:
    """Record the deliveries a job's move to `state` asks for (inside `transition`'s transaction).

    `notify` is the job's `jobs.notify` JSON. Returns how many were recorded."""
    from jobctl.core.notify import wants

    try:
        targets = json.loads(notify)
    except ValueError:
        return 0
    chosen = wants(targets if isinstance(targets, list) else [], state)
    if not chosen:
        return 0
    exit_code, attempt = conn.execute("SELECT exit_code, attempt FROM jobs WHERE id = ?", (job_id,)).fetchone()
    conn.executemany(
        "INSERT INTO notifications (job_id, target, state, status, exit_code, attempt, created_at, next_try_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(job_id, json.dumps(t, separators=(",", ":")), state, status, exit_code, attempt, now, now) for t in chosen],
    )
    return len(chosen)


class NotificationQueries(Queries):
    """The outbox's reads and writes; each runs in the caller's transaction."""

    def set_notify_targets(self, job_id: int, targets: list[dict[str, Any]]) -> None:
        """Remember what a job asks to be told (its own `notify:` and the config's, merged at launch)."""
        self.conn.execute(
            "UPDATE jobs SET notify = ? WHERE id = ?",
            (json.dumps(targets, separators=(",", ":")) if targets else None, job_id),
        )

    def notify_targets(self, job_id: int) -> list[dict[str, Any]]:
        """The targets a job was launched with ([] when none)."""
        row = self._tuples("SELECT notify FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return list(json.loads(row[0])) if row and row[0] else []

    def due_notifications(self, now: float, limit: int = 32) -> list[Notification]:
        """Pending deliveries whose next try is due, oldest first (claimed ones included: the caller
        checks whether their claimant still lives)."""
        return build_all(
            Notification,
            self._tuples(
                f"SELECT {_COLUMNS} FROM notifications INDEXED BY notifications_due"
                " WHERE outcome = 'pending' AND next_try_at <= ? ORDER BY next_try_at, id LIMIT ?",
                (now, limit),
            ),
        )

    def next_notification_after(self, now: float) -> float | None:
        """When the next pending delivery that is not due yet is due (None: none is waiting)."""
        row = self._tuples(
            "SELECT MIN(next_try_at) FROM notifications WHERE outcome = 'pending' AND next_try_at > ?", (now,)
        ).fetchone()
        return row[0] if row else None

    def pending_notifications(self) -> int:
        """How many deliveries wait to be tried (they keep a supervisor up)."""
        return int(self._tuples("SELECT COUNT(*) FROM notifications WHERE outcome = 'pending'").fetchone()[0])

    def notification(self, notification_id: int) -> Notification | None:
        row = self._tuples(f"SELECT {_COLUMNS} FROM notifications WHERE id = ?", (notification_id,)).fetchone()
        return None if row is None else build(Notification, row)

    def claim_notification(
        self, notification_id: int, pid: int, start: float, now: float, seen_pid: int | None
    ) -> Notification | None:
        """Take a pending delivery for one try (inside a write transaction). `seen_pid`: the claimant the
        caller saw and found dead (None: it saw no claim); a claim changed meanwhile is not taken."""
        cursor = self.conn.execute(
            "UPDATE notifications SET claim_pid = ?, claim_start = ?, claimed_at = ?"
            " WHERE id = ? AND outcome = 'pending' AND claim_pid IS ?",
            (pid, start, now, notification_id, seen_pid),
        )
        if cursor.rowcount != 1:
            return None
        return self.notification(notification_id)

    def record_notification_try(
        self, notification_id: int, ok: bool, message: str | None, now: float
    ) -> tuple[str, float | None]:
        """The outcome of one try (inside a write transaction): ('delivered', None), ('pending', next
        try time) or ('failed', None) after the last try. The try is kept for `describe`."""
        row = self.notification(notification_id)
        if row is None or row.outcome != PENDING:
            return (row.outcome if row else FAILED), None
        tries = row.tries + 1
        self.conn.execute(
            "INSERT INTO notification_tries (notification_id, job_id, at, ok, message) VALUES (?, ?, ?, ?, ?)",
            (notification_id, row.job_id, now, int(ok), message),
        )
        if ok:
            outcome, next_try = DELIVERED, None
        elif tries >= MAX_TRIES:
            outcome, next_try = FAILED, None
        else:
            outcome, next_try = PENDING, now + BACKOFF[min(tries - 1, len(BACKOFF) - 1)]
        self.conn.execute(
            "UPDATE notifications SET outcome = ?, tries = ?, next_try_at = COALESCE(?, next_try_at),"
            " claim_pid = NULL, claim_start = NULL, claimed_at = NULL, last_error = ?, done_at = ? WHERE id = ?",
            (
                outcome,
                tries,
                next_try,
                None if ok else message,
                None if outcome == PENDING else now,
                notification_id,
            ),
        )
        return outcome, next_try

    def notifications_of(self, job_id: int) -> tuple[list[Notification], list[NotificationTry]]:
        """A job's deliveries and every try of them, oldest first (for `describe`)."""
        rows = build_all(
            Notification,
            self._tuples(f"SELECT {_COLUMNS} FROM notifications WHERE job_id = ? ORDER BY id", (job_id,)),
        )
        tries = self._tuples(
            "SELECT notification_id, at, ok, message FROM notification_tries WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        return rows, [NotificationTry(t[0], t[1], bool(t[2]), t[3]) for t in tries]

    def workdir_of(self, job_id: int) -> str | None:
        """The job's workdir from its spec (a notify command runs there)."""
        row = self._tuples(
            "SELECT s.body FROM jobs j JOIN specs s ON s.id = j.spec_id WHERE j.id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            workdir = json.loads(row[0]).get("workdir")
        except (ValueError, AttributeError):
            return None
        return workdir if isinstance(workdir, str) else None
