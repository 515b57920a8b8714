"""The interface every backend implements (`Backend`), and the observation a backend reports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from jobctl.core.models import JobSpec, LaunchTask
    from jobctl.home.config import Config
    from jobctl.home.paths import Paths
    from jobctl.store.database import Store
    from jobctl.store.records import Job


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


class Session(Protocol):
    """What a job backend works with: the home's paths and config, and an open store (the CLI's
    `Service`, or the supervisor's `jobctl.engine.session.StoreSession`)."""

    paths: Paths

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config: ...

    def spec_of(self, row: Job) -> dict[str, Any]: ...


class Backend(ABC):
    """What the commands do per backend, for jobs already recorded (or about to be).

    The state change itself is recorded by the caller first (a compare-and-set); these methods
    then make the backend follow it. The implementations, `LocalJobs` and `SlurmJobs`, are in
    jobctl/engine/backends.py, and `backend_for` there picks one: nothing else looks at a job's
    backend name.
    """

    name: ClassVar[str]
    supervised: ClassVar[bool]  # its jobs are started and watched by this home's supervisor
    mirrored: ClassVar[bool]  # the backend is the source of truth: `refresh` asks it what happened

    def __init__(self, session: Session):
        self.session = session

    # -- launching -------------------------------------------------------------------------------
    @abstractmethod
    def unsupported(self, spec: JobSpec) -> list[str]:
        """What the job asks that this backend cannot do (each one line, without the file name)."""

    @abstractmethod
    def never_fits(
        self, task: LaunchTask, tasks: list[LaunchTask], warnings: list[str], env: dict[str, str]
    ) -> str | None:
        """Why the task can never start on this backend, or None; may add warnings."""

    def fit_hint(self, spec: JobSpec, why: str) -> str:
        """More words for a launch refused with `why` (from `never_fits`), e.g. how to declare GPUs."""
        return ""

    @abstractmethod
    def submit(self, job_ids: list[int]) -> None:
        """Hand newly recorded (or retried) jobs to the backend."""

    # -- observing -------------------------------------------------------------------------------
    @abstractmethod
    def refresh(self, jobs: Sequence[Job | None], force: bool = False) -> None:
        """Record what the backend says about these jobs (a no-op where the supervisor records it)."""

    # -- control: called after the new state was recorded ----------------------------------------
    @abstractmethod
    def hold(self, job: Job) -> None:
        """A waiting job was held (SUSPENDED): keep it from starting."""

    @abstractmethod
    def freeze(self, job: Job) -> None:
        """A running job was frozen (SUSPENDED by user)."""

    @abstractmethod
    def thaw(self, job: Job) -> None:
        """A frozen job was resumed (ACTIVE)."""

    @abstractmethod
    def release(self, job: Job, grace: float) -> None:
        """A running job was stopped and released (SUSPENDED, released): end its attempt."""

    @abstractmethod
    def requeue(self, job: Job) -> None:
        """A held, released or preempted job was started again (PENDING or BLOCKED)."""

    @abstractmethod
    def kill(self, job: Job, now: Job, grace: float, signum: int | None = None) -> None:
        """A job was killed; `job` as the caller saw it, `now` as recorded after the kill. `signum`:
        the signal sent first instead of SIGTERM (`kill --signal`)."""

    def update(self, job: Job, changes: dict[str, Any]) -> None:  # noqa: B027 - optional: most backends read the database
        """A waiting job's priority, queue, ... were changed (`jobctl update`): tell the backend,
        which raises a JobctlError when it refuses. The default does nothing (the supervisor reads
        the new values from the database)."""

    @abstractmethod
    def cancel_leftover(self, job: Job) -> bool:
        """A finished job that the backend may still run: end it there; True when it did."""

    # -- logs ------------------------------------------------------------------------------------
    @abstractmethod
    def batch_log(self, job: Job, attempt: int) -> Path:
        """The backend's own output of an attempt (`logs --batch`); UsageError when it has none."""

    @abstractmethod
    def describe(self, job: Job) -> dict[str, Any]:
        """Backend facts for `describe` (e.g. Slurm's batch output); {} when none."""
