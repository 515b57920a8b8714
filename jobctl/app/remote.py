"""The client side of a shared queue (SPEC section 12): a Service that asks root's supervisor.

In a home marked shared (HOME/run/shared.json), the CLI never opens the database: every command
becomes one or a few requests on the supervisor's socket (jobctl/shared/protocol.py), and what comes
back are the same rows and documents single-user mode reads itself, so the CLI renders them with
the same code (jobctl/cli/output.py, views.py). Rows arrive as JSON objects of a job's fields and
become the same typed records (`records.Job`) the store returns.

What stays on this side: reading the job files and `--env-file`s (as the caller, so nobody reads a
file through the supervisor that they could not read themselves), and reading log files (they are
the caller's own, 0600; the supervisor only says whether the caller may read that job's logs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from jobctl.app.session import ActionResult, LaunchPlan, current_user
from jobctl.errors import JobctlError, NotFound, UsageError
from jobctl.home.paths import Paths
from jobctl.shared.protocol import LAUNCH_OPTIONS
from jobctl.store.records import Job


def job_of(doc: dict[str, Any]) -> Job:
    """A job record from the fields the supervisor sent (fields it did not send are None)."""
    return Job._make(doc.get(name) for name in Job._fields)


def jobs_of(docs: list[dict[str, Any]]) -> list[Job]:
    return [job_of(d) for d in docs]


class RemoteError(JobctlError):
    """An error the supervisor reported, with its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RemoteConfig:
    """The settings of a shared queue, as its supervisor reads them (config.toml is root's)."""

    path: Any
    values: dict[str, Any]

    def get(self, key: str) -> Any:
        from jobctl.home.config import KEYS, _suggest

        if key not in KEYS:
            raise UsageError(f"{key}: unknown setting{_suggest(key)}")
        return self.values.get(key)

    def effective(self) -> dict[str, Any]:
        return dict(self.values)


