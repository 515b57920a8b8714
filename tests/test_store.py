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
