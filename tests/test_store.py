"""The store: migrations, WAL, modes, newer databases refused, errors as one line."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from jobctl.errors import StoreError
from jobctl.store.database import MIGRATIONS, SCHEMA_VERSION, Store


def test_migrates_from_nothing_and_records_versions(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    conn = store.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"jobs", "attempts", "workers", "events", "specs", "deps"} <= tables
    assert stat.S_IMODE((tmp_path / "db.sqlite").stat().st_mode) == 0o600
    store.close()
    Store(tmp_path / "db.sqlite").close()  # opening again migrates nothing and fails nothing


def test_each_migration_applies_on_top_of_the_previous(tmp_path):
    db = tmp_path / "step.sqlite"
    raw = sqlite3.connect(db)
    for number, script in enumerate(MIGRATIONS, 1):
        raw.executescript(script)
        raw.execute(f"PRAGMA user_version = {number}")
        raw.commit()
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


def test_a_newer_database_is_refused_untouched(tmp_path):
    db = tmp_path / "new.sqlite"
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="newer jobctl"):
        Store(db)
    assert db.read_bytes() == before


def test_garbage_file_is_a_clear_error(tmp_path):
    db = tmp_path / "junk.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="damaged|not a database"):
        Store(db)


def test_records_have_the_columns_of_their_tables(tmp_path):
    """A migration that adds a column must add the field too (records are read by column name)."""
    from jobctl.store.records import Attempt, Event, Job, Worker

    store = Store(tmp_path / "db.sqlite")
    for record, table in ((Job, "jobs"), (Attempt, "attempts"), (Worker, "workers"), (Event, "events")):
        columns = [row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")]
        assert list(record._fields) == columns, table
    store.close()


def _job(store: Store, state: str = "PENDING") -> int:
    with store.write():
        spec_id = store.spec_id("h", "{}")
        job_id = store.create_job(
            name="j",
            spec_id=spec_id,
            priority=0,
            cpus=1.0,
            memory_mib=512,
            accelerators=None,
            num_nodes=2,
            labels='{"team":"a"}',
            envs=None,
            array_index=None,
            backend="local",
            user="me",
            submitted_at=100.0,
            max_attempts=1,
            queue_deadline=None,
        )
        assert store.transition(job_id, state, actor="me", now=101.0) == "CREATED"
    return job_id


def test_queries_return_frozen_typed_records(tmp_path):
    from jobctl.store.records import Job

    store = Store(tmp_path / "db.sqlite")
    job_id = _job(store)
    job = store.job(job_id)
    assert isinstance(job, Job) and job.state == "PENDING" and job.num_nodes == 2 and job.submitted_at == 100.0
    with pytest.raises(AttributeError):
        job.state = "ACTIVE"  # records are read-only
    assert [j.id for j in store.live_jobs()] == [job_id] and store.finished_jobs() == []
    assert store.has_live("local") and not store.has_live("slurm") and store.count_live("local") == 1
    with store.write():
        store.add_attempt(job_id, 1, 102.0)
        store.add_workers(job_id, 1, 2)
        store.end_attempt(job_id, 1, 103.0, "completed", 0)
    (attempt,) = store.attempts(job_id)
    assert (attempt.n, attempt.started_at, attempt.ended_at, attempt.outcome) == (1, 102.0, 103.0, "completed")
    assert [(w.rank, w.state) for w in store.workers(job_id)] == [(0, "running"), (1, "running")]
    assert [(e.from_state, e.to_state, e.actor) for e in store.events(job_id)] == [
        (None, "CREATED", "me"),
        ("CREATED", "PENDING", "me"),
    ]
    store.close()


def test_undo_reverses_an_allowed_move_only(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job_id = _job(store)
    with store.write():
        assert store.transition(job_id, "KILLED", actor="me") == "PENDING"
        assert store.transition(job_id, "ACTIVE") is None  # KILLED -> ACTIVE is not in the table
        # the backend refused the kill: back to PENDING, the reverse of an allowed move
        assert (
            store.transition(
                job_id,
                "PENDING",
                expect={"KILLED"},
                undo=True,
                message="unchanged: refused",
                event_reason="backend_error",
                event_message="refused",
                fields={"ended_at": None},
            )
            == "KILLED"
        )
        assert store.transition(job_id, "COMPLETED", undo=True) is None  # neither way is allowed
    job = store.job(job_id)
    assert job is not None and (job.state, job.message, job.ended_at) == ("PENDING", "unchanged: refused", None)
    last = store.recent_events(job_id, 1)[0]
    assert (last.from_state, last.to_state, last.reason, last.message) == (
        "KILLED",
        "PENDING",
        "backend_error",
        "refused",
    )
    store.close()
