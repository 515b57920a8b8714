"""What a runner runs: the plan the supervisor's engine makes for one attempt of a local job.

The supervisor builds it (jobctl/engine/local.py, `Engine.runner_plan`), hands it to the forked
runner in memory, and the runner writes it to the attempt folder as plan.json, with the same keys
as ever: `from_json` reads any plan.json a runner of this or an older jobctl wrote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunnerPlan:
    job_id: int
    attempt: int
    num_nodes: int
    run: str
    setup: str | None = None
    workdir: str = "."  # the runner replaces it with its clone when the workdir is a git repository
    workdir_git: dict[str, Any] | None = None  # {"url", "ref"}
    env: dict[str, str] = field(default_factory=dict)  # the job's own variables (secrets excluded)
    rank_env: list[dict[str, str]] = field(default_factory=list)  # JOBCTL_*/SKYPILOT_* per rank
    timeout: float | None = None  # seconds per attempt
    timeout_text: str | None = None  # the timeout as the job file gave it, for messages
    warn_signal: list[float] | None = None  # `signal: USR1@60s` as [signal number, seconds before the timeout]
    grace: float = 10.0  # seconds between TERM and KILL
    socket: str = ""  # the supervisor's socket, to wake it when the attempt ends
    memory_mib: int = 0  # for all ranks together; 0: no limit
    supervisor_pid: int | None = None  # the supervisor that forked the runner
    cgroup_pool: str | None = None  # folder of the memory cgroup pool's lock files
    secrets_file: str | None = None  # the job's 0600 secrets file
    umask: int | None = None  # the launching user's umask
    # A shared queue (docs/shared.md): who the workers run as (jobctl/backends/local/identity.py),
    # and the environment the caller's client recorded at launch (never root's); None otherwise.
    run_as: dict[str, Any] | None = None
    base_env: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The plan.json document (its values are plain JSON already: no deep copy needed)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunnerPlan:
        """A plan from plan.json; keys it does not know are ignored, missing ones take their default."""
        known = _FIELDS.get(cls)
        if known is None:
            known = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
        return cls(**{key: value for key, value in doc.items() if key in known})


_FIELDS: dict[type, frozenset[str]] = {}  # a plan's field names, found once (a slot runner reads a plan per attempt)
