"""Tests for the pure scheduler (jobctl.scheduler): examples plus hypothesis properties."""

from __future__ import annotations

import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobctl.core.resources import EPS
from jobctl.core.scheduler import (
    Allocation,
    Capacity,
    Decisions,
    Request,
    Running,
    never_fits,
    rank_key,
    schedule,
)


def replace(record, **changes):
    """A copy of a scheduler record (a NamedTuple) with some fields changed."""
    return record._replace(**changes)


NAMES = ("H100", "A100")

# --------------------------------------------------------------------------------------------
# A reference model of resources, independent of the module's internals: (cpus, mem, {name: n})


def _zero() -> list:
    return [0.0, 0, Counter()]


def _add(load: list, cpus: float, mem: int, name: str | None, count: int, sign: int = 1) -> None:
    load[0] += sign * cpus
    load[1] += sign * mem
    if name is not None:
        load[2][name] += sign * count


def _add_running(load: list, job: Running, sign: int = 1) -> None:
    _add(load, job.cpus, job.memory_mib, None, 0, sign)
    for name, idx in job.devices:
        load[2][name] += sign * len(idx)


def _room(cap: Capacity, load: list) -> list:
    """Capacity minus a load."""
    return [
        cap.cpus - load[0],
        cap.memory_mib - load[1],
        Counter({n: len(i) - load[2][n] for n, i in cap.devices.items()}),
    ]


def _opts(req: Request) -> list:
    return list(req.accelerators) or [(None, 0)]


def _fits(req: Request, room: list, opt=None) -> bool:
    options = [opt] if opt is not None else _opts(req)
    return (
        req.cpus <= room[0] + EPS
        and req.memory_mib <= room[1]
        and any(name is None or count <= room[2][name] for name, count in options)
    )


def _within(cap: Capacity, load: list) -> bool:
    room = _room(cap, load)
    return (
        room[0] >= -EPS
        and room[1] >= 0
        and all(v >= 0 for v in room[2].values())
        and all(load[2][n] <= 0 for n in load[2] if n not in cap.devices)
    )


def _reserve(req: Request, cap: Capacity):
    return next(o for o in _opts(req) if _fits(req, _room(cap, _zero()), o))


def ref_reserved_start(req: Request, cap: Capacity, holders: list, now: float):
    """When `req` is sure to fit, given holders (end bound or None, load); None if never known."""
    load = _zero()
    for _, held in holders:
        for i, v in enumerate(held[:2]):
            load[i] += v
        load[2].update(held[2])
    times = sorted({max(now, end) for end, _ in holders if end is not None} | {now})
    for t in times:
        gone = _zero()
        for end, held in holders:
            if end is not None and max(now, end) <= t:
                gone[0] += held[0]
                gone[1] += held[1]
                gone[2].update(held[2])
        room = _room(cap, [load[0] - gone[0], load[1] - gone[1], load[2] - gone[2]])
        if _fits(req, room):
            return t
    return None


def _holders(running, started, reqs, now):
    out = [(job.ends_by, [job.cpus, job.memory_mib, Counter({n: len(i) for n, i in job.devices})]) for job in running]
    for job_id, alloc in started:
        limit = reqs[job_id].limit
        out.append(
            (
                None if limit is None else now + limit,
                [
                    alloc.cpus,
                    alloc.memory_mib,
                    Counter({alloc.accelerator: len(alloc.devices)} if alloc.accelerator else {}),
                ],
            )
        )
    return out


