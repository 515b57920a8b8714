"""The supervisor's pass decides for the head of its queue window first (jobctl/engine/local.py,
`Engine.start_waiting`) and reads the rest of the window in full only when it could change anything.

These tests hold it to that promise: the same homes, built job by job from the same seed, get one
pass that may stop at the head and one that always schedules the whole window; every job's state,
wait reason, message and allocation must come out the same. Real stores, real passes, no runners
(`run=False`): the passes are compared, not the jobs.
"""

from __future__ import annotations

import random
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers.db import db_path
from helpers.engine import SupervisorPass

SEEDS = range(40)


def job_text(rng: random.Random) -> str:
    text = (
        f"run: 'true'\nresources:\n  cpus: {rng.choice([1, 1, 2])}\n  memory: {rng.choice(['1GiB', '2GiB', '3GiB'])}\n"
    )
    if rng.random() < 0.4:
        text += f"timeout: {rng.choice(['30s', '10m'])}\n"
    return text


def rows_of(home: Path) -> list[tuple]:
    with closing(sqlite3.connect(db_path(home))) as conn:
        return conn.execute(
            "SELECT id, state, reason, detail, message, alloc, attempt FROM jobs ORDER BY id"
        ).fetchall()


def build(home: Path, seed: int, look: int, now: float) -> tuple[list[tuple], list[int]]:
    """Three passes over a home made from `seed`; every job row after them, and how many waiting jobs
    each pass read in full."""
    from jobctl.engine.local import QUEUE_WINDOW

    rng = random.Random(seed)
    passes = SupervisorPass(home, cpus=rng.choice([2, 3, 4, 12]), memory="32GiB")
    passes.engine.first_look = look if look else QUEUE_WINDOW
    try:
        for i in range(rng.randint(1, 3)):
            passes.submit(job_text(rng), f"a{i}", priority=rng.choice([None, None, 5]), array=str(rng.randint(1, 90)))
        looked = [passes.tick(now, run=False).looked]
        for i in range(rng.randint(0, 3)):
            array = rng.choice([None, str(rng.randint(2, 80)), "0-19%2"])
            passes.submit(job_text(rng), f"b{i}", priority=rng.choice([None, 3, 8]), array=array)
        looked.append(passes.tick(now + 1, run=False).looked)
        looked.append(passes.tick(now + 2, run=False).looked)
    finally:
        passes.close()
    return rows_of(home), looked


def test_deciding_for_the_head_first_changes_no_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head_only = 0
    for seed in SEEDS:
        now = time.time() + 5
        results = {}
        for look in (8, 0):  # 0: the whole window every time
            home = tmp_path / f"{seed}-{look}"
            home.mkdir()
            monkeypatch.setenv("JOBCTL_HOME", str(home))
            results[look] = build(home, seed, look, now)
        (rows, looked), (expected, _) = results[8], results[0]
        assert rows == expected, f"seed {seed}: the head-first pass decided differently"
        head_only += sum(1 for n in looked if n == 8)
    assert head_only >= 5, f"only {head_only} passes stopped at the head: the test proves little"


def test_a_long_array_is_scheduled_from_the_head_and_its_tasks_say_why_they_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBCTL_HOME", str(tmp_path))
    passes = SupervisorPass(tmp_path, cpus=2)
    try:
        ids = passes.submit("run: 'true'\nresources: {cpus: 1, memory: 1GiB}\n", "sweep", array="100")
        actions = passes.tick(time.time() + 1, run=False)
        assert actions.looked == 8  # two started from the head; the rest of the window can only wait
        states = [passes.job(job_id) for job_id in ids[:64]]
        assert [row["state"] for row in states[:2]] == ["ACTIVE", "ACTIVE"]
        assert {(row["state"], row["reason"]) for row in states[2:]} == {("PENDING", "resources")}
    finally:
        passes.close()


def test_when_the_whole_head_starts_the_next_job_still_preempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No job of the head is blocked: the first of the rest is, and it may preempt lower-priority jobs."""
    from jobctl.engine.local import QUEUE_WINDOW

    now = time.time() + 5
    results = {}
    for look in (8, QUEUE_WINDOW):
        home = tmp_path / str(look)
        home.mkdir()
        monkeypatch.setenv("JOBCTL_HOME", str(home))
        passes = SupervisorPass(home, cpus=12, memory="32GiB")
        passes.engine.first_look = look
        try:
            low = passes.submit("run: 'true'\nresources: {cpus: 1, memory: 1GiB}\n", "low", array="4")
            passes.tick(now, run=False)
            passes.submit("run: 'true'\nresources: {cpus: 1, memory: 1GiB}\n", "high", priority=8, array="12")
            passes.tick(now + 1, run=False)
            preempted = [job_id for job_id in low if passes.job(job_id)["state"] == "SUSPENDED"]
        finally:
            passes.close()
        results[look] = rows_of(home), preempted
    assert results[8] == results[QUEUE_WINDOW]
    assert results[8][1], "the ninth high-priority task preempts a low-priority one"
