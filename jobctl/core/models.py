"""Plain data shared by the layers: a validated job spec and its resource request.

A JobSpec is what a job file (one YAML document) becomes after validation. It is stored as JSON
in the database (`to_dict`/`from_dict`), so every field is a JSON-friendly value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MIB_PER_GIB = 1024


@dataclass
class Dependency:
    ref: str | int  # a job name or a job ID
    condition: str = "ok"  # ok | any | failed


@dataclass
class JobSpec:
    name: str
    run: str
    setup: str | None = None
    workdir: str = "."  # absolute after validation
    workdir_git: dict[str, Any] | None = None  # {"url", "ref"}: cloned into each attempt's folder
    num_nodes: int = 1
    cpus: float | None = None  # None: the [defaults] of config.toml
    memory_mib: int | None = None  # None: the [defaults] of config.toml
    # Alternatives, "any one of these": [["H100", 8], ["A100", 8]]. Empty: no accelerators.
    accelerators: list[list[Any]] = field(default_factory=list)
    envs: dict[str, str | None] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # env names whose values are never shown
    file_mounts: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    depends_on: list[Dependency] = field(default_factory=list)
    retries: int = 0
    timeout: float | None = None  # seconds per attempt
    queue_timeout: float | None = None  # seconds
    labels: dict[str, str] = field(default_factory=dict)
    backend: str | None = None
    notify: list[dict[str, Any]] = field(default_factory=list)  # targets, see core/notify.py
    source: str | None = None  # the job file this came from
    ignored: dict[str, Any] = field(default_factory=dict)  # accepted keys the backend cannot honour
    queue: str | None = None  # its named queue (None: `default`); SPEC section 9
    start_at: str | None = None  # not started before this (as written: "10m", "22:00", ISO 8601)
    signal: str | None = None  # "USR1@60s": a warning signal before a timeout, preemption or kill

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["depends_on"] = [Dependency(**d) for d in data.get("depends_on", [])]
        return cls(**data)


@dataclass
class LoadedFile:
    """The result of loading one job file: one task, or a pipeline of several."""

    path: str
    tasks: list[JobSpec]
    warnings: list[str] = field(default_factory=list)
    pipeline_name: str | None = None
    parallel: bool = False  # a job group (`execution: parallel`): the tasks run side by side
    problems: list[str] = field(default_factory=list)  # "file:line: key: why": a real launch refuses


@dataclass
class LaunchTask:
    """One job of a launch as `launch` checks and records it (an `--array` records it once per index)."""

    spec: JobSpec
    cpus: float  # per node, defaults applied
    memory_mib: int  # per node, defaults applied
    path: str  # the job file
    after: int | None = None  # the task (index in the launch) it runs after in a pipeline
    previous: str | None = None  # that task's name
    indices: list[int | None] = field(default_factory=lambda: [None])  # --array indices; [None]: no array
    env: dict[str, str] = field(default_factory=dict)  # plain --env values (kept in the database)
    secret: list[str] = field(default_factory=list)  # names of the secret values
    secret_values: dict[str, str] = field(default_factory=dict)  # kept only in the job's secrets file
    batch_deps: list[tuple[int, str]] = field(default_factory=list)  # (task index, condition) in this launch
    queue: str = "default"  # the named queue (SPEC section 9)
    start_at: float | None = None  # epoch seconds: not started before (`--at`, `start_at:`)
    hold: bool = False  # recorded SUSPENDED (`--hold`)
    throttle: int | None = None  # `--array 1-100%4`: at most this many tasks at once