def check(pending, running, cap: Capacity, d: Decisions, now: float = 0.0) -> None:
    """Assert every property of one scheduling decision."""
    reqs = {r.job_id: r for r in pending}
    run = {r.job_id: r for r in running}
    started = dict(d.start)
    ranked = sorted(pending, key=rank_key)
    rank_of = {r.job_id: i for i, r in enumerate(ranked)}

    # Every pending job is accounted for exactly once; starts come in rank order.
    assert len(started) == len(d.start)
    assert set(started) | set(d.waiting) == set(reqs) and not set(started) & set(d.waiting)
    assert [j for j, _ in d.start] == sorted(started, key=rank_of.__getitem__)
    assert set(d.waiting.values()) <= {"resources", "priority", "preempting"}

    # 1. Never over-commit; devices unique and within capacity; allocations match requests.
    load = _zero()
    seen: set = set()
    for job in running:
        _add_running(load, job)
        seen |= {(n, i) for n, idx in job.devices for i in idx}
    for job_id, alloc in d.start:
        req = reqs[job_id]
        assert never_fits(req, cap) is None
        assert (alloc.cpus, alloc.memory_mib) == (req.cpus, req.memory_mib)
        assert (alloc.accelerator, len(alloc.devices)) in _opts(req)
        assert list(alloc.devices) == sorted(set(alloc.devices))
        for i in alloc.devices:
            assert (alloc.accelerator, i) not in seen and i in cap.devices[alloc.accelerator]
            seen.add((alloc.accelerator, i))
        _add(load, alloc.cpus, alloc.memory_mib, alloc.accelerator, len(alloc.devices))
    assert _within(cap, load)

    # 2. Rank order: until the first blocked job everything that fits starts (first alternative
    # that fits); after it, a waiting job is "priority" exactly when it fit the free resources.
    free = _zero()
    for job in running:
        _add_running(free, job)
    first = None  # the first blocked job, P
    free_at_p = None
    for req in ranked:
        room = _room(cap, free)
        if never_fits(req, cap):
            assert d.waiting[req.job_id] == "resources"
            continue
        if req.job_id in started:
            alloc = started[req.job_id]
            if first is None:
                assert (alloc.accelerator, len(alloc.devices)) == next(o for o in _opts(req) if _fits(req, room, o))
            _add(free, alloc.cpus, alloc.memory_mib, alloc.accelerator, len(alloc.devices))
        elif first is None:
            assert not _fits(req, room)
            assert d.waiting[req.job_id] in ("resources", "preempting")
            first, free_at_p = req, room
        else:
            assert d.waiting[req.job_id] == ("priority" if _fits(req, room) else "resources")
            if d.waiting[req.job_id] == "priority":  # it says which job it must not delay
                assert d.behind[req.job_id] == first.job_id
    assert set(d.behind) == {j for j, why in d.waiting.items() if why == "priority"}

    # 3'. EASY backfill: with known end bounds, P has a reserved start, and nothing started in this
    # call moves it later; it is used whenever P waits on resources alone and the bounds are known.
    if first is not None:
        above = [(j, a) for j, a in d.start if rank_of[j] < rank_of[first.job_id]]
        expected = None
        if d.waiting[first.job_id] == "resources":
            expected = ref_reserved_start(first, cap, _holders(running, above, reqs, now), now)
        assert d.reserved == (None if expected is None else (first.job_id, expected))
        if expected is not None:
            assert ref_reserved_start(first, cap, _holders(running, d.start, reqs, now), now) == expected, (
                "a backfilled job delays the reserved start of the first blocked job"
            )
            assert not d.preempt
            return
    else:
        assert d.reserved is None

    # 3. Backfill safety: for each job J started below P, what ranks below P (J and the jobs
    # started before it in this call, running jobs that keep their resources) leaves room for
    # the reserved needs of every blocked job ranked above J.
    if first is not None:
        p_key = rank_key(first)
        base = _zero()
        for job in running:
            if not job.releasing and job.job_id not in d.preempt and rank_key(job) > p_key:
                _add_running(base, job)
        for req in ranked[rank_of[first.job_id] :]:
            if never_fits(req, cap):
                continue
            if req.job_id in started:
                alloc = started[req.job_id]
                _add(base, alloc.cpus, alloc.memory_mib, alloc.accelerator, len(alloc.devices))
                # Checked on the resources J uses: the others may be over-subscribed already
                # by lower-ranked running jobs, whatever J does.
                room = _room(cap, base)
                used = alloc.accelerator
                assert room[0] >= -EPS and room[1] >= 0 and (used is None or room[2][used] >= 0), (
                    f"backfilled {req.job_id} may delay a blocked job"
                )
            else:
                _add(base, req.cpus, req.memory_mib, *_reserve(req, cap))

    # 5. Preemption: only for P, only lower-priority preemptible jobs, only what makes P fit.
    assert len(set(d.preempt)) == len(d.preempt)
    if first is None:
        assert not d.preempt
        return
    for v in d.preempt:
        job = run[v]
        assert job.preemptible and not job.releasing and job.priority < first.priority
    pool = [free_at_p[0], free_at_p[1], Counter(free_at_p[2])]  # free at P's turn ...
    for job in running:
        if job.releasing:
            _add_running(pool, job)  # ... plus what is already being released
    assert (d.waiting[first.job_id] == "preempting") == (bool(d.preempt) or _fits(first, pool))
    if not d.preempt:
        if d.waiting[first.job_id] == "resources":  # not even all candidates would be enough
            for job in running:
                if job.preemptible and not job.releasing and job.priority < first.priority:
                    _add_running(pool, job)
            assert not _fits(first, pool)
        return
    assert not _fits(first, pool)
    for v in d.preempt:
        _add_running(pool, run[v])
    assert _fits(first, pool)
    for v in d.preempt:  # 1-minimal: every victim is needed
        _add_running(pool, run[v], -1)
        assert not _fits(first, pool)
        _add_running(pool, run[v])
    # ... and backfilled jobs leave P room once the releasing and preempted jobs have ended.
    for job_id, alloc in d.start:
        if rank_of[job_id] > rank_of[first.job_id]:
            _add(pool, alloc.cpus, alloc.memory_mib, alloc.accelerator, len(alloc.devices), -1)
    assert _fits(first, pool)