class RemoteService:
    """The Service interface the CLI uses, answered by the shared supervisor."""

    remote = True

    def __init__(self, paths: Paths):
        self.paths = paths
        self.user = current_user()
        self.env_drop: set[str] = set()
        self._config: Any = None

    # -- the socket ----------------------------------------------------------------------------------
    def call(self, op: str, timeout: float | None = 60.0, **args: Any) -> Any:
        from jobctl.shared import protocol

        try:
            response = protocol.request(str(self.paths.socket), op, args, timeout=timeout)
        except protocol.ProtocolError as exc:
            raise RemoteError(str(exc), 1) from None
        except OSError as exc:
            raise RemoteError(
                f"the shared queue at {self.paths.config} does not answer ({exc.strerror or exc}); "
                "its supervisor is started by root: `jobctl supervisor start --shared` or `systemctl start jobctl`",
                1,
            ) from None
        if not response["ok"]:
            code = response.get("exit_code")
            raise RemoteError(
                str(response.get("error") or "the supervisor refused"), code if isinstance(code, int) else 1
            )
        return response.get("result")

    # -- reading ---------------------------------------------------------------------------------------
    def status_rows(
        self,
        selectors: list[str],
        *,
        all_jobs: bool,
        state: list[str] | None,
        labels: list[tuple[str, str]] | None,
        limit: int | None,
    ) -> list[Job]:
        return jobs_of(
            self.call(
                "status_rows",
                selectors=list(selectors),
                all_jobs=all_jobs,
                state=state,
                labels=[list(p) for p in labels or []],
                limit=limit,
            )
        )

    def select(self, selectors: list[str], *, all_jobs: bool = False, missing_ok: bool = False) -> list[Job]:
        return jobs_of(self.call("select", selectors=list(selectors), all_jobs=all_jobs, missing_ok=missing_ok))

    def job(self, selector: str) -> Job:
        rows = self.select([selector])
        if len(rows) > 1:
            raise UsageError(f"{selector!r} matches {len(rows)} jobs; give one job ID")
        return rows[0]

    def row_by_id(self, job_id: int) -> Job | None:
        rows = self.call("rows", ids=[job_id])
        return job_of(rows[0]) if rows else None

    def readable_job(self, selector: str) -> Job:
        """The job, if the caller may read its logs (else the supervisor's one-line refusal)."""
        return job_of(self.call("readable", selector=selector))

    def spec_of(self, row: Job) -> dict[str, Any]:
        return dict(self.call("spec", id=row.id))

    def details(self, row: Job) -> dict[str, Any]:
        return dict(self.call("details", id=row.id))

    def wait_for(self, job_ids: list[int], timeout: float | None = None, on_tick: Any = None) -> list[Job]:
        """Poll the supervisor (one short request each time) until every job is terminal."""
        from jobctl.core import states

        delay, deadline = 0.05, None if timeout is None else time.monotonic() + timeout
        while True:
            rows = jobs_of(self.call("rows", ids=list(job_ids)))
            if len(rows) < len(set(job_ids)):
                raise NotFound("a job being waited for was removed")
            if all(r.state in states.TERMINAL for r in rows):
                return rows
            if on_tick:
                on_tick(rows)
            if deadline is not None and time.monotonic() > deadline:
                raise UsageError("gave up waiting (--timeout)")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def refresh_local(self) -> None:
        """The supervisor keeps the records true."""

    def refresh(self, rows: list[Job]) -> bool:
        """A shared queue runs local jobs only: no backend to ask; the records are the truth."""
        return False

    def refresh_slurm(self, rows: list[Any]) -> None:
        """A shared queue runs local jobs only."""

    def wake_supervisor(self, start: bool = True) -> bool:
        return True

    @property
    def config(self) -> Any:
        if self._config is None:
            if os.getuid() == 0:  # root owns config.toml and changes it directly
                from jobctl.home.config import Config

                self._config = Config.load(self.paths.config_file)
            else:
                doc = self.call("config")
                self._config = RemoteConfig(doc["path"], doc["values"])
        return self._config

    def array_stats(self, array_ids: Any) -> dict[int, Any]:
        """Per array: its tasks by state... (status's summary rows), counted by the supervisor."""
        from jobctl.store.queues import ArrayStats

        docs = self.call("array_stats", ids=sorted(array_ids))
        return {d["array_id"]: ArrayStats(**d) for d in docs}

    def queue_rows(self) -> list[Any]:
        from jobctl.app.queueing import queue_row

        return [queue_row(d) for d in self.call("queue", verb="list")]

    def usage_groups(self, since: float | None, by: str) -> list[Any]:
        """`stats` of a shared queue: everyone's usage, as `sacct -a`/`sreport` show on a cluster."""
        from jobctl.app.reports import Group

        return [Group(**d) for d in self.call("stats", timeout=300.0, since=since, by=by)]

    # -- acting ----------------------------------------------------------------------------------------
    def set_queue(self, name: str, changes: dict[str, Any], start: bool = False) -> None:
        """`queue set|pause|resume`: root's or an admin's (the supervisor says no to anyone else)."""
        self.call("queue", verb="set", name=name, changes=changes)

    def bulk(self, verb: str, selectors: list[str], all_jobs: bool, **options: Any) -> list[ActionResult]:
        docs = self.call("control", verb=verb, selectors=list(selectors), all_jobs=all_jobs, options=options)
        return [ActionResult(**d) for d in docs]

    def prune(self, older_than: float) -> list[ActionResult]:
        return [ActionResult(**d) for d in self.call("prune", older_than=older_than)]

    def launch(self, files: list[str], options: Any) -> tuple[list[int], LaunchPlan]:
        """Read the job files and env files here, as the caller; the supervisor checks and records."""
        from jobctl.app.caller import base_env
        from jobctl.app.launch import parse_env
        from jobctl.home import paths as paths_mod
        from jobctl.jobfile.yamlnodes import read_source

        env, secret = parse_env(options)
        sent = []
        for path in files:
            full = os.path.abspath(path)
            text = read_source(path, None)  # as the caller: a file they cannot read stays unread
            check_own_file(full)
            sent.append({"path": full, "text": text})
        umask = paths_mod.CALLER_UMASK
        doc = self.call(
            "launch",
            timeout=300.0,
            files=sent,
            options={k: getattr(options, k) for k in LAUNCH_OPTIONS},
            env=env,
            secret=secret,
            umask=umask,
            cwd=os.getcwd(),  # where an ad-hoc command runs (checked there as a workdir is)
            base_env=base_env(dict(os.environ)),  # PATH, the virtualenv...: never the shell's tokens
            **({"command": list(options.command)} if getattr(options, "command", None) is not None else {}),
        )
        plan = LaunchPlan(**doc["plan"])
        return doc["ids"], plan


def refuse_shared(paths: Paths, command: str) -> None:
    """One line and exit 2 for the dashboard of a shared queue, unless root runs it (it reads the
    database directly; its control buttons go through the socket). See docs/shared.md."""
    if not paths.shared or os.getuid() == 0:
        return
    raise UsageError(
        f"jobctl {command}: not available on a shared queue but to root (`sudo jobctl dashboard`); "
        "status, describe, logs and stats show the same (see docs/shared.md)"
    )


def check_own_file(path: str) -> None:
    """A job file of a shared queue is the caller's own (the supervisor checks again)."""
    import pwd

    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    if st.st_uid not in (os.getuid(), 0) and os.getuid() != 0:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        raise UsageError(
            f"{path}: owned by {owner}, not by you; a shared queue runs only job files you own (copy it to launch it)"
        )
