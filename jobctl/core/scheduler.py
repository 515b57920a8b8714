"""Local scheduling (SPEC §7): a pure function from jobs and capacity to decisions.

`schedule` does no I/O and reads no clock; the supervisor calls it on every wake-up with the
jobs waiting to start, the jobs holding resources and the machine's capacity, and acts on the
returned `Decisions`.

Rank: priority (higher first), then submission order (older first), then job ID.

Starting: pending jobs are walked in rank order. A job starts when it fits the free resources
(capacity minus everything held by running jobs and by jobs started earlier in this call), taking
the first of its accelerator alternatives that can be satisfied and the lowest free device indices.
A job that could not fit even an empty machine (`never_fits`) is skipped: it neither starts nor
reserves anything and waits with reason "resources".

Backfill: job durations are unknown, so "does not delay a blocked job" is defined on resources
alone. Every job that does not start (a *blocked* job, whatever its reason) reserves its need: the
first alternative that could fit an empty machine. Let P be the first (highest-ranked) blocked job.
A job J ranked below P may start only if, besides fitting the free resources now, it fits (on
each resource J uses: CPUs, memory, and its accelerator if any)

    capacity - reserved needs of the blocked jobs ranked above J
             - jobs started in this call ranked between P and J (J included)
             - running jobs ranked below P (except those already releasing or preempted now)

so once the running jobs ranked above P (and the releasing ones) end, every blocked job ranked
above J fits alongside everything ranked below P. Counting the lower-ranked *running* jobs as well (not only this call's
starts) is what stops a stream of small jobs, each backfilled in a different call, from starving
P forever. When P is waiting on preemption (below), J must also fit in what P leaves of
`free + resources of releasing/preempted jobs`, so P starts as soon as those have ended.
A job that fits the free resources but is refused by these rules waits with reason "priority",
and `Decisions.behind` names P, the job it must not delay.

Backfill with time limits (EASY): when P waits for resources alone (no preemption can help) and
every job it needs to end has a known bound on its end (`Running.ends_by`: its timeout), P has a
*reserved start*: the first of those ends at which P fits, counting every job started in this call
as holding its resources until its own bound (`now + Request.limit`), or for good when it has none.
Then the rule above is replaced by: a job J ranked below P may start when it fits the free
resources now and either ends by P's reserved start (its `limit` is known and `now + limit` is not
later), or fits in what P leaves free at its reserved start (`extra`, which it then takes). So no
job started in a call moves P's reserved start later. Without known bounds (a running job with no
timeout, a frozen one) the resource-only rule above applies unchanged.

Preemption, for P only (at most one target per call): if P fits `free + releasing` nothing more is
preempted. Otherwise, if terminating preemptible, not-yet-releasing running jobs of strictly lower
priority can make P fit, they are chosen lowest priority first, then newest first, until P fits,
and any victim that turns out unnecessary is spared. Either way P then waits "preempting". If not
even all of them would be enough, nothing is preempted. Jobs started in this call are never
preempted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from jobctl.core.resources import (  # re-exported: the scheduler's inputs and outputs
    EPS,
    Allocation,
    Capacity,
    Option,
    Pool,
    Request,
    Running,
    never_fits,
    options,
    rank_key,
)

__all__ = [  # the resource types are part of the scheduler's interface (defined in core/resources.py)
    "Allocation",
    "Capacity",
    "Decisions",
    "QueueLimit",
    "Request",
    "Running",
    "UserCaps",
    "UserPolicy",
    "fair_order",
    "never_fits",
    "rank_key",
    "reserved_start",
    "schedule",
]


class QueueLimit(NamedTuple):
    """What one named queue lets its jobs hold at once (None: no cap), and whether it is paused."""

    max_running: int | None = None
    cpus: float | None = None
    gpus: int | None = None
    paused: bool = False


class _Gate:
    """Queue caps and array throttles (SPEC section 9), counted over every job holding resources.

    A job its queue or its array holds back neither starts nor reserves anything: it is not a
    blocked job for backfill, since more free resources would not let it start.
    """

    def __init__(self, running: Sequence[Running], queues: dict[str, QueueLimit], throttles: dict[int, int]):
        self.queues, self.throttles = queues, throttles
        self.count: dict[str, int] = {}
        self.cpus: dict[str, float] = {}
        self.gpus: dict[str, int] = {}
        self.group: dict[int, int] = {}
        for job in running:
            self._add(job.queue, job.group, job.cpus, sum(len(i) for _, i in job.devices))

    def _add(self, queue: str, group: int | None, cpus: float, gpus: int) -> None:
        self.count[queue] = self.count.get(queue, 0) + 1
        self.cpus[queue] = self.cpus.get(queue, 0.0) + cpus
        self.gpus[queue] = self.gpus.get(queue, 0) + gpus
        if group is not None:
            self.group[group] = self.group.get(group, 0) + 1

    def why_not(self, req: Request) -> str | None:
        """ "queue_paused", "queue_full" or "throttled" when `req` may not start now, else None."""
        limit = self.queues.get(req.queue)
        if limit is not None:
            if limit.paused:
                return "queue_paused"
            gpus = max((count for _, count in req.accelerators), default=0)
            if (
                (limit.max_running is not None and self.count.get(req.queue, 0) >= limit.max_running)
                or (limit.cpus is not None and self.cpus.get(req.queue, 0.0) + req.cpus > limit.cpus + EPS)
                or (limit.gpus is not None and self.gpus.get(req.queue, 0) + gpus > limit.gpus)
            ):
                return "queue_full"
        throttle = self.throttles.get(req.group) if req.group is not None else None
        if throttle is not None and self.group.get(req.group, 0) >= throttle:  # type: ignore[arg-type]
            return "throttled"
        return None

    def take(self, req: Request, option: Option) -> None:
        self._add(req.queue, req.group, req.cpus, option[1] if option[0] is not None else 0)


@dataclass
class Decisions:
    start: list[tuple[int, Allocation]] = field(default_factory=list)  # in start order
    preempt: list[int] = field(default_factory=list)  # running job IDs to terminate gracefully
    # job ID -> why it does not start: "resources" | "priority" | "preempting"
    waiting: dict[int, str] = field(default_factory=dict)
    behind: dict[int, int] = field(default_factory=dict)  # "priority" job ID -> the blocked job P
    reserved: tuple[int, float] | None = None  # (P, its reserved start) when known (EASY backfill)
    blocked: int | None = None  # P, the first blocked job (it alone may preempt and is planned for)
    free: Pool | None = field(default=None, compare=False, repr=False)  # what the starts leave free


def _plan_preemption(req: Request, free: Pool, running: Sequence[Running]) -> tuple[list[Running], Pool] | None:
    """Victims that make the blocked `req` fit, and the pool it then fits in; None if impossible.

    An empty victim list means jobs already releasing will make room.
    """
    opts = options(req)

    def fits(pool: Pool) -> bool:
        return any(pool.fits(req.cpus, req.memory_mib, o) for o in opts)

    pool = free.copy()
    for job in running:
        if job.releasing:
            pool.add_running(job)
    if fits(pool):
        return [], pool
    candidates = sorted(
        (j for j in running if j.preemptible and not j.releasing and j.priority < req.priority),
        key=lambda j: (j.priority, -j.order, -j.job_id),  # lowest priority, then newest, first
    )
    everything = pool.copy()
    for job in candidates:
        everything.add_running(job)
    if not fits(everything):
        return None
    victims: list[Running] = []
    for job in candidates:
        pool.add_running(job)
        victims.append(job)
        if fits(pool):
            break
    # Spare victims that are not needed after all (e.g. CPU-only jobs when P needs devices),
    # trying the highest-ranked ones first. `fits` is monotone, so the result is 1-minimal.
    for job in reversed(victims[:]):
        pool.add_running(job, -1)
        if fits(pool):
            victims.remove(job)
        else:
            pool.add_running(job)
    return victims, pool


def reserved_start(
    req: Request, free: Pool, holders: Iterable[tuple[float | None, Pool]], now: float
) -> tuple[float, Pool] | None:
    """When the blocked `req` is sure to fit, and what it then leaves free; None if unknown.

    `free`: resources free now; `holders`: (end bound or None, resources) of what holds the rest.
    """
    opts = options(req)
    pool = free.copy()
    ends = sorted(((end, res) for end, res in holders if end is not None), key=lambda x: x[0])
    at = now
    for end, res in [(now, None), *ends]:
        if res is not None:
            pool.add(res.cpus, res.memory_mib, res.devices.items())
            at = max(now, end)
        opt = next((o for o in opts if pool.fits(req.cpus, req.memory_mib, o)), None)
        if opt is not None:
            pool.take(req.cpus, req.memory_mib, opt)
            return at, pool
    return None


def _held(cpus: float, memory_mib: int, devices: Iterable[tuple[str, int]]) -> Pool:
    pool = Pool(0.0, 0, {})
    pool.add(cpus, memory_mib, devices)
    return pool


def schedule(
    pending: Sequence[Request],
    running: Sequence[Running],
    capacity: Capacity,
    now: float = 0.0,
    queues: dict[str, QueueLimit] | None = None,
    throttles: dict[int, int] | None = None,
    users: UserPolicy | None = None,
) -> Decisions:
    """Decide which pending jobs start now, which running jobs to preempt, and why others wait.

    `queues`: the caps of named queues; `throttles`: array ID -> how many of its tasks may hold
    resources at once. A job held back by either waits with reason "queue_paused", "queue_full"
    or "throttled" and is otherwise ignored (see `_Gate`).

    `users`: fair share between users and per-user caps (a shared queue); None: rank order alone.
    The caps compose: a job starts only when its queue, its array and its user all let it; the
    queue's and the array's verdicts are said first (reason "queue_paused", "queue_full",
    "throttled"), then its user's ("user_limit")."""
    gate = _Gate(running, queues or {}, throttles or {})
    free = Pool.of(capacity)
    free_sets = {name: set(indices) for name, indices in capacity.devices.items()}
    for job in running:
        free.add_running(job, -1)
        for name, indices in job.devices:
            free_sets.get(name, set()).difference_update(indices)
    free_idx = {name: sorted(s) for name, s in free_sets.items()}  # lowest first
    free.devices = {name: len(idx) for name, idx in free_idx.items()}

    empty = Pool.of(capacity)
    out = Decisions()
    budget: Pool | None = None  # backfill budget, set at the first blocked job P
    soon: Pool | None = None  # what P leaves of free + releasing/preempted, when P is preempting
    first: int | None = None  # P's job ID
    shadow: float | None = None  # P's reserved start, when known (EASY backfill)
    extra: Pool | None = None  # what P leaves free at its reserved start
    holders = [
        (job.ends_by, _held(job.cpus, job.memory_mib, ((n, len(i)) for n, i in job.devices))) for job in running
    ]  # and the jobs started in this call, appended below

    order = sorted(pending, key=rank_key) if users is None else fair_order(pending, running, users)
    caps = UserCaps(users, running) if users is not None else None
    for req in order:
        if never_fits(req, capacity):
            out.waiting[req.job_id] = "resources"
            continue
        held_back = gate.why_not(req)
        if held_back is not None:
            out.waiting[req.job_id] = held_back
            continue
        if caps is not None and caps.over(req):  # waits for its own user's jobs; reserves nothing
            out.waiting[req.job_id] = "user_limit"
            continue
        opts = options(req)
        fit_now = [o for o in opts if free.fits(req.cpus, req.memory_mib, o)]
        if shadow is not None and extra is not None:  # EASY: ends before P's reserved start, or fits what P leaves
            ends_in_time = req.limit is not None and now + req.limit <= shadow
            chosen = next((o for o in fit_now if ends_in_time or extra.fits(req.cpus, req.memory_mib, o)), None)
            if chosen is not None and not ends_in_time:
                extra.take(req.cpus, req.memory_mib, chosen)
        else:
            chosen = next(
                (o for o in fit_now if all(p is None or p.fits(req.cpus, req.memory_mib, o) for p in (budget, soon))),
                None,
            )
        if chosen is not None:
            chosen_name, count = chosen
            devices: tuple[int, ...] = ()
            if chosen_name is not None:
                free_list = free_idx.get(chosen_name, [])  # absent only when count is 0
                devices = tuple(free_list[:count])
                del free_list[:count]
            for pool in (free, budget, soon):
                if pool is not None:
                    pool.take(req.cpus, req.memory_mib, chosen)
            out.start.append((req.job_id, Allocation(req.cpus, req.memory_mib, chosen_name, devices)))
            gate.take(req, chosen)
            if caps is not None:
                caps.took(req, count if chosen_name is not None else 0)
            end = None if req.limit is None else now + req.limit
            held = [(chosen_name, count)] if chosen_name is not None else []
            holders.append((end, _held(req.cpus, req.memory_mib, held)))
            continue

        # Blocked. It reserves the first alternative that could fit an empty machine.
        reserve = next(o for o in opts if empty.fits(req.cpus, req.memory_mib, o))
        if budget is None:  # the first blocked job P: nothing ranked above it waits
            plan = _plan_preemption(req, free, running)
            victims = plan[0] if plan else []
            out.preempt = [v.job_id for v in victims]
            gone = {v.job_id for v in victims}
            budget = Pool.of(capacity)
            key = rank_key(req)
            for job in running:  # lower-ranked running jobs that keep their resources
                if not job.releasing and job.job_id not in gone and rank_key(job) > key:
                    budget.add_running(job, -1)
            first = req.job_id
            if plan is not None:
                soon = plan[1]
                soon_opt = next(o for o in opts if soon.fits(req.cpus, req.memory_mib, o))
                soon.take(req.cpus, req.memory_mib, soon_opt)
                out.waiting[req.job_id] = "preempting"
            else:
                out.waiting[req.job_id] = "resources"
                known = reserved_start(req, free, holders, now)
                if known is not None:
                    shadow, extra = known
                    out.reserved = (req.job_id, shadow)
        else:
            out.waiting[req.job_id] = "priority" if fit_now else "resources"
            if fit_now and first is not None:  # first is set with budget
                out.behind[req.job_id] = first
        budget.take(req.cpus, req.memory_mib, reserve)
    out.blocked, out.free = first, free
    return out