# --------------------------------------------------------------------------------------------
# Strategies

CPUS = st.sampled_from([0.25, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 4.0, 32.0])  # repeats: weights
MEM = st.sampled_from([0, 0, 256, 1024, 1024, 4096, 65536])
ODDS = st.integers(0, 3)  # for flags: == 0 one time in four
ALTS = st.lists(st.tuples(st.sampled_from(NAMES + ("TPU",)), st.integers(0, 4)), max_size=2)


@st.composite
def capacities(draw) -> Capacity:
    devices = {}
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=2)):
        devices[name] = tuple(sorted(draw(st.lists(st.integers(0, 7), unique=True, max_size=6))))
    return Capacity(draw(st.sampled_from([1.0, 2.0, 3.5, 8.0])), draw(st.sampled_from([1024, 8192, 16384])), devices)


@st.composite
def scenarios(draw):
    cap = draw(capacities())
    cpus, mem = cap.cpus, cap.memory_mib
    free = {n: set(i) for n, i in cap.devices.items()}
    running, pending = [], []
    for job_id in range(1, draw(st.integers(0, 8)) + 1):
        c, m = draw(CPUS), draw(MEM)
        if c > cpus + EPS or m > mem:
            continue
        devices = ()
        names = sorted(n for n in free if free[n])
        if names and draw(st.booleans()):
            name = draw(st.sampled_from(names))
            idx = draw(st.lists(st.sampled_from(sorted(free[name])), unique=True, min_size=1))
            free[name] -= set(idx)
            devices = ((name, tuple(sorted(idx))),)
        cpus, mem = cpus - c, mem - m
        running.append(
            Running(
                job_id,
                draw(st.integers(0, 3)),
                float(draw(st.integers(0, 9))),
                c,
                m,
                devices,
                draw(ODDS) > 0,
                draw(ODDS) == 0,
            )
        )
    for job_id in range(100, 100 + draw(st.integers(0, 12))):
        pending.append(
            Request(
                job_id,
                draw(st.integers(0, 3)),
                float(draw(st.integers(0, 9))),
                draw(CPUS),
                draw(MEM),
                tuple(draw(ALTS)),
            )
        )
    return pending, running, cap


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_properties_of_one_decision(scenario):
    pending, running, cap = scenario
    check(pending, running, cap, schedule(pending, running, cap))


BOUND = st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0]))


