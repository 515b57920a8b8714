"""One supervisor pass in the test process: a real Engine over a real SQLite Store, with the clock
given by the test, and real runners forked through the real LocalBackend when the test asks.

Every call into jobctl's internals (recording jobs, opening the store, building the engine, one
pass) is in this module, so that renames in jobctl.store or jobctl.app are fixed in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers.cli import InProcessJobctl
from helpers.db import job_row
from helpers.files import write_job
from helpers.processes import stop_everything
from helpers.waiting import wait_until


class SupervisorPass:
    """A home with jobs recorded as `jobctl launch` records them, and `tick(now)` as one supervisor
    pass. Needs JOBCTL_HOME to name `home` (a runner resolves its home from it)."""

    def __init__(self, home: Path, cpus: int, memory: str = "8GiB", grace: float = 0.0):
        from jobctl.app.session import Service
        from jobctl.backends.local.backend import LocalBackend
        from jobctl.backends.local.capacity import detect
        from jobctl.engine.local import Engine
        from jobctl.home.paths import resolve

        assert os.environ.get("JOBCTL_HOME") == str(home), "set JOBCTL_HOME to the home first"
        # the capacity a user sets; launch checks jobs against it, and the engine gets it as the supervisor does
        jobctl = InProcessJobctl(home)
        jobctl.config("capacity.cpus", str(cpus))
        jobctl.config("capacity.memory", memory)
        self.home = home
        self.paths = resolve()
        self.service = Service(self.paths)
        self.backend = LocalBackend(self.paths.logs)
        capacity = detect(self.service.config, with_gpus=False)
        assert (capacity.cpus, capacity.devices) == (cpus, {}), capacity
        self.engine = Engine(self.backend, capacity, str(self.paths.socket), grace, None, paths=self.paths)
        self.own: dict[str, int] = {}  # backend id -> PID of the runners forked here and not reaped yet

    def submit(self, text: str, name: str, priority: int | None = None, array: str | None = None) -> list[int]:
        """Record the jobs of one job file, as `jobctl launch FILE` does, without waking a supervisor."""
        from jobctl.app.launch import LaunchOptions, build_plan, record

        path = write_job(self.home, name, text)
        plan, tasks = build_plan(self.service, [str(path)], LaunchOptions(priority=priority, array=array))
        assert not plan.problems, plan.problems
        return [job_id for job_id, _ in record(self.service, tasks, plan)]

    def tick(self, now: float, run: bool = True) -> Any:
        """One pass at time `now` in one write transaction; then, with `run`, fork a runner for
        each job the pass started (as the supervisor does after its commit). Returns the Actions."""
        store = self.service.store
        with store.write():
            actions = self.engine.tick(store, now, dict(self.own))
        if run:
            for job_id, attempt, plan in actions.start:
                bid = f"{job_id}/{attempt}"
                self.own[bid] = self.backend.start(bid, plan)
        return actions

    def job(self, job_id: int) -> dict[str, Any]:
        """The job's row as recorded (state, reason, detail, message, ...)."""
        return job_row(self.home, job_id)

    def states(self, *job_ids: int) -> list[str]:
        return [self.job(job_id)["state"] for job_id in job_ids]

    def wait_ended(self, job_id: int, attempt: int = 1, timeout: float = 30.0) -> None:
        """Wait for the runner of this attempt to write its result and exit; reap it."""
        bid = f"{job_id}/{attempt}"
        result = self.backend.attempt_dir(bid) / "result.json"
        wait_until(result.exists, timeout, f"job {bid} to end")
        pid = self.own.pop(bid)
        wait_until(lambda: os.waitpid(pid, os.WNOHANG) != (0, 0), timeout, f"the runner of {bid} to exit")

    def close(self) -> None:
        """Kill what still runs and reap the runners forked here."""
        stop_everything(self.home)
        for pid in self.own.values():
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.own.clear()
        self.service.store.close()