# -- fair share and per-user caps (a shared queue, SPEC section 12) ------------------------------------
#
# Fair share changes only the order in which waiting jobs are looked at: priority still comes first,
# and among jobs of equal priority the user with the least *charge* goes next, where a user's charge
# is their recent usage (GPU-hours, then CPU-hours, decayed over a day: see jobctl/store/shared.py)
# plus what their running jobs hold and what was picked for them earlier in this pass, each job
# counted as CHARGE_HOURS of its GPUs and CPUs. So two users with equal usage alternate, and a user
# with a 1,000-task array running goes after another user's single waiting job. Within one user the
# rank order (priority, then submission) is kept. Everything after the order (fitting, backfill,
# preemption) is unchanged.
#
# Per-user caps: a job whose user already runs `max_running` jobs, or whose GPUs would take the user
# over `max_gpus`, waits with reason "user_limit" and reserves nothing (it is not the blocked job
# that backfill protects: it waits for its own user's jobs, not for resources).

CHARGE_HOURS = 1.0  # a running or just-picked job counts as this many hours of what it holds


@dataclass(frozen=True)
class UserPolicy:
    usage: dict[str, tuple[float, float]] = field(default_factory=dict)  # user -> (GPU-hours, CPU-hours), decayed
    max_gpus: int | None = None  # per user, held at once
    max_running: int | None = None  # per user, at once