@st.composite
def timed_scenarios(draw):
    """Like `scenarios`, with end bounds on most running jobs and limits on most pending ones."""
    pending, running, cap = draw(scenarios())
    now = draw(st.sampled_from([0.0, 100.0]))
    all_known = draw(st.booleans())  # often every bound is known, so EASY applies

    def bound():
        b = draw(BOUND)
        return draw(st.sampled_from([1.0, 4.0, 9.0])) if b is None and all_known else b

    running = [replace(r, ends_by=None if (b := bound()) is None else now - 1.0 + b) for r in running]
    pending = [replace(r, limit=bound()) for r in pending]
    return pending, running, cap, now


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timed_scenarios())
def test_properties_of_one_decision_with_time_limits(scenario):
    pending, running, cap, now = scenario
    check(pending, running, cap, schedule(pending, running, cap, now), now)


# --------------------------------------------------------------------------------------------
# 4. No starvation: simulate a supervisor over rounds.


def simulate(cap: Capacity, workload: list, rounds: int, arrive=None) -> dict[int, int]:
    """Run rounds of schedule(); return job_id -> round it finished. Preempted jobs restart."""
    reqs = {req.job_id: (req, duration, frozen) for _, req, duration, frozen in workload}
    pending: dict[int, Request] = {}
    running: dict[int, list] = {}  # job_id -> [Running, rounds left]
    done: dict[int, int] = {}
    for rnd in range(rounds):
        for at, req, _, _ in workload:
            if at == rnd:
                pending[req.job_id] = req
        for req in arrive(rnd) if arrive else ():
            reqs[req.job_id] = (req, 3, False)
            pending[req.job_id] = req
        current = [r for r, _ in running.values()]
        d = schedule(list(pending.values()), current, cap, float(rnd))
        check(list(pending.values()), current, cap, d, float(rnd))
        for job_id, alloc in d.start:
            req, duration, frozen = reqs[job_id]
            del pending[job_id]
            devices = ((alloc.accelerator, alloc.devices),) if alloc.accelerator else ()
            ends_by = None if req.limit is None or frozen else rnd + req.limit
            running[job_id] = [
                Running(
                    job_id, req.priority, req.order, alloc.cpus, alloc.memory_mib, devices, not frozen, ends_by=ends_by
                ),
                duration,
            ]
        for job_id in d.preempt:
            running[job_id][0] = replace(running[job_id][0], preemptible=False, releasing=True)
        for job_id, (job, left) in list(running.items()):  # time passes
            if job.releasing:  # terminated: back to the queue (SUSPENDED by system)
                del running[job_id]
                pending[job_id] = reqs[job_id][0]
            elif left <= 1:
                del running[job_id]
                done[job_id] = rnd
            else:
                running[job_id][1] = left - 1
        if not arrive and not pending and not running and rnd >= max(w[0] for w in workload):
            break
    return done


@st.composite
def workloads(draw):
    cap = draw(capacities())
    jobs = []
    for job_id in range(1, draw(st.integers(1, 15)) + 1):
        at = draw(st.integers(0, 10))
        duration = draw(st.integers(1, 5))
        limit = draw(st.one_of(st.none(), st.integers(0, 3).map(lambda k: float(duration + k))))
        req = Request(
            job_id, draw(st.integers(0, 2)), float(at), draw(CPUS), draw(MEM), tuple(draw(ALTS)), limit
        )  # some with a known limit (>= the duration)
        jobs.append((at, req, duration, draw(st.booleans())))
    return cap, jobs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_no_starvation(workload):
    cap, jobs = workload
    # Generous bound: every job may be preempted at most once per higher-priority job.
    bound = 11 + sum(duration for _, _, duration, _ in jobs) * (len(jobs) + 1)
    done = simulate(cap, jobs, bound)
    for _, req, _, _ in jobs:
        assert (req.job_id in done) == (never_fits(req, cap) is None), req


def test_stream_of_small_jobs_does_not_starve_a_big_one():
    cap = Capacity(8, 65536, {})
    a = Request(1, 0, 0.0, 4, 0)  # runs for 5 rounds
    big = Request(2, 0, 1.0, 6, 0)
    small = lambda rnd: [Request(100 + rnd, 0, 2.0 + rnd, 2, 0)]  # noqa: E731  one per round
    done = simulate(cap, [(0, a, 5, False), (0, big, 4, False)], 30, arrive=small)
    assert done[1] == 4 and done[2] <= 4 + 3 + 4  # waits for A and one backfilled job at most


