"""The small interface every backend implements, and the observation it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class WorkerObservation:
    rank: int
    state: str  # "running" | "exited" | "lost"
    exit_code: int | None = None
    pid: int | None = None


@dataclass
class Observation:
    """What a backend saw of one job. `state` is a jobctl state name (SPEC section 3)."""

    backend_id: str
    state: str  # PENDING ACTIVE FAILING SUSPENDED COMPLETED FAILED KILLED
    reason: str | None = None  # exit_code timed_out out_of_memory worker_lost upstream_failed resources ...
    message: str | None = None
    exit_code: int | None = None
    started_at: float | None = None  # unix seconds
    ended_at: float | None = None
    workers: list[WorkerObservation] = field(default_factory=list)
    usage: dict[str, Any] | None = None  # what the attempt used (SPEC section 11), once it ended


class Backend(Protocol):
    name: str

    def poll(self, backend_ids: list[str]) -> dict[str, Observation]:
        """Observe many jobs at once; an ID the backend no longer knows is left out."""

    def suspend(self, backend_id: str) -> None: ...

    def resume(self, backend_id: str) -> None: ...

    def cancel(self, backend_id: str, grace: float = 10.0) -> None: ...
