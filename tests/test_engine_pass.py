"""One supervisor pass (jobctl/engine/local.py) in the test process, with an injected clock.

A real Engine over a real SQLite store in a private home; jobs are recorded as `jobctl launch`
records them, and the jobs a pass starts run in real runners forked through the real LocalBackend.
The clock is the `now` each pass is given, so queue timeouts and backfill reservations are tested
at exact instants, without waiting for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.engine import SupervisorPass


@pytest.fixture
def engine_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JOBCTL_HOME", str(home))  # a runner finds its home here
    return home


@pytest.fixture
def one_cpu(engine_home: Path) -> Iterator[SupervisorPass]:
    passes = SupervisorPass(engine_home, cpus=1)
    yield passes
    passes.close()


@pytest.fixture
def three_cpus(engine_home: Path) -> Iterator[SupervisorPass]:
    passes = SupervisorPass(engine_home, cpus=3)
    yield passes
    passes.close()


def gated(home: Path, name: str) -> tuple[Path, str]:
    """A gate file and a command that runs until the gate exists."""
    gate = home / f"{name}.gate"
    return gate, f"while [ ! -e {gate} ]; do sleep 0.05; done"


def test_a_queued_job_starts_when_capacity_is_free_and_waits_otherwise(one_cpu: SupervisorPass) -> None:
    gate, until_gate = gated(one_cpu.home, "first")
    (first,) = one_cpu.submit(f"resources: {{cpus: 1}}\nrun: {until_gate}\n", "first")
    (second,) = one_cpu.submit("resources: {cpus: 1}\nrun: echo second\n", "second")
    now = time.time()

    actions = one_cpu.tick(now)
    assert [job_id for job_id, _, _ in actions.start] == [first]
    assert one_cpu.states(first, second) == ["ACTIVE", "PENDING"]
    assert one_cpu.job(second)["reason"] == "resources"

    # the first job still runs: a later pass changes nothing
    actions = one_cpu.tick(now + 60)
    assert actions.start == []
    assert one_cpu.states(first, second) == ["ACTIVE", "PENDING"]

    gate.touch()
    one_cpu.wait_ended(first)
    actions = one_cpu.tick(now + 61)
    assert [job_id for job_id, _, _ in actions.start] == [second]
    assert one_cpu.states(first, second) == ["COMPLETED", "ACTIVE"]
    assert one_cpu.job(second)["started_at"] == now + 61  # the pass's clock, not the wall clock

    one_cpu.wait_ended(second)
    one_cpu.tick(now + 62)
    assert one_cpu.states(first, second) == ["COMPLETED", "COMPLETED"]
    log = one_cpu.backend.attempt_dir(f"{second}/1") / "rank0.log"
    assert log.read_text() == "second\n"


def test_a_queue_timeout_expires_at_the_injected_time(one_cpu: SupervisorPass) -> None:
    gate, until_gate = gated(one_cpu.home, "blocker")
    (blocker,) = one_cpu.submit(f"resources: {{cpus: 1}}\nrun: {until_gate}\n", "blocker")
    (waiting,) = one_cpu.submit("resources: {cpus: 1}\nqueue_timeout: 10m\nrun: 'true'\n", "waiting")
    deadline = one_cpu.job(waiting)["queue_deadline"]
    assert deadline == pytest.approx(one_cpu.job(waiting)["submitted_at"] + 600)

    actions = one_cpu.tick(deadline - 600)
    assert one_cpu.states(blocker, waiting) == ["ACTIVE", "PENDING"]
    assert actions.next_wake == deadline  # the supervisor sleeps until then, not on a fast clock

    actions = one_cpu.tick(deadline - 0.001)
    assert one_cpu.states(blocker, waiting) == ["ACTIVE", "PENDING"]
    assert actions.next_wake == deadline

    actions = one_cpu.tick(deadline)
    row = one_cpu.job(waiting)
    assert (row["state"], row["reason"]) == ("FAILED", "queue_timeout")
    assert row["message"] == "waited longer than its queue_timeout of 600s"
    assert row["ended_at"] == deadline
    assert one_cpu.job(blocker)["state"] == "ACTIVE"  # the running job is not touched
    assert actions.start == []
    gate.touch()
    one_cpu.wait_ended(blocker)


def test_a_failed_dependency_fails_its_dependents_at_once(three_cpus: SupervisorPass) -> None:
    """A chain up -> mid -> down: when `up` fails, the whole chain below it fails in the same pass
    (upstream failed), and nothing of it is started."""
    ids = three_cpus.submit(
        "name: chain\n---\nname: up\nrun: exit 3\n---\nname: mid\nrun: echo mid\n---\nname: down\nrun: echo down\n",
        "chain",
    )
    up, mid, down = ids
    now = time.time()
    actions = three_cpus.tick(now)
    assert [job_id for job_id, _, _ in actions.start] == [up]
    assert three_cpus.states(up, mid, down) == ["ACTIVE", "BLOCKED", "BLOCKED"]

    three_cpus.wait_ended(up)
    actions = three_cpus.tick(now + 1)
    assert actions.start == []
    assert three_cpus.states(up, mid, down) == ["FAILED", "FAILED", "FAILED"]
    assert three_cpus.job(up)["exit_code"] == 3
    for job_id, upstream in ((mid, f"{up} (up)"), (down, f"{mid} (mid)")):
        row = three_cpus.job(job_id)
        assert row["reason"] == "upstream_failed", row
        assert row["message"] == f"dependency {upstream} ended FAILED", row
        assert row["attempt"] == 0 and row["started_at"] is None  # never ran
    assert not (three_cpus.paths.logs / str(mid)).exists()


def test_backfill_starts_only_jobs_that_end_before_the_blocked_jobs_reserved_start(three_cpus: SupervisorPass) -> None:
    """EASY backfill over one pass: `big` (all 3 CPUs) waits for `long` (timeout 10m); a 1-CPU job
    whose timeout ends before big's reserved start runs now; one without a timeout, or with a
    longer one, waits behind big though CPUs are free. When `long` ends, big starts before them."""
    gate, until_gate = gated(three_cpus.home, "long")
    (long,) = three_cpus.submit(f"resources: {{cpus: 1}}\ntimeout: 10m\nrun: {until_gate}\n", "long")
    (big,) = three_cpus.submit("resources: {cpus: 3}\nrun: 'true'\n", "big")
    (short,) = three_cpus.submit("resources: {cpus: 1}\ntimeout: 1m\nrun: 'true'\n", "short")
    (endless,) = three_cpus.submit("resources: {cpus: 1}\nrun: 'true'\n", "endless")
    (longer,) = three_cpus.submit("resources: {cpus: 1}\ntimeout: 1h\nrun: 'true'\n", "longer")
    now = time.time()

    actions = three_cpus.tick(now)
    assert [job_id for job_id, _, _ in actions.start] == [long, short]
    assert three_cpus.job(big)["reason"] == "resources"
    for job_id in (endless, longer):
        row = three_cpus.job(job_id)
        assert (row["state"], row["reason"], row["detail"]) == ("PENDING", "priority", f"behind {big}"), row
        assert f"waits behind job {big} (big)" in row["message"] and "due to start by" in row["message"], row

    three_cpus.wait_ended(short)
    actions = three_cpus.tick(now + 5)
    assert actions.start == []  # two CPUs are free, and still nothing may delay big
    assert three_cpus.states(long, big, short, endless, longer) == [
        "ACTIVE",
        "PENDING",
        "COMPLETED",
        "PENDING",
        "PENDING",
    ]

    gate.touch()
    three_cpus.wait_ended(long)
    actions = three_cpus.tick(now + 10)
    assert [job_id for job_id, _, _ in actions.start] == [big]
    assert three_cpus.states(endless, longer) == ["PENDING", "PENDING"]
    assert three_cpus.job(endless)["reason"] == "resources"

    three_cpus.wait_ended(big)
    actions = three_cpus.tick(now + 11)
    assert [job_id for job_id, _, _ in actions.start] == [endless, longer]
    three_cpus.wait_ended(endless)
    three_cpus.wait_ended(longer)
    three_cpus.tick(now + 12)
    assert three_cpus.states(long, big, short, endless, longer) == ["COMPLETED"] * 5