@st.composite
def timed_workloads(draw):
    """Equal priorities, arrivals in rank order; every job has a limit >= its real duration."""
    cap = draw(capacities())
    jobs = []
    for job_id in range(1, draw(st.integers(1, 12)) + 1):
        at = draw(st.integers(0, 8))
        duration = draw(st.integers(1, 5))
        limit = duration + draw(st.integers(0, 3))
        req = Request(job_id, 0, float(at * 100 + job_id), draw(CPUS), draw(MEM), tuple(draw(ALTS)), float(limit))
        jobs.append((at, req, duration))
    return cap, jobs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timed_workloads())
def test_easy_backfill_never_delays_the_reserved_start_over_time(workload):
    """Rounds are seconds. While the same job stays first blocked, its reserved start never moves
    later, it starts by then at the latest, and every job that can fit finishes."""
    cap, jobs = workload
    pending: dict[int, Request] = {}
    running: dict[int, list] = {}  # job_id -> [Running, rounds left]
    done: dict[int, int] = {}
    promise: dict[int, float] = {}  # the first blocked job -> its reserved start
    horizon = 10 + sum(d for _, _, d in jobs) * 2
    for now in range(horizon):
        for at, req, _ in jobs:
            if at == now:
                pending[req.job_id] = req
        current = [r for r, _ in running.values()]
        d = schedule(list(pending.values()), current, cap, float(now))
        check(list(pending.values()), current, cap, d, float(now))
        for job_id, when in promise.items():
            if job_id in pending and (d.reserved is None or d.reserved[0] != job_id):
                # no longer first blocked only because it starts now (equal priorities, FIFO)
                assert job_id in dict(d.start), (job_id, d)
            assert job_id not in pending or now <= when
        if d.reserved is not None:
            job_id, when = d.reserved
            assert when <= promise.get(job_id, when), "the reserved start moved later"
            promise[job_id] = when
        for job_id, alloc in d.start:
            req = pending.pop(job_id)
            duration = next(dur for _, r, dur in jobs if r.job_id == job_id)
            devices = ((alloc.accelerator, alloc.devices),) if alloc.accelerator else ()
            running[job_id] = [
                Running(job_id, 0, req.order, alloc.cpus, alloc.memory_mib, devices, ends_by=now + req.limit),
                duration,
            ]
        for job_id, (_job, left) in list(running.items()):  # one second passes
            if left <= 1:
                del running[job_id]
                done[job_id] = now
            else:
                running[job_id][1] = left - 1
    for _, req, _ in jobs:
        assert (req.job_id in done) == (never_fits(req, cap) is None), req


# --------------------------------------------------------------------------------------------
# Examples


def test_easy_backfill_starts_a_small_job_that_cannot_delay_the_blocked_one():
    """The first-hour report: A (1 CPU) runs, B (2 CPUs) waits, C (0.5 CPU) fits the 1 CPU free."""
    cap = Capacity(2, 65536, {})
    a = Running(1, 0, 0.0, 1, 0, ends_by=30.0)  # A's timeout ends at t=30: B's reserved start
    b = Request(2, 0, 1.0, 2, 0)
    c = Request(3, 0, 2.0, 0.5, 0, limit=5.0)
    d = schedule([b, c], [a], cap, now=10.0)
    assert [j for j, _ in d.start] == [3] and d.waiting == {2: "resources"} and d.reserved == (2, 30.0)
    # C would still run at t=30: it waits, and says behind which job.
    d = schedule([b, replace(c, limit=25.0)], [a], cap, now=10.0)
    assert d.start == [] and d.waiting == {2: "resources", 3: "priority"} and d.behind == {3: 2}
    # Unknown bounds keep the conservative rule: no limit on C, or none on A.
    for pending, running in (([b, replace(c, limit=None)], [a]), ([b, c], [replace(a, ends_by=None)])):
        d = schedule(pending, running, cap, now=10.0)
        assert d.start == [] and d.waiting[3] == "priority" and d.behind == {3: 2}
    # A job with no limit may start when it fits in what B leaves free at its reserved start.
    d = schedule([replace(b, cpus=2.5), replace(c, limit=None)], [a], Capacity(3, 65536, {}), now=10.0)
    assert [j for j, _ in d.start] == [3] and d.reserved == (2, 30.0)


