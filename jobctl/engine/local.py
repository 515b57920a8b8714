"""One pass of the supervisor over the database: record what the backend observed, resolve
dependencies and timeouts, and ask the scheduler what to start and what to preempt.

Everything here runs inside one write transaction (`Engine.tick`); process work that must happen
after the commit (forking runners, signalling) is returned as a list of actions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobctl.backends.local.backend import LocalBackend, backend_id
from jobctl.backends.local.plan import RunnerPlan
from jobctl.core import states
from jobctl.core.models import JobSpec
from jobctl.core.scheduler import Allocation, Capacity, Decisions, UserPolicy, schedule
from jobctl.engine.rules import (
    build_runner_plan,
    dependency_outcome,
    dependency_verdict,
    failure_detail,
    request_of,
    running_of,
)
from jobctl.store.database import Store
from jobctl.store.records import Job, dumps, loads

__all__ = [
    "Actions",
    "Engine",
    "dependency_outcome",
    "dependency_verdict",
    "failure_detail",
    "request_of",
    "running_of",
]

RETRY_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before attempt 2, 3, ...
NEVER_STARTED_AFTER = 10.0
QUEUE_WINDOW = 64  # waiting jobs the scheduler looks at in one pass, best-ranked first
FIRST_LOOK = 8  # the window's head, decided first (see Engine.start_waiting)
FIRST_SIGHT = 0.5  # seconds after its start when a busy slot runner's attempt is first read (see tick)
# Past its timeout a job still gets the kill grace, and a moment to be seen ending: the end bounds
# that backfill plans with (scheduler.py) add both, to running jobs and to candidates alike.
END_SLACK = 5.0


@dataclass
class Actions:
    start: list[tuple[int, int, RunnerPlan]] = field(default_factory=list)  # job, attempt, plan
    cancel: list[tuple[str, str, float, str | None]] = field(default_factory=list)  # bid, reason, grace, message
    next_wake: float | None = None
    more: bool = False  # the scheduler saw a full window and room may be left: pass again at once
    looked: int = 0  # waiting jobs the pass read and scheduled in full (the window's head, or all of it)

    def wake_at(self, when: float) -> None:
        self.next_wake = when if self.next_wake is None else min(self.next_wake, when)


class Engine:
    def __init__(
        self,
        backend: LocalBackend,
        capacity: Capacity | None,  # None: an engine that only records what ended (see record_ended)
        socket_path: str,
        grace: float,
        cgroup_pool: str | None = None,
        paths: Any = None,
    ):
        self.backend = backend
        self.capacity = capacity
        self.socket_path = socket_path
        self.grace = grace
        self.cgroup_pool = cgroup_pool  # folder of the memory cgroup pool's lock files
        self._specs: dict[int, JobSpec] = {}
        self.paths = paths  # where the jobs' secrets files are (None: jobs without secrets only)
        self.sweeper = None
        self.user_limits: tuple[int | None, int | None] = (None, None)  # limits.max_*_per_user (a shared queue)
        self.first_look = FIRST_LOOK  # the window's head (see start_waiting); QUEUE_WINDOW: always all of it
        self.settled: set[str] = set()  # single-node attempts seen running with their worker's PID (see tick)
        if paths is not None:
            from jobctl.home.secrets import Sweeper

            self.sweeper = Sweeper(paths)

    def spec(self, db: Store, spec_id: int) -> JobSpec:
        if spec_id not in self._specs:
            self._specs[spec_id] = JobSpec.from_dict(json.loads(db.spec_body(spec_id)))
        return self._specs[spec_id]

    # -- the pass --------------------------------------------------------------------------------
    def tick(self, db: Store, now: float, own: dict[str, int], busy: frozenset[str] = frozenset()) -> Actions:
        """`own`: backend id -> PID of the runners this supervisor forked and that still live.

        `busy`: attempts of `own` whose runner has said nothing since it was handed them (a slot runner
        says when its attempt ends; it dies, or it is not busy). Such an attempt is read once, FIRST_SIGHT
        after its start (to record its worker's PID), and then, single-node, not again: nothing in its
        files can have changed that the pass acts on (an end, a lost runner come with a word or a
        SIGCHLD; a rank's exit, with a word on the socket, is read because multi-node attempts are)."""
        actions = Actions()
        self.record_attempts(db, now, own, actions, busy=busy)
        self.settle_dependencies(db, now)
        self.expire(db, now, actions)
        self.start_waiting(db, now, actions)
        if self.sweeper is not None:
            self.sweeper.sweep(db)  # secrets of jobs that ended are removed
        return actions

    def holding(self, db: Store) -> list[Job]:
        """Jobs whose processes may exist: running, frozen, or still ending after a kill or preemption."""
        return db.holding("local")

    def record_ended(self, db: Store, now: float) -> None:
        """Record only the attempts whose runner wrote its result: safe from any process, with or without a
        supervisor (each end is a compare-and-set), so a command shows the true end even after a crash."""
        self.record_attempts(db, now, {}, Actions(), ended_only=True)

    def record_attempts(
        self,
        db: Store,
        now: float,
        own: dict[str, int],
        actions: Actions,
        ended_only: bool = False,
        busy: frozenset[str] = frozenset(),
    ) -> None:
        """Each job in its own savepoint: a job whose files are garbage (or any error while handling
        one job) fails that job alone, never the whole pass."""
        settled = self.settled
        held = set()
        for job in self.holding(db):
            bid = backend_id(job.id, job.attempt)
            held.add(bid)
            if bid in busy and job.state == states.ACTIVE:
                if bid in settled:
                    continue
                seen = (job.started_at or 0.0) + FIRST_SIGHT
                if now < seen:  # most short attempts end before then, and say so: one read, at their end
                    actions.wake_at(seen)
                    continue
            if ended_only and not (self.backend.attempt_dir(bid) / "result.json").exists():
                continue
            try:
                with db.savepoint("observe_job"):
                    self._observe_one(db, job, now, own, actions)
            except Exception as exc:  # noqa: BLE001 - a bad state file, or a bug met by one job
                try:
                    with db.savepoint("observe_job"):
                        self._lose(db, job, now, actions, exc, own)
                except Exception:  # noqa: BLE001 - left as it was; logged, and the pass goes on
                    _log_exception()
        if not ended_only:
            settled &= held

    def _lose(
        self,
        db: Store,
        job: Job,
        now: float,
        actions: Actions,
        exc: Exception,
        own: dict[str, int],
    ) -> None:
        """FAILED (worker lost) for a job whose attempt cannot be read; its runner is asked to end.

        The runner is found through runner.json (which may be the bad file), or, when it is this
        supervisor's own child (a PID that cannot have been reused: it is not reaped yet), directly.
        """
        from jobctl.backends.local.runner import BadStateFile

        if not isinstance(exc, BadStateFile):
            _log_exception()  # the supervisor's log: a bug, but only this job pays for it
        bid = backend_id(job.id, job.attempt)
        message = f"attempt {job.attempt}: its state files could not be read ({exc}); the job was failed"
        db.lose_attempt(job.id, job.attempt, now)
        db.release_alloc(job.id)
        db.transition(
            job.id,
            states.FAILED,
            expect=states.LIVE,
            reason="worker_lost",
            detail=states.REASON_TEXT.get("worker_lost", "worker lost"),
            message=message,
            now=now,
            fields={"failures": job.failures + 1},
        )
        # Its runner may live on (the files were garbage, not the runner): it is asked to end the attempt,
        # whichever process records the loss (a command's record_ended as well as the supervisor).
        self.backend.abandon(bid, message, own.get(bid))

    def _observe_one(self, db: Store, job: Job, now: float, own: dict[str, int], actions: Actions) -> None:
        bid = backend_id(job.id, job.attempt)
        obs = self.backend.observe(bid, job.num_nodes)
        for w in obs.workers:
            db.update_worker(job.id, job.attempt, w.rank, w.state, w.exit_code, w.pid)
        if bid in own:
            db.set_runner_pid(job.id, job.attempt, own[bid])
        if obs.state == "CREATED":
            started = db.attempt(job.id, job.attempt)
            if bid in own:
                return  # our own fresh child, about to write runner.json
            if started is None or now - (started.started_at or 0) > NEVER_STARTED_AFTER:
                self._requeue_unstarted(db, job, now)
            return
        if obs.state in ("ACTIVE", "FAILING"):
            if obs.state == "ACTIVE" and job.num_nodes == 1 and all(w.pid for w in obs.workers):
                self.settled.add(bid)
            ending = self._ending_reason(job)
            if ending:  # recorded as ending, yet its attempt runs: the signal may have been lost, send it again
                actions.cancel.append((bid, ending, self.grace, None))
                return
            if obs.state == "FAILING" and job.state == states.ACTIVE:
                db.transition(
                    job.id,
                    states.FAILING,
                    expect={states.ACTIVE},
                    reason="workers_failed",
                    detail=obs.message,
                    now=now,
                )
            return
        self._finish_attempt(db, job, obs, now, actions)

    @staticmethod
    def _ending_reason(job: Job) -> str | None:
        """Why a job's attempt must end although it still runs: killed, released or preempted; else None."""
        if job.state == states.KILLED:
            return "killed"
        if job.state == states.SUSPENDED and job.reason == "released":
            return "released"
        if job.state == states.SUSPENDED and job.reason == "system":
            return "preempted"
        return None

    def _requeue_unstarted(self, db: Store, job: Job, now: float) -> None:
        db.delete_attempt(job.id, job.attempt)
        fields = {"alloc": None, "attempt": job.attempt - 1}
        if job.state in states.RUNNING:
            db.transition(
                job.id,
                states.PENDING,
                reason=None,
                message="requeued: its runner never started",
                now=now,
                fields=fields,
            )
        else:
            db.requeue_alloc(job.id, job.attempt - 1)

    def _finish_attempt(self, db: Store, job: Job, obs: Any, now: float, actions: Actions) -> None:
        job_id, state = job.id, job.state
        # the job's real end (the runner's own clock), not the moment a supervisor noticed it
        now = min(obs.ended_at or now, now)  # (a retry's backoff counts from there too)
        db.end_attempt(job_id, job.attempt, now, obs.reason or obs.state.lower(), obs.exit_code)
        db.record_usage(job_id, job.attempt, obs.usage)
        db.release_alloc(job_id)
        if state == states.KILLED:
            db.keep_exit_code(job_id, obs.exit_code)
            return
        if state == states.SUSPENDED and job.reason in ("system", "released") and obs.state == "KILLED":
            # ended on purpose: waits to be started again (a natural end just before is recorded); an
            # attempt that did not fail does not use up the retries, so the last allowed number moves on
            db.extend_attempts(job_id)
            return
        if obs.state == "COMPLETED":
            db.transition(job_id, states.COMPLETED, now=now, fields={"exit_code": 0})
            return
        reason = obs.reason if obs.state == "FAILED" else (obs.reason or "exit_code")
        if reason == "worker_lost" and obs.exit_code is None:
            obs.message = obs.message or "the job's processes vanished without an exit code"
        failures = job.failures + 1
        attempt, last = job.attempt, job.max_attempts  # one numbering: see states.attempt_text
        if attempt < last:
            delay = RETRY_BACKOFF[min(failures - 1, len(RETRY_BACKOFF) - 1)]
            db.transition(
                job_id,
                states.RETRYING,
                reason=reason,
                detail=f"attempt {attempt + 1}/{last}",
                message=f"attempt {attempt} failed ({failure_detail(reason, obs.message, obs.exit_code)}); "
                f"attempt {attempt + 1} of at most {last} in {delay:g}s",
                now=now,
                fields={"failures": failures, "not_before": now + delay, "exit_code": obs.exit_code},
            )
            actions.wake_at(now + delay)
            return
        db.transition(
            job_id,
            states.FAILED,
            reason=reason,
            detail=failure_detail(reason, obs.message, obs.exit_code),
            message=obs.message,
            now=now,
            fields={"failures": failures, "exit_code": obs.exit_code},
        )

    # -- dependencies and timeouts ---------------------------------------------------------------
    def settle_dependencies(self, db: Store, now: float) -> None:
        for _ in range(100):  # to a fixed point: an upstream failure spreads down a chain at once
            changed = False
            for job_id in db.blocked_ids("local"):
                deps = db.dependencies(job_id)
                verdict, reason, message = dependency_outcome(deps)
                if verdict == "wait":
                    continue
                if verdict == "ok":
                    changed |= db.transition(job_id, states.PENDING, expect={states.BLOCKED}, now=now) is not None
                else:
                    assert reason is not None  # a dependency that can never be met says why
                    changed |= (
                        db.transition(
                            job_id,
                            states.FAILED,
                            expect={states.BLOCKED},
                            reason=reason,
                            detail=states.REASON_TEXT[reason],
                            message=message,
                            now=now,
                        )
                        is not None
                    )
            if not changed:
                return

    def expire(self, db: Store, now: float, actions: Actions) -> None:
        for row in db.expiring("local"):
            assert row.queue_deadline is not None
            if now >= row.queue_deadline:
                limit = self.spec(db, row.spec_id).queue_timeout or 0
                db.transition(
                    row.id,
                    states.FAILED,
                    reason="queue_timeout",
                    detail="queue timeout",
                    message=f"waited longer than its queue_timeout of {limit:g}s",
                    now=now,
                )
            else:
                actions.wake_at(row.queue_deadline)

    # -- scheduling --------------------------------------------------------------------------------
    def start_waiting(self, db: Store, now: float, actions: Actions) -> None:
        # The queue window: the best-ranked waiting jobs (an index keeps this cheap however long the
        # queue and the history are). Jobs beyond it wait for a later pass; rank order is kept.
        #
        # The pass first decides for the window's head alone (FIRST_LOOK jobs). The scheduler is greedy in
        # rank order, so the head's decisions are those the whole window would get; the rest of the window
        # is then read as light rows, and when none of it could start (nothing it asks for fits what the
        # head's starts leave free, a blocked job already holds the reservation, no queue cap, throttle
        # or second user to weigh) each of those jobs just waits for resources, as a pass over the whole
        # window would have said. Otherwise the pass decides again over the whole window.
        from jobctl.engine import queueing

        holding = self.holding(db)
        memo = self.__dict__.setdefault("queueing_memo", {})  # what the last pass said, see queueing.prepare
        gate = queueing.prepare(db, now, holding, actions, memo)  # start times, paused/full queues, throttles
        preempted = db.preempted_waiting("local")
        size = QUEUE_WINDOW if preempted else min(self.first_look, QUEUE_WINDOW)
        rows = db.startable_window("local", now, size, gate.closed_queues, gate.closed_arrays)
        decided = self._decide(db, now, actions, rows + preempted, holding, gate)
        waits: list[tuple[int, str, str | None, str | None]] = []
        if len(rows) == size < QUEUE_WINDOW:
            rest = db.window_rest("local", now, size, QUEUE_WINDOW - size, gate.closed_queues, gate.closed_arrays)
            only_waits = decided is not None and self._rest_only_waits(decided, rest, gate, now, actions, waits)
            if not only_waits:
                waits.clear()
                rows = db.startable_window("local", now, QUEUE_WINDOW, gate.closed_queues, gate.closed_arrays)
                decided = self._decide(db, now, actions, rows + preempted, holding, gate)
        actions.looked = len(rows) + len(preempted)
        for job_id, reason, detail, message in waits:
            db.set_wait_reason(job_id, reason, detail, message)
        if decided is None:
            return
        by_id, decisions, _ = decided
        actions.more = (
            len(rows) >= QUEUE_WINDOW and bool(decisions.start) and "resources" not in decisions.waiting.values()
        )
        for job_id, alloc in decisions.start:
            try:
                with db.savepoint("start_job"):
                    self._start(db, by_id[job_id], alloc, now, actions)
            except Exception as exc:  # noqa: BLE001 - one job's bad record fails that job, not the pass
                _log_exception()
                db.transition(
                    job_id,
                    states.FAILED,
                    reason="start_error",
                    detail=states.REASON_TEXT.get("start_error", "start error"),
                    message=f"could not prepare the job: {exc}",
                    now=now,
                )
        for job_id in decisions.preempt:
            victim = db.job(job_id)
            if (
                victim is not None
                and db.transition(
                    job_id,
                    states.SUSPENDED,
                    expect=states.RUNNING,
                    reason="system",
                    detail="by system",
                    message="preempted by a higher-priority job",
                    now=now,
                )
                is not None
            ):
                actions.cancel.append((backend_id(job_id, victim.attempt), "preempted", self.grace, None))
        for job_id, why in decisions.waiting.items():
            row = by_id[job_id]
            detail, message = states.REASON_TEXT.get(why, why), row.message
            if why in queueing.HELD_BACK:
                detail, message = queueing.detail(why, row), queueing.message(why, row)
            elif job_id in decisions.behind:  # fits the free resources, but a blocked job comes first
                ahead = decisions.behind[job_id]
                detail = f"behind {ahead}"
                message = f"waits behind job {ahead} ({by_id[ahead].name}), which needs the free resources first"
                if decisions.reserved and decisions.reserved[0] == ahead:
                    import datetime as dt

                    due = dt.datetime.fromtimestamp(decisions.reserved[1]).strftime("%H:%M:%S")
                    message += f" (due to start by {due}); it would still run then"
            elif (message or "").startswith("waits behind job") or row.reason in queueing.HELD_BACK:
                message = None  # no longer true
            if row.state == states.PENDING and (row.reason, row.detail, row.message) != (
                why,
                detail,
                message,
            ):
                db.set_wait_reason(job_id, why, detail, message)

    def _decide(
        self, db: Store, now: float, actions: Actions, rows: list[Job], holding: list[Job], gate: Any
    ) -> tuple[dict[int, Job], Decisions, UserPolicy | None] | None:
        """The scheduler's decisions for these waiting rows (None: none may start now)."""
        from jobctl.engine import queueing

        pending = []
        for row in rows:
            if row.state == states.RETRYING and row.not_before is not None and row.not_before > now:
                actions.wake_at(row.not_before)
                continue
            pending.append(row)
        if not pending:
            return None
        by_id = {row.id: row for row in pending}
        requests = [request_of(row, self.limit(db, row)) for row in pending]
        running = [running_of(row, self.ends_by(db, row)) for row in holding]
        assert self.capacity is not None, "an engine without a capacity does not schedule"
        from jobctl.engine.fairshare import user_policy

        users = user_policy(db, pending, holding, self.user_limits, now)  # fair share, per-user caps
        decisions = schedule(
            requests, running, self.capacity, now, gate.limits, queueing.throttles(rows + holding), users
        )
        return by_id, decisions, users

    @staticmethod
    def _rest_only_waits(
        decided: tuple[dict[int, Job], Decisions, UserPolicy | None],
        rest: list[Any],
        gate: Any,
        now: float,
        actions: Actions,
        waits: list[tuple[int, str, str | None, str | None]],
    ) -> bool:
        """Whether every job of the window's rest can only wait for resources after the head's decisions
        (see start_waiting); when so, the wait reasons that change are added to `waits`."""
        from jobctl.engine import queueing

        by_id, decisions, users = decided
        free = decisions.free
        if users is not None or decisions.blocked is None or free is None:
            return False  # fair share reorders; without a blocked job, the next one would plan for itself
        user = next(iter(by_id.values())).user
        retry_at = []
        for row in rest:
            if row.state == states.RETRYING and row.not_before is not None and row.not_before > now:
                retry_at.append(row.not_before)  # not a candidate now: it wakes the supervisor later
                continue
            if (
                row.user != user
                or row.queue in gate.limits
                or row.array_throttle is not None
                or free.fits(row.cpus, row.memory_mib, (None, 0))
            ):
                return False
            if row.state != states.PENDING:
                continue
            message = row.message
            if (message or "").startswith("waits behind job") or row.reason in queueing.HELD_BACK:
                message = None  # no longer true
            detail = states.REASON_TEXT.get("resources", "resources")
            if (row.reason, row.detail, row.message) != ("resources", detail, message):
                waits.append((row.id, "resources", detail, message))
        for when in retry_at:
            actions.wake_at(when)
        return True

    def limit(self, db: Store, row: Job) -> float | None:
        """How long a waiting job may hold resources once started (None: no timeout)."""
        timeout = self.spec(db, row.spec_id).timeout
        return None if timeout is None else timeout + self.grace + END_SLACK

    def ends_by(self, db: Store, row: Job) -> float | None:
        """A time by which a job holding resources will have ended: its timeout; None when unknown
        (no timeout, or frozen during this attempt: frozen time does not count against it)."""
        limit = self.limit(db, row)
        if limit is None or row.started_at is None or (row.state == states.SUSPENDED and row.reason == "user"):
            return None
        frozen = db.frozen_since(row.id, row.started_at)
        return None if frozen else row.started_at + limit

    def _start(self, db: Store, job: Job, alloc: Allocation, now: float, actions: Actions) -> None:
        attempt = job.attempt + 1
        spec = self.spec(db, job.spec_id)
        alloc_json = {
            "cpus": alloc.cpus,
            "memory_mib": alloc.memory_mib,
            "accelerator": alloc.accelerator,
            "devices": list(alloc.devices),
        }
        src = db.transition(
            job.id,
            states.ACTIVE,
            reason=None,
            now=now,
            fields={"attempt": attempt, "started_at": now, "alloc": dumps(alloc_json), "not_before": None},
        )
        if src is None:
            return
        db.add_attempt(job.id, attempt, now)
        db.add_workers(job.id, attempt, job.num_nodes)
        actions.start.append((job.id, attempt, self.runner_plan(job, spec, attempt, alloc)))

    def runner_plan(self, job: Job, spec: JobSpec, attempt: int, alloc: Allocation) -> RunnerPlan:
        env = {k: v for k, v in spec.envs.items() if v is not None}
        envs = loads(job.envs, {})
        env.update(envs.get("env") or {})
        secrets_file = None
        if envs.get("secrets"):
            from jobctl.home.secrets import path_of

            secrets_file = str(path_of(self.paths, envs)) if self.paths is not None else None
            if secrets_file is None:
                raise ValueError("its secrets file is unknown")
        return build_runner_plan(
            job,
            spec,
            attempt,
            alloc,
            grace=self.grace,
            socket=self.socket_path,
            cgroup_pool=self.cgroup_pool,
            secrets_file=secrets_file,
            umask=envs.get("umask"),
            env=env,
            run_as=envs.get("run_as"),
            base_env=envs.get("base_env"),
        )


def _log_exception() -> None:
    import sys
    import traceback

    traceback.print_exc()
    sys.stderr.flush()
