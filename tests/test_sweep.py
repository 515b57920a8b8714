"""Sweeps of many short tasks (docs/benchmarks.md, "Sweep"): a large `--array` is recorded in a few
statements, each task still a compare-and-set with its events; `status` reads one task per array;
the supervisor's memory check walks only the jobs' own process trees."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing

from helpers import wait_until, write_job
from helpers.db import db_path

from jobctl.backends.local import proctree
from jobctl.store.database import Store


def _jobs(store: Store, n: int) -> list[int]:
    with store.write():
        spec_id = store.spec_id("h", "{}")
        return store.create_jobs(
            [(f"a-{i}", i) for i in range(n)],
            user="me",
            submitted_at=time.time(),
            spec_id=spec_id,
            priority=0,
            cpus=1.0,
            memory_mib=512,
            accelerators=None,
            num_nodes=1,
            labels=None,
            envs=None,
            backend="local",
            max_attempts=1,
            queue_deadline=None,
        )


def test_a_list_of_ids_moves_each_job_by_compare_and_set_with_its_event(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    ids = _jobs(store, 6)
    assert ids == list(range(ids[0], ids[0] + 6))
    with store.write():
        assert store.transition(ids, "PENDING", actor="me") == ids
        assert store.transition(ids[0], "KILLED") == "PENDING"  # one alone, the one path as ever
        assert store.transition(ids[1], "ACTIVE") == "PENDING"
        # only those still PENDING move; a KILLED job may not become ACTIVE, an ACTIVE one is not expected
        moved = store.transition(ids, "ACTIVE", expect={"PENDING"}, reason=None, fields={"attempt": 1})
        assert moved == ids[2:]
        assert store.transition(ids, "ACTIVE", expect={"PENDING"}) == []  # nothing left to move
    for job_id in ids:
        events = [(e.from_state, e.to_state) for e in reversed(store.recent_events(job_id, 10))]
        assert events[:2] == [(None, "CREATED"), ("CREATED", "PENDING")]
        assert len(events) == 3  # exactly one event per move that happened
    states = {job_id: store.job(job_id).state for job_id in ids}  # type: ignore[union-attr]
    assert states == {ids[0]: "KILLED", **dict.fromkeys(ids[1:], "ACTIVE")}
    assert all(store.job(j).attempt == 1 for j in ids[2:])  # type: ignore[union-attr]
    store.close()


def test_new_ids_never_reuse_those_of_removed_jobs(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    first = _jobs(store, 3)
    with store.write():
        store.conn.execute("DELETE FROM jobs WHERE id = ?", (first[-1],))  # as `rm` and retention do
    assert _jobs(store, 2) == [first[-1] + 1, first[-1] + 2]  # AUTOINCREMENT: an ID is never given twice
    store.close()


def test_a_large_array_is_recorded_at_once_with_every_task_and_event(jobctl, home):
    path = write_job(home, "t", 'run: "true"\n')
    t0 = time.monotonic()
    first = jobctl.launch(path, "--array", "3000", "--hold")  # held: nothing runs, the records stay as made
    took = time.monotonic() - t0
    with closing(sqlite3.connect(db_path(home))) as conn:
        rows = conn.execute("SELECT id, name, array_index, array_id, state FROM jobs ORDER BY id").fetchall()
        events = conn.execute("SELECT job_id, from_state, to_state FROM events ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(first, first + 3000))
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [(f"t-{i}", i, first, "SUSPENDED") for i in range(3000)]
    by_job: dict[int, list[tuple[str | None, str]]] = {}
    for job_id, src, to in events:
        by_job.setdefault(job_id, []).append((src, to))
    assert all(by_job[r[0]] == [(None, "CREATED"), ("CREATED", "SUSPENDED")] for r in rows)
    assert took < 30  # one transaction of a few statements (it took minutes-long pauses to fail this)


def test_status_shows_a_large_waiting_array_as_one_row_with_true_counts(jobctl, home):
    lone = jobctl.launch(write_job(home, "lone", "run: sleep 30\n"), "--hold")
    path = write_job(home, "sweep", 'run: "true"\n')
    first = jobctl.launch(path, "--array", "1500", "--hold")
    jobctl("start", str(first + 7), check=True)  # one task released: it runs and completes
    wait_until(lambda: jobctl.state(first + 7) == "COMPLETED", 30, "task 7 to complete")
    out = jobctl("status", check=True).stdout
    lines = [line for line in out.splitlines() if "sweep" in line or "lone" in line]
    assert len(lines) == 2, out  # the array is one row, however many tasks wait
    assert lines[0].split()[:2] == [str(first), "sweep[0-1499]"], out
    assert "1 completed" in lines[0] and "1499 suspended" in lines[0], out
    assert lines[1].split()[:2] == [str(lone), "lone"], out
    expanded = jobctl("status", "--expand", "--limit", "5000", check=True).stdout
    assert sum(1 for line in expanded.splitlines() if " sweep-" in line) == 1500


def test_the_memory_check_walks_a_runners_tree_through_proc():
    assert proctree.available()
    code = "import time; x = bytearray(60 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"
    proc = subprocess.Popen(["bash", "-c", f"{sys.executable} -c {code!r} & sleep 30 & wait"])
    try:
        wait_until(lambda: len(proctree.children(proc.pid)) == 2, 15, "two children")
        wait_until(lambda: proctree.tree_rss(proc.pid) >= 60 << 20, 15, "the tree to hold 60 MiB")
        assert proctree.tree_rss(proc.pid) < 200 << 20  # its own processes only, not the machine's
    finally:
        for pid in proctree.children(proc.pid):
            subprocess.run(["kill", str(pid)], check=False)
        proc.kill()
        proc.wait()
    assert proctree.children(proc.pid) == [] and proctree.rss(proc.pid) == 0  # gone: nothing, no error