def test_easy_backfill_reserves_the_first_end_that_makes_room():
    cap = Capacity(4, 65536, {})
    running = [Running(1, 0, 0.0, 1, 0, ends_by=10.0), Running(2, 0, 1.0, 1, 0, ends_by=100.0)]
    big = Request(3, 0, 2.0, 3, 0)
    # B fits at t=10 (when job 1 ends); a job ending by then may start, one ending later may not,
    # even though the resource-only rule (which assumes both running jobs end) would allow it.
    d = schedule([big, Request(4, 0, 3.0, 1, 0, limit=50.0)], running, cap, now=0.0)
    assert d.reserved == (3, 10.0) and d.start == [] and d.waiting[4] == "priority"
    d = schedule([big, Request(4, 0, 3.0, 1, 0, limit=8.0)], running, cap, now=0.0)
    assert [j for j, _ in d.start] == [4]


def test_two_cpus_three_jobs():
    pending = [Request(i, 0, float(i), 1.0, 100) for i in (1, 2, 3)]
    d = schedule(pending, [], Capacity(2, 1024, {}))
    assert [j for j, _ in d.start] == [1, 2]
    assert d.waiting == {3: "resources"} and d.preempt == []


def test_gpus_are_disjoint():
    pending = [Request(i, 0, 0.0, 1, 0, (("H100", 2),)) for i in (1, 2)]
    d = schedule(pending, [], Capacity(8, 1024, {"H100": (0, 1, 2, 3)}))
    assert d.start == [(1, Allocation(1, 0, "H100", (0, 1))), (2, Allocation(1, 0, "H100", (2, 3)))]


def test_alternatives_take_the_first_satisfiable():
    cap = Capacity(8, 1024, {"H100": (0, 1), "A100": (4, 5, 6, 7)})
    held = Running(9, 0, 0.0, 1, 0, (("H100", (0,)),))
    both = Request(1, 0, 0.0, 1, 0, (("H100", 1), ("A100", 2)))
    assert schedule([both], [], cap).start == [(1, Allocation(1, 0, "H100", (0,)))]
    wide = Request(1, 0, 0.0, 1, 0, (("H100", 2), ("A100", 2)))
    assert schedule([wide], [held], cap).start == [(1, Allocation(1, 0, "A100", (4, 5)))]


def test_priority_then_age_then_id():
    pending = [Request(1, 0, 0.0, 1, 0), Request(2, 5, 9.0, 1, 0), Request(4, 1, 3.0, 1, 0), Request(3, 1, 3.0, 1, 0)]
    d = schedule(pending, [], Capacity(3, 1024, {}))
    assert [j for j, _ in d.start] == [2, 3, 4] and d.waiting == {1: "resources"}


def test_backfill_only_when_it_does_not_delay():
    cap = Capacity(8, 65536, {})
    running = [Running(1, 0, 0.0, 4, 0)]
    pending = [Request(2, 0, 1.0, 6, 0), Request(3, 0, 2.0, 2, 0), Request(4, 0, 3.0, 1, 0)]
    d = schedule(pending, running, cap)
    assert [j for j, _ in d.start] == [3]
    assert d.waiting == {2: "resources", 4: "priority"}
    # Next call, job 3 is running: job 4 still may not start (it would hold what 2 needs).
    d = schedule(pending[::2], running + [Running(3, 0, 2.0, 2, 0)], cap)
    assert d.start == [] and d.waiting == {2: "resources", 4: "priority"}


