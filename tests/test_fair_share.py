"""Fair share between users and per-user caps in the pure scheduler (SPEC section 12).

The queue is simulated with the real `schedule` function: events are submissions and job ends;
at each event time the scheduler is called with what waits and what runs, as the supervisor does.
Usage is what each user's finished jobs used (GPU-hours, CPU-hours), as jobctl/store/shared.py
computes it (without the decay: the simulations last hours at most).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from jobctl.core.scheduler import Capacity, QueueLimit, Request, Running, UserPolicy, fair_order, schedule


@dataclass
class Job:
    job_id: int
    user: str
    submit: float
    runtime: float
    gpus: int = 1
    cpus: float = 1.0
    priority: int = 0
    start: float | None = None
    end: float | None = None
    devices: tuple[int, ...] = ()


def simulate(
    jobs: list[Job], capacity: Capacity, max_gpus: int | None = None, max_running: int | None = None
) -> list[Job]:
    """Run the queue to the end; every job gets `start` and `end`. Checks capacity at each step."""
    now = 0.0
    usage: dict[str, list[float]] = {}
    for _ in range(10_000):
        running = [j for j in jobs if j.start is not None and j.end > now]
        waiting = [j for j in jobs if j.start is None and j.submit <= now]
        policy = UserPolicy({u: (g, c) for u, (g, c) in usage.items()}, max_gpus, max_running)
        decisions = schedule(
            [
                Request(
                    j.job_id,
                    j.priority,
                    j.submit,
                    j.cpus,
                    1024,
                    (("H100", j.gpus),) if j.gpus else (),
                    None,
                    user=j.user,
                )
                for j in waiting
            ],
            [
                Running(
                    j.job_id,
                    j.priority,
                    j.submit,
                    j.cpus,
                    1024,
                    (("H100", j.devices),) if j.devices else (),
                    user=j.user,
                )
                for j in running
            ],
            capacity,
            now,
            users=policy,
        )
        by_id = {j.job_id: j for j in jobs}
        for job_id, alloc in decisions.start:
            job = by_id[job_id]
            job.start, job.end, job.devices = now, now + job.runtime, alloc.devices
        live = [j for j in jobs if j.start is not None and j.end > now]
        held = [d for j in live for d in j.devices]
        assert len(held) == len(set(held)), "two running jobs share a GPU"
        assert sum(j.cpus for j in live) <= capacity.cpus + 1e-9
        for user in {j.user for j in live}:
            mine = [j for j in live if j.user == user]
            assert max_running is None or len(mine) <= max_running
            assert max_gpus is None or sum(len(j.devices) for j in mine) <= max_gpus
        events = [j.submit for j in jobs if j.submit > now] + [j.end for j in jobs if j.end is not None and j.end > now]
        if not events:
            break
        nxt = min(events)
        for j in jobs:  # usage of what ran between now and the next event
            if j.start is not None and j.start < nxt and j.end > now:
                span = (min(j.end, nxt) - max(j.start, now)) / 3600.0
                total = usage.setdefault(j.user, [0.0, 0.0])
                total[0] += len(j.devices) * span
                total[1] += j.cpus * span
        now = nxt
    assert len({j.job_id for j in jobs}) == len(jobs)
    assert all(j.start is not None for j in jobs), "every job started"
    return jobs


GPUS4 = Capacity(cpus=64, memory_mib=1 << 20, devices={"H100": (0, 1, 2, 3)})


def test_done_when_bob_starts_before_half_of_alices_array_is_done():
    jobs = [Job(i, "alice", 0.0, 60.0) for i in range(1, 51)]
    bob = Job(51, "bob", 1.0, 60.0)
    simulate([*jobs, bob], GPUS4)
    ends = sorted(j.end for j in jobs)
    assert bob.start < ends[24], (bob.start, ends[24])  # before the 25th of 50 ends
    assert bob.start - bob.submit <= 60.0  # at most one job's runtime behind the array


@settings(max_examples=150, deadline=None)
@given(
    slots=st.integers(1, 4),
    array=st.integers(1, 25),
    runtimes=st.lists(st.integers(1, 100), min_size=25, max_size=25),
    arrival=st.integers(0, 4000),
    others=st.integers(0, 2),
    bob_runtime=st.integers(1, 100),
)
def test_no_user_waits_longer_than_one_job_behind_another_users_array(
    slots, array, runtimes, arrival, others, bob_runtime
):
    capacity = Capacity(cpus=64, memory_mib=1 << 20, devices={"H100": tuple(range(slots))})
    jobs = []
    for who in ["alice"] + [f"user{k}" for k in range(others)]:
        jobs += [Job(len(jobs) + 1 + i, who, 0.0, float(runtimes[i])) for i in range(array)]
    bob = Job(len(jobs) + 1, "bob", float(arrival), float(bob_runtime))
    simulate([*jobs, bob], capacity)
    longest = max(j.runtime for j in jobs)
    # behind one array: at most one job's runtime. Behind several users' arrays, each user who has
    # not run yet (equal usage: a tie, broken by submission order) may go once before bob.
    assert bob.start - bob.submit <= longest * (1 + others), (bob.start, bob.submit, longest)


@settings(max_examples=50, deadline=None)
@given(a=st.integers(1, 20), b=st.integers(1, 20), slots=st.integers(1, 4))
def test_two_users_with_equal_usage_alternate(a, b, slots):
    capacity = Capacity(cpus=64, memory_mib=1 << 20, devices={"H100": tuple(range(slots))})
    jobs = [Job(i + 1, "alice", 0.0, 10.0) for i in range(a)] + [Job(a + i + 1, "bob", 0.0, 10.0) for i in range(b)]
    simulate(jobs, capacity)
    for t in sorted({j.start for j in jobs}):
        started = {u: sum(1 for j in jobs if j.user == u and j.start <= t) for u in ("alice", "bob")}
        # while both still have work, neither is ahead by more than one pass's worth of GPUs
        if started["alice"] < a and started["bob"] < b:
            assert abs(started["alice"] - started["bob"]) <= slots, (t, started)


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 10), min_size=1, max_size=3),
    max_running=st.one_of(st.none(), st.integers(1, 3)),
    max_gpus=st.one_of(st.none(), st.integers(2, 4)),
    gpus=st.integers(0, 2),
)
def test_per_user_caps_are_never_exceeded(sizes, max_running, max_gpus, gpus):
    jobs = []
    for k, size in enumerate(sizes):
        jobs += [Job(len(jobs) + 1 + i, f"u{k}", float(i), 5.0, gpus=gpus) for i in range(size)]
    simulate(jobs, GPUS4, max_gpus=max_gpus, max_running=max_running)  # simulate checks the caps at each step


def test_a_job_over_its_users_cap_waits_with_reason_user_limit_and_reserves_nothing():
    capacity = Capacity(cpus=4, memory_mib=1 << 20, devices={})
    running = [Running(1, 0, 0.0, 1.0, 1024, user="alice")]
    pending = [
        Request(2, 5, 1.0, 1.0, 1024, (), None, user="alice"),
        Request(3, 0, 2.0, 4.0 - 1.0, 1024, (), None, user="bob"),
    ]
    decisions = schedule(pending, running, capacity, 0.0, users=UserPolicy({}, None, 1))
    assert decisions.waiting == {2: "user_limit"}
    assert [job_id for job_id, _ in decisions.start] == [3]  # alice's capped job holds nothing back


@settings(max_examples=50, deadline=None)
@given(
    reqs=st.lists(st.tuples(st.integers(-2, 2), st.integers(0, 50), st.integers(1, 4)), min_size=1, max_size=12),
)
def test_one_user_alone_keeps_the_rank_order(reqs):
    pending = [Request(i + 1, p, float(t), float(c), 1024, (), None, user="alice") for i, (p, t, c) in enumerate(reqs)]
    capacity = Capacity(cpus=6, memory_mib=1 << 20, devices={})
    assert [r.job_id for r in fair_order(pending, [], UserPolicy())] == [
        r.job_id for r in sorted(pending, key=lambda r: (-r.priority, r.order, r.job_id))
    ]
    assert schedule(pending, [], capacity, 0.0, users=UserPolicy()) == schedule(pending, [], capacity, 0.0)


def test_priority_still_comes_before_fair_share():
    running = [Running(1, 0, 0.0, 1.0, 1024, user="alice")]
    pending = [
        Request(2, 1, 5.0, 1.0, 1024, (), None, user="alice"),
        Request(3, 0, 1.0, 1.0, 1024, (), None, user="bob"),
    ]
    order = fair_order(pending, running, UserPolicy({"alice": (10.0, 10.0)}))
    assert [r.job_id for r in order] == [2, 3]


def test_least_recent_usage_goes_first_gpu_hours_then_cpu_hours():
    pending = [
        Request(1, 0, 0.0, 1.0, 1024, (), None, user="alice"),
        Request(2, 0, 1.0, 1.0, 1024, (), None, user="bob"),
        Request(3, 0, 2.0, 1.0, 1024, (), None, user="carol"),
    ]
    usage = {"alice": (2.0, 0.0), "bob": (1.0, 50.0), "carol": (1.0, 10.0)}
    assert [r.job_id for r in fair_order(pending, [], UserPolicy(usage))] == [3, 2, 1]


# -- per-user caps composed with the named queues' caps and array throttles (SPEC sections 9 and 12) --
@settings(max_examples=80, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(["default", "gpu"]), st.integers(0, 2)),
        min_size=1,
        max_size=20,
    ),
    running=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(["default", "gpu"])), max_size=4
    ),
    max_running=st.none() | st.integers(0, 3),
    max_gpus=st.none() | st.integers(0, 3),
    queue_max=st.none() | st.integers(0, 4),
    queue_gpus=st.none() | st.integers(0, 4),
    paused=st.booleans(),
)
def test_queue_caps_and_user_caps_both_hold_and_each_waiting_job_says_which(
    jobs, running, max_running, max_gpus, queue_max, queue_gpus, paused
):
    capacity = Capacity(cpus=64, memory_mib=1 << 20, devices={"H100": tuple(range(8))})
    held = [
        Running(100 + i, 0, 0.0, 1.0, 1024, (("H100", (i,)),), user=user, queue=queue)
        for i, (user, queue) in enumerate(running)
    ]
    pending = [
        Request(i + 1, 0, float(i), 1.0, 1024, (("H100", gpus),) if gpus else (), None, queue=queue, user=user)
        for i, (user, queue, gpus) in enumerate(jobs)
    ]
    queues = {"gpu": QueueLimit(max_running=queue_max, gpus=queue_gpus, paused=paused)}
    policy = UserPolicy({}, max_gpus, max_running)
    decisions = schedule(pending, held, capacity, 0.0, queues, None, users=policy)
    by_id = {r.job_id: r for r in pending}
    started = [by_id[job_id] for job_id, _ in decisions.start]
    # every cap holds over what runs and what was started, counted together
    for user in ("alice", "bob", "carol"):
        mine_running = [r for r in held if r.user == user]
        mine_started = [r for r in started if r.user == user]
        if max_running is not None:
            assert len(mine_running) + len(mine_started) <= max(max_running, len(mine_running))
        if max_gpus is not None:
            gpus = sum(len(i) for _, i in (d for r in mine_running for d in r.devices))
            gpus_started = sum(c for r in mine_started for _, c in r.accelerators)
            assert gpus_started == 0 or gpus + gpus_started <= max_gpus
    in_gpu_queue = [r for r in started if r.queue == "gpu"]
    if paused:
        assert in_gpu_queue == []
    if queue_max is not None:
        assert len(in_gpu_queue) == 0 or len([r for r in held if r.queue == "gpu"]) + len(in_gpu_queue) <= queue_max
    if queue_gpus is not None:
        gpu_held = sum(len(i) for r in held if r.queue == "gpu" for _, i in r.devices)
        gpu_new = sum(c for r in in_gpu_queue for _, c in r.accelerators)
        assert gpu_new == 0 or gpu_held + gpu_new <= queue_gpus
    # a job its queue holds back says so before its user's cap does; nothing else waits for a cap
    for job_id, reason in decisions.waiting.items():
        req = by_id[job_id]
        if req.queue == "gpu" and paused:
            assert reason == "queue_paused"
        assert reason in (
            "queue_paused",
            "queue_full",
            "throttled",
            "user_limit",
            "resources",
            "priority",
            "preempting",
        )
    # without any cap, user caps and queue caps change nothing: fair share orders, everything fits
    if max_running is None and max_gpus is None and queue_max is None and queue_gpus is None and not paused:
        assert not any(r in ("queue_full", "user_limit", "queue_paused") for r in decisions.waiting.values())