def _gpu_count(req: Request) -> int:
    return max((count for _, count in req.accelerators), default=0)


def fair_order(pending: Sequence[Request], running: Sequence[Running], users: UserPolicy) -> list[Request]:
    """The waiting jobs in the order fair share looks at them (see above)."""
    charge: dict[str | None, list[float]] = {}

    def of(user: str | None) -> list[float]:
        if user not in charge:
            gpu_h, cpu_h = users.usage.get(user or "", (0.0, 0.0))
            charge[user] = [gpu_h, cpu_h]
        return charge[user]

    for job in running:
        held = of(job.user)
        held[0] += sum(len(i) for _, i in job.devices) * CHARGE_HOURS
        held[1] += job.cpus * CHARGE_HOURS
    levels: dict[int, dict[str | None, list[Request]]] = {}
    for req in sorted(pending, key=rank_key):
        levels.setdefault(req.priority, {}).setdefault(req.user, []).append(req)
    out: list[Request] = []
    for priority in sorted(levels, reverse=True):
        queues = {user: list(reversed(reqs)) for user, reqs in levels[priority].items()}  # pop() takes the best
        while queues:
            user = min(queues, key=lambda u: (*of(u), rank_key(queues[u][-1])))
            req = queues[user].pop()
            if not queues[user]:
                del queues[user]
            out.append(req)
            picked = of(user)
            picked[0] += _gpu_count(req) * CHARGE_HOURS
            picked[1] += req.cpus * CHARGE_HOURS
    return out


class UserCaps:
    """What each user's running jobs (and the jobs started in this pass) count against the caps."""

    def __init__(self, users: UserPolicy, running: Sequence[Running]):
        self.users = users
        self.jobs: dict[str | None, int] = {}
        self.gpus: dict[str | None, int] = {}
        for job in running:
            self.jobs[job.user] = self.jobs.get(job.user, 0) + 1
            self.gpus[job.user] = self.gpus.get(job.user, 0) + sum(len(i) for _, i in job.devices)

    def over(self, req: Request) -> bool:
        limit_jobs, limit_gpus = self.users.max_running, self.users.max_gpus
        if limit_jobs is not None and self.jobs.get(req.user, 0) + 1 > limit_jobs:
            return True
        wanted = min((count for _, count in req.accelerators), default=0)
        return limit_gpus is not None and wanted > 0 and self.gpus.get(req.user, 0) + wanted > limit_gpus

    def took(self, req: Request, gpus: int) -> None:
        self.jobs[req.user] = self.jobs.get(req.user, 0) + 1
        self.gpus[req.user] = self.gpus.get(req.user, 0) + gpus