def test_preempts_lowest_priority_newest_first_and_only_as_needed():
    cap = Capacity(4, 65536, {"H100": (0, 1)})
    running = [
        Running(1, 0, 1.0, 1, 0, (("H100", (0,)),)),
        Running(2, 0, 2.0, 1, 0, (("H100", (1,)),)),
        Running(3, 0, 3.0, 2, 0),  # newest, but holds no GPU: spared
        Running(4, 5, 0.0, 0, 0),
    ]
    d = schedule([Request(9, 3, 5.0, 1, 0, (("H100", 1),))], running, cap)
    assert d.preempt == [2] and d.waiting == {9: "preempting"}
    # Already releasing: nothing more is preempted.
    d = schedule(
        [Request(9, 3, 5.0, 1, 0, (("H100", 1),))],
        [replace(running[1], releasing=True, preemptible=False)] + running[::2],
        cap,
    )
    assert d.preempt == [] and d.waiting == {9: "preempting"}


def test_backfill_keeps_room_for_a_job_waiting_on_preemption():
    cap = Capacity(8, 65536, {})
    running = [Running(1, 9, 0.0, 4, 0, preemptible=False), Running(2, 0, 1.0, 2, 0)]
    pending = [Request(3, 5, 2.0, 4, 0), Request(4, 0, 3.0, 2, 0)]
    d = schedule(pending, running, cap)
    # Job 4 fits the 2 free CPUs, but P (job 3) needs them once job 2 has been preempted.
    assert d.preempt == [2] and d.start == []
    assert d.waiting == {3: "preempting", 4: "priority"}


def test_never_preempts_a_releasing_job_again():
    cap = Capacity(2, 65536, {})
    running = [Running(1, 0, 1.0, 1, 0), Running(2, 0, 2.0, 1, 0, releasing=True)]
    d = schedule([Request(3, 1, 3.0, 2, 0)], running, cap)
    assert d.preempt == [1] and d.waiting == {3: "preempting"}


def test_no_preemption_when_it_cannot_help():
    cap = Capacity(4, 65536, {})
    running = [Running(1, 0, 1.0, 2, 0, preemptible=False), Running(2, 0, 2.0, 1, 0), Running(3, 3, 0.0, 1, 0)]
    d = schedule([Request(9, 3, 5.0, 3, 0)], running, cap)  # would need job 1 or 3 too
    assert d.preempt == [] and d.waiting == {9: "resources"}


def test_never_fits_messages():
    cap = Capacity(2, 2048, {"A100": (0, 1, 2, 3)})
    assert never_fits(Request(1, 0, 0, 1, 1024), cap) is None
    assert never_fits(Request(1, 0, 0, 64, 0), cap) == "needs 64 CPUs but capacity is 2 CPUs"
    assert never_fits(Request(1, 0, 0, 1, 4096), cap) == ("needs 4 GiB of memory but capacity is 2 GiB")
    assert never_fits(Request(1, 0, 0, 1, 0, (("H100", 8),)), cap) == ("needs 8 H100 but this machine has 0")
    assert never_fits(Request(1, 0, 0, 1, 0, (("H100", 8), ("A100", 8))), cap) == (
        "needs 8 H100 or 8 A100 but this machine has 0 H100 and 4 A100"
    )
    d = schedule([Request(1, 9, 0, 64, 0), Request(2, 0, 0, 1, 0)], [], cap)
    assert [j for j, _ in d.start] == [2] and d.waiting == {1: "resources"}


def test_thousand_pending_jobs_are_fast():
    cap = Capacity(64, 512 * 1024, {"H100": tuple(range(8)), "A100": tuple(range(8))})
    running = [Running(i, i % 3, float(i), 1, 1024, (("H100", (i,)),) if i < 8 else ()) for i in range(40)]
    pending = [
        Request(
            1000 + i,
            i % 4,
            float(i),
            0.5 + i % 8,
            512 * (i % 16),
            ((("H100", 1 + i % 4), ("A100", 2)) if i % 3 == 0 else ()),
        )
        for i in range(1000)
    ]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        d = schedule(pending, running, cap)
        best = min(best, time.perf_counter() - t0)
    check(pending, running, cap, d)
    assert best < 0.05, best  # typically a few milliseconds
