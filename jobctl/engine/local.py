"""One pass of the supervisor over the database: record what the backend observed, resolve
dependencies and timeouts, and ask the scheduler what to start and what to preempt.

Everything here runs inside one write transaction (`Engine.tick`); process work that must happen
after the commit (forking runners, signalling) is returned as a list of actions.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from jobctl.backends.local.backend import LocalBackend, backend_id
from jobctl.core import states
from jobctl.core.models import JobSpec
from jobctl.core.scheduler import Allocation, Capacity, Request, Running, schedule
from jobctl.store.database import dumps, loads, transition

RETRY_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before attempt 2, 3, ...
NEVER_STARTED_AFTER = 10.0
QUEUE_WINDOW = 64  # waiting jobs the scheduler looks at in one pass, best-ranked first
# Past its timeout a job still gets the kill grace, and a moment to be seen ending: the end bounds
# that backfill plans with (scheduler.py) add both, to running jobs and to candidates alike.
END_SLACK = 5.0


@dataclass
class Actions:
    start: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)  # job, attempt, plan
    cancel: list[tuple[str, str, float, str | None]] = field(default_factory=list)  # bid, reason, grace, message
    next_wake: float | None = None
    more: bool = False  # the scheduler saw a full window and room may be left: pass again at once

    def wake_at(self, when: float) -> None:
        self.next_wake = when if self.next_wake is None else min(self.next_wake, when)


def failure_detail(reason: str | None, message: str | None, exit_code: int | None) -> str | None:
    if reason == "exit_code":
        return f"exit {exit_code}"
    if reason == "workers_failed":
        return message
    return states.REASON_TEXT.get(reason or "", reason)


class Engine:
    def __init__(
        self,
        backend: LocalBackend,
        capacity: Capacity,
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
        if paths is not None:
            from jobctl.home.secrets import Sweeper

            self.sweeper = Sweeper(paths)

    def spec(self, conn: sqlite3.Connection, spec_id: int) -> JobSpec:
        if spec_id not in self._specs:
            body = conn.execute("SELECT body FROM specs WHERE id = ?", (spec_id,)).fetchone()[0]
            self._specs[spec_id] = JobSpec.from_dict(json.loads(body))
        return self._specs[spec_id]

    # -- the pass --------------------------------------------------------------------------------
    def tick(self, conn: sqlite3.Connection, now: float, own: dict[str, int]) -> Actions:
        """`own`: backend id -> PID of the runners this supervisor forked and that still live."""
        actions = Actions()
        self.observe(conn, now, own, actions)
        self.resolve_dependencies(conn, now)
        self.expire(conn, now, actions)
        self.schedule(conn, now, actions)
        if self.sweeper is not None:
            self.sweeper.sweep(conn)  # secrets of jobs that ended are removed
        return actions

    def holding(self, conn: sqlite3.Connection) -> list[sqlite3.Row]:
        """Jobs whose processes may exist: running, frozen, or still ending after a kill or preemption."""
        return conn.execute("SELECT * FROM jobs WHERE alloc IS NOT NULL AND backend = 'local'").fetchall()

    def record_ended(self, conn: sqlite3.Connection, now: float) -> None:
        """Record only the attempts whose runner wrote its result: safe from any process, with or without a
        supervisor (each end is a compare-and-set), so a command shows the true end even after a crash."""
        self.observe(conn, now, {}, Actions(), ended_only=True)

    def observe(
        self, conn: sqlite3.Connection, now: float, own: dict[str, int], actions: Actions, ended_only: bool = False
    ) -> None:
        """Each job in its own savepoint: a job whose files are garbage (or any error while handling
        one job) fails that job alone, never the whole pass."""
        for job in self.holding(conn):
            if (
                ended_only
                and not (self.backend.attempt_dir(backend_id(job["id"], job["attempt"])) / "result.json").exists()
            ):
                continue
            conn.execute("SAVEPOINT observe_job")
            try:
                self._observe_one(conn, job, now, own, actions)
            except Exception as exc:  # noqa: BLE001 - a bad state file, or a bug met by one job
                conn.execute("ROLLBACK TO observe_job")
                try:
                    self._lose(conn, job, now, actions, exc, own)
                except Exception:  # noqa: BLE001 - left as it was; logged, and the pass goes on
                    conn.execute("ROLLBACK TO observe_job")
                    _log_exception()
            conn.execute("RELEASE observe_job")

    def _lose(
        self,
        conn: sqlite3.Connection,
        job: sqlite3.Row,
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
        bid = backend_id(job["id"], job["attempt"])
        message = f"attempt {job['attempt']}: its state files could not be read ({exc}); the job was failed"
        conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = 'worker_lost' WHERE job_id = ? AND n = ?",
            (now, job["id"], job["attempt"]),
        )
        conn.execute(
            "UPDATE workers SET state = 'lost' WHERE job_id = ? AND attempt = ? AND state = 'running'",
            (job["id"], job["attempt"]),
        )
        conn.execute("UPDATE jobs SET alloc = NULL WHERE id = ?", (job["id"],))
        transition(
            conn,
            job["id"],
            states.FAILED,
            expect=states.LIVE,
            reason="worker_lost",
            detail=states.REASON_TEXT.get("worker_lost", "worker lost"),
            message=message,
            now=now,
            fields={"failures": job["failures"] + 1},
        )
        actions.cancel.append((bid, "worker_lost", 0.0, message))
        if bid in own:
            import contextlib
            import signal

            from jobctl.backends.local.runner import write_json

            with contextlib.suppress(OSError):
                write_json(
                    self.backend.attempt_dir(bid) / "kill.json",
                    {"reason": "worker_lost", "grace": 0.0, "message": message},
                )
            with contextlib.suppress(OSError):
                os.kill(own[bid], signal.SIGTERM)

    def _observe_one(
        self, conn: sqlite3.Connection, job: sqlite3.Row, now: float, own: dict[str, int], actions: Actions
    ) -> None:
        bid = backend_id(job["id"], job["attempt"])
        obs = self.backend.observe(bid, job["num_nodes"])
        for w in obs.workers:
            conn.execute(
                "UPDATE workers SET state = ?, exit_code = ?, pid = ? WHERE job_id = ? AND attempt = ? AND rank = ?"
                " AND (state != ? OR exit_code IS NOT ? OR pid IS NOT ?)",
                (w.state, w.exit_code, w.pid, job["id"], job["attempt"], w.rank, w.state, w.exit_code, w.pid),
            )
        if bid in own:
            conn.execute(
                "UPDATE attempts SET runner_pid = ? WHERE job_id = ? AND n = ? AND runner_pid IS NULL",
                (own[bid], job["id"], job["attempt"]),
            )
        if obs.state == "CREATED":
            started = conn.execute(
                "SELECT started_at FROM attempts WHERE job_id = ? AND n = ?", (job["id"], job["attempt"])
            ).fetchone()
            if bid in own:
                return  # our own fresh child, about to write runner.json
            if started is None or now - (started["started_at"] or 0) > NEVER_STARTED_AFTER:
                self._requeue_unstarted(conn, job, now)
            return
        if obs.state in ("ACTIVE", "FAILING"):
            ending = self._ending_reason(job)
            if ending:  # recorded as ending, yet its attempt runs: the signal may have been lost, send it again
                actions.cancel.append((bid, ending, self.grace, None))
                return
            if obs.state == "FAILING" and job["state"] == states.ACTIVE:
                transition(
                    conn,
                    job["id"],
                    states.FAILING,
                    expect={states.ACTIVE},
                    reason="workers_failed",
                    detail=obs.message,
                    now=now,
                )
            return
        self._finish_attempt(conn, job, obs, now, actions)

    @staticmethod
    def _ending_reason(job: sqlite3.Row) -> str | None:
        """Why a job's attempt must end although it still runs: killed, released or preempted; else None."""
        if job["state"] == states.KILLED:
            return "killed"
        if job["state"] == states.SUSPENDED and job["reason"] == "released":
            return "released"
        if job["state"] == states.SUSPENDED and job["reason"] == "system":
            return "preempted"
        return None

    def _requeue_unstarted(self, conn: sqlite3.Connection, job: sqlite3.Row, now: float) -> None:
        conn.execute("DELETE FROM workers WHERE job_id = ? AND attempt = ?", (job["id"], job["attempt"]))
        conn.execute("DELETE FROM attempts WHERE job_id = ? AND n = ?", (job["id"], job["attempt"]))
        fields = {"alloc": None, "attempt": job["attempt"] - 1}
        if job["state"] in states.RUNNING:
            transition(
                conn,
                job["id"],
                states.PENDING,
                reason=None,
                message="requeued: its runner never started",
                now=now,
                fields=fields,
            )
        else:
            conn.execute("UPDATE jobs SET alloc = NULL, attempt = ? WHERE id = ?", (job["attempt"] - 1, job["id"]))

    def _finish_attempt(
        self, conn: sqlite3.Connection, job: sqlite3.Row, obs: Any, now: float, actions: Actions
    ) -> None:
        job_id, state = job["id"], job["state"]
        # the job's real end (the runner's own clock), not the moment a supervisor noticed it
        now = min(obs.ended_at or now, now)  # (a retry's backoff counts from there too)
        conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, exit_code = ? WHERE job_id = ? AND n = ?",
            (now, obs.reason or obs.state.lower(), obs.exit_code, job_id, job["attempt"]),
        )
        conn.execute("UPDATE jobs SET alloc = NULL WHERE id = ?", (job_id,))
        if state == states.KILLED:
            conn.execute("UPDATE jobs SET exit_code = COALESCE(exit_code, ?) WHERE id = ?", (obs.exit_code, job_id))
            return
        if state == states.SUSPENDED and job["reason"] in ("system", "released") and obs.state == "KILLED":
            # ended on purpose: waits to be started again (a natural end just before is recorded); an
            # attempt that did not fail does not use up the retries, so the last allowed number moves on
            conn.execute("UPDATE jobs SET max_attempts = max_attempts + 1 WHERE id = ?", (job_id,))
            return
        if obs.state == "COMPLETED":
            transition(conn, job_id, states.COMPLETED, now=now, fields={"exit_code": 0})
            return
        reason = obs.reason if obs.state == "FAILED" else (obs.reason or "exit_code")
        if reason == "worker_lost" and obs.exit_code is None:
            obs.message = obs.message or "the job's processes vanished without an exit code"
        failures = job["failures"] + 1
        attempt, last = job["attempt"], job["max_attempts"]  # one numbering: see states.attempt_text
        if attempt < last:
            delay = RETRY_BACKOFF[min(failures - 1, len(RETRY_BACKOFF) - 1)]
            transition(
                conn,
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
        transition(
            conn,
            job_id,
            states.FAILED,
            reason=reason,
            detail=failure_detail(reason, obs.message, obs.exit_code),
            message=obs.message,
            now=now,
            fields={"failures": failures, "exit_code": obs.exit_code},
        )

    # -- dependencies and timeouts ---------------------------------------------------------------
    def resolve_dependencies(self, conn: sqlite3.Connection, now: float) -> None:
        for _ in range(100):  # to a fixed point: an upstream failure spreads down a chain at once
            changed = False
            blocked = conn.execute("SELECT id FROM jobs WHERE state = 'BLOCKED' AND backend = 'local'").fetchall()
            for (job_id,) in blocked:
                deps = conn.execute(
                    "SELECT d.dep_id, d.condition, j.state, j.name FROM deps d LEFT JOIN jobs j ON j.id = d.dep_id"
                    " WHERE d.job_id = ?",
                    (job_id,),
                ).fetchall()
                verdict, reason, message = dependency_outcome(deps)
                if verdict == "wait":
                    continue
                if verdict == "ok":
                    changed |= transition(conn, job_id, states.PENDING, expect={states.BLOCKED}, now=now) is not None
                else:
                    changed |= (
                        transition(
                            conn,
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

    def expire(self, conn: sqlite3.Connection, now: float, actions: Actions) -> None:
        rows = conn.execute(
            "SELECT id, queue_deadline, spec_id FROM jobs WHERE queue_deadline IS NOT NULL"
            " AND state IN ('PENDING', 'BLOCKED', 'RETRYING', 'CREATED') AND backend = 'local'"
        ).fetchall()
        for row in rows:
            if now >= row["queue_deadline"]:
                limit = self.spec(conn, row["spec_id"]).queue_timeout or 0
                transition(
                    conn,
                    row["id"],
                    states.FAILED,
                    reason="queue_timeout",
                    detail="queue timeout",
                    message=f"waited longer than its queue_timeout of {limit:g}s",
                    now=now,
                )
            else:
                actions.wake_at(row["queue_deadline"])

    # -- scheduling --------------------------------------------------------------------------------
    def schedule(self, conn: sqlite3.Connection, now: float, actions: Actions) -> None:
        # The queue window: the best-ranked waiting jobs (an index keeps this cheap however long the
        # queue and the history are). Jobs beyond it wait for a later pass; rank order is kept.
        rows = conn.execute(
            "SELECT * FROM jobs INDEXED BY jobs_queue WHERE state IN ('PENDING', 'RETRYING') AND backend = 'local'"
            " ORDER BY priority DESC, submitted_at, id LIMIT ?",
            (QUEUE_WINDOW,),
        ).fetchall()
        rows += conn.execute(
            "SELECT * FROM jobs WHERE state = 'SUSPENDED' AND reason = 'system' AND alloc IS NULL AND backend = 'local'"
        ).fetchall()
        pending = []
        for row in rows:
            if row["state"] == states.RETRYING and (row["not_before"] or 0) > now:
                actions.wake_at(row["not_before"])
                continue
            pending.append(row)
        if not pending:
            return
        by_id = {row["id"]: row for row in pending}
        requests = [request_of(row, self.limit(conn, row)) for row in pending]
        holding = self.holding(conn)
        running = [running_of(row, self.ends_by(conn, row)) for row in holding]
        from jobctl.engine.fairshare import user_policy

        users = user_policy(conn, pending, holding, self.user_limits, now)
        decisions = schedule(requests, running, self.capacity, now, users)
        actions.more = (
            len(rows) >= QUEUE_WINDOW and bool(decisions.start) and "resources" not in decisions.waiting.values()
        )
        for job_id, alloc in decisions.start:
            conn.execute("SAVEPOINT start_job")
            try:
                self._start(conn, by_id[job_id], alloc, now, actions)
            except Exception as exc:  # noqa: BLE001 - one job's bad record fails that job, not the pass
                conn.execute("ROLLBACK TO start_job")
                _log_exception()
                transition(
                    conn,
                    job_id,
                    states.FAILED,
                    reason="start_error",
                    detail=states.REASON_TEXT.get("start_error", "start error"),
                    message=f"could not prepare the job: {exc}",
                    now=now,
                )
            conn.execute("RELEASE start_job")
        for job_id in decisions.preempt:
            row = conn.execute("SELECT attempt FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if (
                transition(
                    conn,
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
                actions.cancel.append((backend_id(job_id, row["attempt"]), "preempted", self.grace, None))
        for job_id, why in decisions.waiting.items():
            row = by_id[job_id]
            detail, message = states.REASON_TEXT.get(why, why), row["message"]
            if job_id in decisions.behind:  # fits the free resources, but a blocked job comes first
                ahead = decisions.behind[job_id]
                detail = f"behind {ahead}"
                message = f"waits behind job {ahead} ({by_id[ahead]['name']}), which needs the free resources first"
                if decisions.reserved and decisions.reserved[0] == ahead:
                    import datetime as dt

                    due = dt.datetime.fromtimestamp(decisions.reserved[1]).strftime("%H:%M:%S")
                    message += f" (due to start by {due}); it would still run then"
            elif (message or "").startswith("waits behind job"):
                message = None  # no longer true
            if row["state"] == states.PENDING and (row["reason"], row["detail"], row["message"]) != (
                why,
                detail,
                message,
            ):
                conn.execute(
                    "UPDATE jobs SET reason = ?, detail = ?, message = ? WHERE id = ?", (why, detail, message, job_id)
                )

    def limit(self, conn: sqlite3.Connection, row: sqlite3.Row) -> float | None:
        """How long a waiting job may hold resources once started (None: no timeout)."""
        timeout = self.spec(conn, row["spec_id"]).timeout
        return None if timeout is None else timeout + self.grace + END_SLACK

    def ends_by(self, conn: sqlite3.Connection, row: sqlite3.Row) -> float | None:
        """A time by which a job holding resources will have ended: its timeout; None when unknown
        (no timeout, or frozen during this attempt: frozen time does not count against it)."""
        limit = self.limit(conn, row)
        if limit is None or row["started_at"] is None or (row["state"] == states.SUSPENDED and row["reason"] == "user"):
            return None
        frozen = conn.execute(
            "SELECT 1 FROM events WHERE job_id = ? AND to_state = 'SUSPENDED' AND reason = 'user' AND at >= ? LIMIT 1",
            (row["id"], row["started_at"]),
        ).fetchone()
        return None if frozen else row["started_at"] + limit

    def _start(
        self, conn: sqlite3.Connection, job: sqlite3.Row, alloc: Allocation, now: float, actions: Actions
    ) -> None:
        attempt = job["attempt"] + 1
        spec = self.spec(conn, job["spec_id"])
        alloc_json = {
            "cpus": alloc.cpus,
            "memory_mib": alloc.memory_mib,
            "accelerator": alloc.accelerator,
            "devices": list(alloc.devices),
        }
        src = transition(
            conn,
            job["id"],
            states.ACTIVE,
            reason=None,
            now=now,
            fields={"attempt": attempt, "started_at": now, "alloc": dumps(alloc_json), "not_before": None},
        )
        if src is None:
            return
        conn.execute("INSERT INTO attempts (job_id, n, started_at) VALUES (?, ?, ?)", (job["id"], attempt, now))
        conn.executemany(
            "INSERT INTO workers (job_id, attempt, rank, state) VALUES (?, ?, ?, 'running')",
            [(job["id"], attempt, rank) for rank in range(job["num_nodes"])],
        )
        actions.start.append((job["id"], attempt, self.plan(job, spec, attempt, alloc)))

    def plan(self, job: sqlite3.Row, spec: JobSpec, attempt: int, alloc: Allocation) -> dict[str, Any]:
        n = job["num_nodes"]
        env = {k: v for k, v in spec.envs.items() if v is not None}
        envs = loads(job["envs"], {})
        env.update(envs.get("env") or {})
        secrets_file = None
        if envs.get("secrets"):
            from jobctl.home.secrets import path_of

            secrets_file = str(path_of(self.paths, envs)) if self.paths is not None else None
            if secrets_file is None:
                raise ValueError("its secrets file is unknown")
        per_rank = len(alloc.devices) // n if alloc.devices else 0
        rank_env = []
        for rank in range(n):
            e = {
                "JOBCTL_JOB_ID": str(job["id"]),
                "JOBCTL_JOB_NAME": job["name"],
                "JOBCTL_ATTEMPT": str(attempt),
                "JOBCTL_NODE_RANK": str(rank),
                "JOBCTL_NUM_NODES": str(n),
                "SKYPILOT_NODE_RANK": str(rank),
                "SKYPILOT_NUM_NODES": str(n),
                "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * n),
                "SKYPILOT_NUM_GPUS_PER_NODE": str(per_rank),
            }
            if job["array_index"] is not None:
                e["JOBCTL_ARRAY_INDEX"] = str(job["array_index"])
            if per_rank:
                mine = ",".join(str(d) for d in alloc.devices[rank * per_rank : (rank + 1) * per_rank])
                e["CUDA_VISIBLE_DEVICES"] = mine
                e["JOBCTL_ACCELERATORS"] = f"{alloc.accelerator}:{mine}"
            rank_env.append(e)
        from jobctl.core.units import format_duration

        return {
            "job_id": job["id"],
            "attempt": attempt,
            "num_nodes": n,
            "run": spec.run,
            "setup": spec.setup,
            "workdir": spec.workdir,
            "workdir_git": spec.workdir_git,
            "env": env,
            "rank_env": rank_env,
            "timeout": spec.timeout,
            "timeout_text": format_duration(spec.timeout) if spec.timeout else None,
            "grace": self.grace,
            "socket": self.socket_path,
            "memory_mib": job["memory_mib"] * n,
            "supervisor_pid": os.getpid(),
            "cgroup_pool": self.cgroup_pool,
            "secrets_file": secrets_file,
            "umask": envs.get("umask"),
            **({"run_as": envs["run_as"], "base_env": envs.get("base_env")} if envs.get("run_as") else {}),
        }


def _log_exception() -> None:
    import sys
    import traceback

    traceback.print_exc()
    sys.stderr.flush()


def dependency_verdict(deps: list[sqlite3.Row]) -> str | None:
    """'ok' when every dependency is satisfied, a message when one never can be, else None."""
    verdict, _, message = dependency_outcome(deps)
    return {"ok": "ok", "wait": None}.get(verdict, message)


def dependency_outcome(deps: list[sqlite3.Row]) -> tuple[str, str | None, str | None]:
    """('ok', None, None) when every dependency (dep_id, condition, state, name) is satisfied,
    ('never', reason code, message) when one never can be, else ('wait', None, None).

    The reason says which way it went: `upstream_failed` (a dependency that had to succeed did
    not, or was removed) or `upstream_completed` (one with `condition: failed` succeeded)."""
    waiting = False
    for dep_id, condition, state, name in deps:
        label = f"{dep_id} ({name})" if name else str(dep_id)
        if state is None:
            return "never", "upstream_failed", f"dependency {dep_id} no longer exists"
        if state not in states.TERMINAL:
            waiting = True
        elif condition == "ok" and state != states.COMPLETED:
            return "never", "upstream_failed", f"dependency {label} ended {state}"
        elif condition == "failed" and state == states.COMPLETED:
            return (
                "never",
                "upstream_completed",
                (f"dependency {label} completed, but this job runs only after a failure (condition: failed)"),
            )
    return ("wait", None, None) if waiting else ("ok", None, None)


def request_of(row: sqlite3.Row, limit: float | None = None) -> Request:
    n = row["num_nodes"]
    accs = tuple((str(name).upper(), int(count) * n) for name, count in loads(row["accelerators"], []))
    return Request(
        row["id"],
        row["priority"],
        row["submitted_at"],
        row["cpus"] * n,
        row["memory_mib"] * n,
        accs,
        limit,
        row["user"],
    )


def running_of(row: sqlite3.Row, ends_by: float | None = None) -> Running:
    alloc = loads(row["alloc"], {})
    devices = ((alloc["accelerator"], tuple(alloc["devices"])),) if alloc.get("devices") else ()
    frozen = row["state"] == states.SUSPENDED and row["reason"] not in ("system", "released")
    releasing = row["state"] in (states.SUSPENDED, states.KILLED) and not frozen
    return Running(
        row["id"],
        row["priority"],
        row["submitted_at"],
        alloc.get("cpus", 0.0),
        alloc.get("memory_mib", 0),
        devices,
        preemptible=not (frozen or releasing),
        releasing=releasing,
        ends_by=ends_by,
        user=row["user"],
    )
