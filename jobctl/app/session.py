"""The service layer: what the CLI calls. It validates, records and reads; it never prints.

It opens the store lazily, so commands that do not need the database do not pay for it, and it
talks to the supervisor only to wake it (or start it on demand).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobctl.core import states
from jobctl.errors import NotFound, UsageError
from jobctl.home.paths import Paths
from jobctl.store.database import Store
from jobctl.store.records import Job, loads

if TYPE_CHECKING:
    from jobctl.backends.base import Backend
    from jobctl.home.config import Config


def current_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def backend_class(row: Job) -> type[Backend]:
    """The backend class of a job (`jobctl/engine/backends.py`), imported on first use: `status` on
    finished jobs never needs it."""
    from jobctl.engine.backends import backend_class as pick

    return pick(row)


@dataclass
class ActionResult:
    job_id: int | None  # None: a selector that named no job
    name: str | None
    ok: bool
    message: str
    state: str | None = None
    selector: str | None = None  # what the user typed that named this job (bulk actions)


@dataclass
class LaunchPlan:
    """What `launch` would record: one entry per job, and the warnings seen while loading."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # would be refused by a real launch


class Service:
    def __init__(self, paths: Paths):
        self.paths = paths
        self._store: Store | None = None
        self._config: Config | None = None
        self.user = current_user()
        self._started_supervisor = -10.0  # monotonic time this process last started one
        self.env_drop: set[str] = set()  # --env/--env-file names: a supervisor started now must not inherit them
        self.umask: int | None = None  # the umask of a shared queue's caller (None: this process's)
        self.record_extra: dict[str, Any] = {}  # kept in a job's envs document at launch (shared queue: run_as)

    @property
    def store(self) -> Store:
        if self._store is None:
            self.paths.ensure()
            self._store = Store(self.paths.db)
        return self._store

    @property
    def config(self) -> Config:
        if self._config is None:
            from jobctl.home.config import Config

            self._config = Config.load(self.paths.config_file)
        return self._config

    # -- the supervisor ------------------------------------------------------------------------
    def wake_supervisor(self, start: bool = True) -> bool:
        """Poke the supervisor; start one when none answers. True when one was already up."""
        from jobctl.home.paths import trusted_owners

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.paths.socket))
                import struct

                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                uid = struct.unpack("3i", creds)[1]  # the server's (pid, uid, gid), from the kernel
                if uid not in trusted_owners():
                    from jobctl.errors import UnsafePath

                    raise UnsafePath(
                        f"{self.paths.socket}: answered by a process of uid {uid}, not by your "
                        "supervisor; refusing to talk to it (see README: Security)"
                    )
                sock.sendall(b"w")
            return True
        except OSError:
            if start:
                from jobctl.home.launcher import exiting, spawn_detached, start_if_absent

                # None answers: start one, unless one holds the lock and is still starting (its first pass
                # sees what we just recorded). One that is leaving gets a successor, which waits for the lock.
                if not start_if_absent(self.paths, drop=self.env_drop) and exiting(self.paths):
                    spawn_detached(self.paths, drop=self.env_drop)
            return False

    def refresh_local(self) -> None:
        """Keep what a command shows true, and the queue moving, whatever happened to the supervisor.

        Attempts whose runner wrote its result are recorded here (the same compare-and-set a supervisor
        does, so doing it twice is harmless); and when live local jobs exist and no supervisor holds the
        lock (it was killed or stopped), one is started (SPEC section 7: the supervisor comes back by itself).
        """
        store = self.store
        holding = store.holding("local")
        if not store.read_only and any(
            (self.paths.attempt_dir(job.id, job.attempt) / "result.json").exists() for job in holding
        ):
            from jobctl.backends.local.backend import LocalBackend
            from jobctl.engine.local import Engine

            engine = Engine(LocalBackend(self.paths.logs), None, str(self.paths.socket), 0.0, paths=self.paths)
            try:
                with store.write():
                    engine.record_ended(store, time.time())
            except Exception:  # noqa: BLE001 - a busy or damaged file: show what is recorded; a supervisor retries
                if os.environ.get("JOBCTL_DEBUG") not in (None, "", "0"):
                    raise
        if store.read_only or time.monotonic() < self._started_supervisor + 5.0:
            return
        live = store.has_live("local")
        pending = 0 if live else store.pending_notifications()  # notifications to deliver: a supervisor does
        if live or pending:
            from jobctl.home.launcher import start_if_absent

            if start_if_absent(self.paths, drop=self.env_drop):
                self._started_supervisor = time.monotonic()
            elif pending:
                self.wake_supervisor(start=False)  # one that is up may not know of them yet

    # -- selecting jobs ------------------------------------------------------------------------
    def job(self, selector: str) -> Job:
        rows = self.select([selector])
        if len(rows) > 1:
            raise UsageError(f"{selector!r} matches {len(rows)} jobs; give one job ID")
        return rows[0]

    def select(self, selectors: list[str], *, all_jobs: bool = False, missing_ok: bool = False) -> list[Job]:
        """Jobs named by IDs, names or globs, in the order given; newest first within a name."""
        store = self.store
        if all_jobs:
            return store.all_jobs()
        if not selectors:
            raise UsageError("name at least one job (an ID, a name or a glob such as 'sweep-*'), or use --all")
        found: dict[int, Job] = {}
        for sel in selectors:
            if sel.isdigit() and int(sel) > 2**63 - 1:
                raise UsageError(f"{sel[:30]}{'...' if len(sel) > 30 else ''}: not a job ID (too large)")
            if sel.isdigit():
                rows = [job for job in [store.job(int(sel))] if job is not None]
            elif any(ch in sel for ch in "*?["):
                rows = [r for r in store.all_jobs() if fnmatch.fnmatchcase(r.name, sel)]
            else:
                rows = store.jobs_named(sel)
            if not rows and not missing_ok:
                raise NotFound(f"no job matches {sel!r}")
            for row in rows:
                found.setdefault(row.id, row)
        return list(found.values())

    # -- reading -------------------------------------------------------------------------------
    def status_rows(
        self,
        selectors: list[str],
        *,
        all_jobs: bool,
        state: list[str] | None,
        labels: list[tuple[str, str]] | None,
        limit: int | None,
        collapse_arrays: bool = False,
    ) -> list[Job]:
        """The jobs `status` shows. `collapse_arrays`: the caller shows each array as one summary row
        (jobctl/cli/arrays.py), so of an array's unfinished tasks only the newest is needed."""
        store = self.store
        wanted = {s.upper() for s in state or []}
        unknown = wanted - set(states.ALL_STATES)
        if unknown:
            typed = sorted(unknown)[0]
            ours = next(
                (
                    m[typed]
                    for m in (
                        {k.upper(): v[0] for k, v in other.items()} for other in states.REFERENCE_MAPPING.values()
                    )
                    if typed in m
                ),
                None,
            )
            hint = f'did you mean "{ours}"? ' if ours else ""
            raise UsageError(f"--state: unknown state {typed} ({hint}states: {', '.join(states.ALL_STATES)})")
        self.refresh_local()
        if selectors or all_jobs:
            rows = self.select(selectors) if selectors else store.all_jobs(newest_first=True)
            if self.refresh(rows):  # mirror Slurm here too (one batched query)
                rows = [store.job(r.id) or r for r in rows]
        else:
            cheap = collapse_arrays and not wanted and not labels
            live = store.live_jobs_collapsed() if cheap else store.live_jobs()
            if self.refresh(live):  # Slurm is the source of truth: mirror it in one batched query
                live = store.live_jobs()
            # scan from the newest row down: the newest finished jobs sit at the top of the table
            # --state and --label pick from every finished job, then keep the newest `limit` of those
            count = 20 if limit is None else limit
            done = store.finished_jobs(wanted, None if labels else count)
            if labels:
                done = [r for r in done if all(loads(r.labels, {}).get(k) == v for k, v in labels)][:count]
            rows = sorted(live + done, key=lambda r: r.id, reverse=True)
            if any(backend_class(r).supervised for r in live):
                self.wake_supervisor(start=True)
        if wanted:
            rows = [r for r in rows if r.state in wanted]
        for key, value in labels or []:
            rows = [r for r in rows if loads(r.labels, {}).get(key) == value]
        rows.sort(key=lambda r: r.id, reverse=True)
        if limit is not None:  # --limit N: the N newest finished jobs; unfinished ones always show
            keep = {r.id for r in [r for r in rows if r.state in states.TERMINAL][:limit]}
            rows = [r for r in rows if r.state not in states.TERMINAL or r.id in keep]
        return rows

    def row_by_id(self, job_id: int) -> Job | None:
        return self.store.job(job_id)

    def spec_of(self, row: Job) -> dict[str, Any]:
        return dict(json.loads(self.store.spec_body(row.spec_id)))

    def details(self, row: Job) -> dict[str, Any]:
        store = self.store
        job_id = row.id
        attempts = [a._asdict() for a in store.attempts(job_id)]
        workers = [w._asdict() for w in store.workers(job_id)]
        for w in workers:
            w["log"] = str(self.paths.attempt_dir(job_id, w["attempt"]) / f"rank{w['rank']}.log")
        events = [
            {
                "at": e.at,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "reason": e.reason,
                "actor": e.actor,
                "message": e.message,
            }
            for e in store.events(job_id)
        ]
        deps = [{"dep_id": d.dep_id, "condition": d.condition} for d in store.dependencies(job_id)]
        from jobctl.app.reports import attempt_usage, notification_details

        for a in attempts:
            a["usage"] = attempt_usage(a)
        return {
            "attempts": attempts,
            "workers": workers,
            "events": events,
            "depends_on": deps,
            "notifications": notification_details(store, job_id),
        }

    # -- named queues, arrays, usage (a shared queue's RemoteService answers the same calls) ------------
    def queue_rows(self) -> list[Any]:
        """`queue list`: every queue with its running and waiting jobs, caps and pause."""
        self.refresh_local()
        return self.store.list_queues()

    def set_queue(self, name: str, changes: dict[str, Any], start: bool = False) -> None:
        """`queue set|pause|resume`: the next pass of the supervisor uses the new caps."""
        with self.store.write():
            self.store.set_queue(name, changes)
        self.wake_supervisor(start=start)

    def array_stats(self, array_ids: Any) -> dict[int, Any]:
        """Per array: its tasks by state, index range, first start and last end (status's summary rows)."""
        return self.store.array_stats(array_ids)

    def usage_groups(self, since: float | None, by: str) -> list[Any]:
        """`stats`: usage summed per group (SPEC section 11)."""
        from jobctl.app.reports import stats

        self.refresh_local()  # jobs that ended while no supervisor ran count with their usage
        with self.store.read():
            return stats(self.store, since, by)

    def wait_for(self, job_ids: list[int], timeout: float | None = None, on_tick=None) -> list[Job]:
        """Block until every job is terminal (polling the database with a growing interval)."""
        delay, deadline = 0.02, None if timeout is None else time.monotonic() + timeout
        next_check = time.monotonic() + 0.25
        while True:
            rows = self.store.jobs(job_ids)
            if len(rows) < len(set(job_ids)):
                raise NotFound("a job being waited for was removed")
            if all(r.state in states.TERMINAL for r in rows):
                return rows
            if on_tick:
                on_tick(rows)
            if time.monotonic() >= next_check and any(backend_class(r).supervised for r in rows):
                # again and again, not once: the supervisor may be stopped or killed at any time while we wait
                self.refresh_local()
                next_check = time.monotonic() + 1.0
            self.refresh(rows)
            if deadline is not None and time.monotonic() > deadline:
                raise UsageError("gave up waiting (--timeout)")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def refresh(self, rows: list[Job]) -> bool:
        """Ask the backends that are the source of truth for their jobs (Slurm) about the unfinished
        ones among `rows`, one batched query per backend; True when there were such jobs."""
        by_backend: dict[type[Backend], list[Job]] = {}
        for row in rows:
            backend = backend_class(row)
            if backend.mirrored and row.state not in states.TERMINAL:
                by_backend.setdefault(backend, []).append(row)
        for backend, jobs in by_backend.items():
            backend(self).refresh(jobs)
        return bool(by_backend)

    # -- control -------------------------------------------------------------------------------
    def _cas(self, row: Job, to: str, expect, **kw) -> str | None:
        with self.store.write():
            return self.store.transition(row.id, to, expect=expect, actor=self.user, **kw)

    @staticmethod
    def _contextual(row: Job) -> str:
        return f"job {row.id} is {states.status_text(row.state, row.detail)}"

    @staticmethod
    def digest(body: str) -> str:
        return hashlib.sha256(body.encode()).hexdigest()


def masked_envs(spec: dict[str, Any], job_envs: dict[str, Any]) -> dict[str, str | None]:
    """The job's environment as shown to people: secrets as *** (their values are not in the database)."""
    given = set(job_envs.get("secret") or [])  # secrets that have a value, in the job's secrets file
    values = {**(spec.get("envs") or {}), **(job_envs.get("env") or {})}
    values.update({k: "***" for k in given})
    secret = set(spec.get("secrets") or []) | given
    return {k: ("***" if k in secret and v is not None else v) for k, v in values.items()}
