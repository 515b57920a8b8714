"""Queue caps, pauses and array throttles in the pure scheduler (SPEC section 9): examples and
hypothesis properties, over one decision and over a simulated run."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobctl.core.resources import EPS
from jobctl.core.scheduler import Capacity, QueueLimit, Request, Running, schedule


def replace(record, **changes):
    """A copy of a scheduler record (a NamedTuple) with some fields changed."""
    return record._replace(**changes)


QUEUES = ("default", "gpu", "cpu")


def _cap(cpus: float = 8, gpus: int = 4) -> Capacity:
    return Capacity(cpus, 64 * 1024, {"H100": tuple(range(gpus))} if gpus else {})


@st.composite
def queue_limits(draw) -> dict[str, QueueLimit]:
    out = {}
    for name in QUEUES:
        if draw(st.booleans()):
            out[name] = QueueLimit(
                max_running=draw(st.none() | st.integers(1, 4)),
                cpus=draw(st.none() | st.sampled_from([1.0, 2.0, 3.5, 6.0])),
                gpus=draw(st.none() | st.integers(0, 3)),
                paused=draw(st.booleans()),
            )
    return out


@st.composite
def requests(draw, n_max: int = 12) -> list[Request]:
    reqs = []
    for i in range(draw(st.integers(0, n_max))):
        gpu = draw(st.integers(0, 2))
        reqs.append(
            Request(
                job_id=i + 1,
                priority=draw(st.integers(-2, 2)),
                order=float(draw(st.integers(0, 50))),
                cpus=draw(st.sampled_from([0.5, 1.0, 2.0])),
                memory_mib=1024,
                accelerators=(("H100", gpu),) if gpu else (),
                queue=draw(st.sampled_from(QUEUES)),
                group=draw(st.sampled_from([None, 100, 200])),
            )
        )
    return reqs


def _running_from(started: list[tuple[Request, object]]) -> list[Running]:
    return [
        Running(
            req.job_id,
            req.priority,
            req.order,
            alloc.cpus,
            alloc.memory_mib,
            ((alloc.accelerator, alloc.devices),) if alloc.accelerator else (),
            queue=req.queue,
            group=req.group,
        )
        for req, alloc in started
    ]


def _check_caps(running: list[Running], limits: dict[str, QueueLimit], throttles: dict[int, int]) -> None:
    for name, limit in limits.items():
        mine = [r for r in running if r.queue == name]
        if limit.max_running is not None:
            assert len(mine) <= limit.max_running, (name, limit, mine)
        if limit.cpus is not None:
            assert sum(r.cpus for r in mine) <= limit.cpus + EPS
        if limit.gpus is not None:
            assert sum(len(d) for r in mine for _, d in r.devices) <= limit.gpus
    for group, throttle in throttles.items():
        assert sum(1 for r in running if r.group == group) <= throttle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), queue_limits(), st.integers(1, 3), st.integers(1, 3))
def test_one_decision_respects_caps_pauses_and_throttles(reqs, limits, t1, t2):
    throttles = {100: t1, 200: t2}
    out = schedule(reqs, [], _cap(), 0.0, limits, throttles)
    by_id = {r.job_id: r for r in reqs}
    started = [(by_id[job_id], alloc) for job_id, alloc in out.start]
    _check_caps(_running_from(started), limits, throttles)
    for req, _ in started:  # a paused queue starts nothing
        assert not (req.queue in limits and limits[req.queue].paused)
    for job_id, why in out.waiting.items():
        if why == "queue_paused":
            assert limits[by_id[job_id].queue].paused


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(n_max=16), queue_limits(), st.integers(1, 3), st.data())
def test_over_a_run_never_more_than_the_caps(reqs, limits, throttle, data):
    """Jobs start and end over many passes; after every pass the caps hold, and when every queue is
    open all jobs eventually run."""
    throttles = {100: throttle, 200: 1}
    waiting = list(reqs)
    running: list[tuple[Request, object]] = []
    for _ in range(60):
        out = schedule(waiting, _running_from(running), _cap(), 0.0, limits, throttles)
        by_id = {r.job_id: r for r in waiting}
        for job_id, alloc in out.start:
            running.append((by_id[job_id], alloc))
        started = {job_id for job_id, _ in out.start}
        waiting = [r for r in waiting if r.job_id not in started]
        _check_caps(_running_from(running), limits, throttles)
        assert not any(r.queue in limits and limits[r.queue].paused for r, _ in running)
        if running and data.draw(st.booleans()):  # some job ends
            running.pop(data.draw(st.integers(0, len(running) - 1)))
        elif not running and not out.start:
            break
    stuck = [r for r in waiting if not (r.queue in limits and (limits[r.queue].paused or _never(r, limits[r.queue])))]
    assert not stuck, stuck


def _never(req: Request, limit: QueueLimit) -> bool:
    """A job its queue's cap can never let run (it alone is over the CPU or GPU cap)."""
    gpus = max((c for _, c in req.accelerators), default=0)
    return (limit.cpus is not None and req.cpus > limit.cpus + EPS) or (limit.gpus is not None and gpus > limit.gpus)


def test_queue_full_jobs_do_not_block_other_queues():
    """Three gpu jobs (max 1) and two default jobs on 4 CPUs: one gpu job and both default ones start."""
    reqs = [Request(i, 0, float(i), 1.0, 1024, queue="gpu") for i in (1, 2, 3)]
    reqs += [Request(i, 0, float(i), 1.0, 1024) for i in (4, 5)]
    out = schedule(reqs, [], _cap(4, 0), 0.0, {"gpu": QueueLimit(max_running=1)})
    assert [j for j, _ in out.start] == [1, 4, 5]
    assert out.waiting == {2: "queue_full", 3: "queue_full"}


def test_a_held_back_job_reserves_nothing():
    """A big job held back by its queue does not stop a smaller, lower-ranked one (no backfill reserve)."""
    reqs = [Request(1, 5, 0.0, 4.0, 1024, queue="q"), Request(2, 0, 1.0, 4.0, 1024)]
    running = [Running(9, 0, 0.0, 1.0, 1024, queue="q")]
    out = schedule(reqs, running, _cap(8, 0), 0.0, {"q": QueueLimit(max_running=1)})
    assert [j for j, _ in out.start] == [2]
    assert out.waiting == {1: "queue_full"}


def test_throttle_counts_running_tasks_of_the_array():
    reqs = [Request(i, 0, float(i), 1.0, 1024, group=1) for i in range(2, 10)]
    running = [Running(1, 0, 0.0, 1.0, 1024, group=1)]
    out = schedule(reqs, running, _cap(16, 0), 0.0, throttles={1: 3})
    assert [j for j, _ in out.start] == [2, 3]
    assert set(out.waiting.values()) == {"throttled"}


def test_without_queues_nothing_changes():
    reqs = [Request(i, 0, float(i), 1.0, 1024) for i in range(1, 6)]
    assert schedule(reqs, [], _cap(3, 0)) == schedule([replace(r, queue="x") for r in reqs], [], _cap(3, 0))
