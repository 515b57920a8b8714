"""The transition table, walked pair by pair against a real SQLite store."""

from __future__ import annotations

import itertools
import time

import pytest

from jobctl.core import states
from jobctl.store.database import Store, transition


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "jobctl.db")
    yield s
    s.close()


def new_job(store: Store, state: str) -> int:
    with store.write() as conn:
        conn.execute("INSERT OR IGNORE INTO specs (id, hash, body) VALUES (1, 'h', '{}')")
        cur = conn.execute(
            "INSERT INTO jobs (name, state, spec_id, cpus, memory_mib, user, submitted_at) "
            "VALUES ('j', ?, 1, 1, 1024, 'me', ?)",
            (state, time.time()),
        )
        return cur.lastrowid


@pytest.mark.parametrize("src,dst", list(itertools.product(states.ALL_STATES, states.ALL_STATES)))
def test_every_pair_follows_the_table(store, src, dst):
    job_id = new_job(store, src)
    with store.write() as conn:
        before = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        result = transition(conn, job_id, dst, reason="r", actor="tester")
    state, events = store.conn.execute(
        "SELECT state, (SELECT COUNT(*) FROM events) FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if states.allowed(src, dst):
        assert result == src and state == dst and events == before + 1
        ev = store.conn.execute("SELECT from_state, to_state, reason, actor FROM events ORDER BY id DESC").fetchone()
        assert tuple(ev) == (src, dst, "r", "tester")
    else:
        assert result is None and state == src and events == before


def test_compare_and_set_refuses_a_stale_expectation(store):
    job_id = new_job(store, states.PENDING)
    with store.write() as conn:
        assert transition(conn, job_id, states.ACTIVE, expect={states.PENDING}) == states.PENDING
    with store.write() as conn:  # a second writer that still believes the job is PENDING loses
        assert transition(conn, job_id, states.SUSPENDED, expect={states.PENDING}) is None
    assert store.conn.execute("SELECT state FROM jobs").fetchone()[0] == states.ACTIVE


def test_terminal_states_are_final_except_retry():
    assert states.TRANSITIONS[states.COMPLETED] == frozenset()
    for state in (states.FAILED, states.KILLED):
        assert states.TRANSITIONS[state] == {states.PENDING, states.BLOCKED}


@pytest.mark.parametrize("system", sorted(states.REFERENCE_MAPPING))
def test_reference_states_map_onto_ours(system):
    """SPEC section 3: every state of the reference systems has a place in ours."""
    for theirs, (ours, reason) in states.REFERENCE_MAPPING[system].items():
        assert ours in states.ALL_STATES, (system, theirs)
        assert (
            reason is None
            or reason in states.REASON_TEXT
            or reason in {"exit_code", "workers_failed", "user", "system", "dependency"}
        ), (system, theirs, reason)
    expected = {
        "konduktor": 7,
        "qube": 8,
        "cortex": 9,
        "osmo": 11,
        "bacalhau": 5,
        "slurm": 10,
    }
    assert len(states.REFERENCE_MAPPING[system]) == expected[system]


def test_wait_exit_codes():
    assert states.wait_exit_code(states.COMPLETED, None, 0) == 0
    assert states.wait_exit_code(states.FAILED, "exit_code", 3) == 3
    assert states.wait_exit_code(states.FAILED, "timed_out", 143) == 124
    assert states.wait_exit_code(states.FAILED, "out_of_memory", 137) == 137
    assert states.wait_exit_code(states.KILLED, "user", None) == 137
    assert states.wait_exit_code(states.FAILED, "upstream_failed", None) == 1
