"""The two job backends (see `Backend` in jobctl/backends/base.py), and `backend_for`, the one place
that picks one by a job's backend name.

- `LocalJobs`: jobs run by this home's supervisor (jobctl/engine/local.py, the runner); a command
  signals a runner directly, and the supervisor starts, observes and records.
- `SlurmJobs`: jobs handed to Slurm (jobctl/engine/slurm_sync.py submits and mirrors,
  jobctl/engine/slurm_control.py stops, starts and kills, undoing the recorded change when Slurm
  refuses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobctl.backends.base import Backend, Session
from jobctl.core import states
from jobctl.errors import UsageError
from jobctl.store.records import Job

if TYPE_CHECKING:  # the rest is imported when used: `jobctl status` never needs it
    from jobctl.backends.local.backend import LocalBackend
    from jobctl.core.models import JobSpec, LaunchTask
    from jobctl.core.resources import Capacity


def backend_id(job_id: int, attempt: int) -> str:
    from jobctl.backends.local.backend import backend_id as local_id

    return local_id(job_id, attempt)


class LocalJobs(Backend):
    name = "local"
    supervised = True
    mirrored = False

    def __init__(self, session: Session):
        super().__init__(session)
        self._capacity: Capacity | None = None

    def _runners(self) -> LocalBackend:
        from jobctl.backends.local.backend import LocalBackend

        return LocalBackend(self.session.paths.logs)

    def unsupported(self, spec: JobSpec) -> list[str]:
        if spec.file_mounts:
            return [
                "file_mounts: not supported by the local backend "
                "(copy the files into the workdir, or use --backend slurm with shared storage)"
            ]
        return []

    def never_fits(
        self, task: LaunchTask, tasks: list[LaunchTask], warnings: list[str], env: dict[str, str]
    ) -> str | None:
        from jobctl.core.resources import Request, never_fits

        if self._capacity is None:  # detected once per launch
            from jobctl.backends.local import capacity

            with_gpus = any(t.spec.accelerators for t in tasks)
            self._capacity = capacity.detect(self.session.config, with_gpus=with_gpus)
        spec = task.spec
        n = spec.num_nodes
        accs = tuple((str(name).upper(), int(count) * n) for name, count in spec.accelerators)
        upper = self._capacity._replace(devices={k.upper(): v for k, v in self._capacity.devices.items()})
        return never_fits(Request(0, 0, 0.0, task.cpus * n, task.memory_mib * n, accs), upper)

    def fit_hint(self, spec: JobSpec, why: str) -> str:
        if "this machine has" in why:
            return f" (declare GPUs with: jobctl config set capacity.accelerators '{{{spec.accelerators[0][0]} = N}}')"
        return ""

    def submit(self, job_ids: list[int]) -> None:
        pass  # the supervisor starts them (the caller wakes it)

    def refresh(self, jobs: Sequence[Job | None], force: bool = False) -> None:
        pass  # the supervisor records what happened (and Service.refresh_local when none runs)

    def hold(self, job: Job) -> None:
        pass  # a held job is simply not started by the supervisor

    def freeze(self, job: Job) -> None:
        self._runners().suspend(backend_id(job.id, job.attempt))

    def thaw(self, job: Job) -> None:
        self._runners().resume(backend_id(job.id, job.attempt))

    def release(self, job: Job, grace: float) -> None:
        self._runners().cancel(backend_id(job.id, job.attempt), grace, "released")

    def requeue(self, job: Job) -> None:
        pass  # the supervisor starts it again

    def kill(self, job: Job, now: Job, grace: float, signum: int | None = None) -> None:
        if now.alloc is None:
            return  # not running: nothing to signal
        try:
            self._runners().cancel(backend_id(job.id, now.attempt), grace, "killed", signum=signum)
        except OSError:
            pass  # the kill is recorded: the runner reads kill.json as it starts, the supervisor sends it again

    def cancel_leftover(self, job: Job) -> bool:
        return False

    def batch_log(self, job: Job, attempt: int) -> Path:
        raise UsageError(f"--batch: job {job.id} runs on the {self.name} backend; only Slurm jobs have it")

    def describe(self, job: Job) -> dict[str, Any]:
        return {}


class SlurmJobs(Backend):
    name = "slurm"
    supervised = False
    mirrored = True

    def _synced(self) -> Any:
        from jobctl.engine.slurm_control import SyncedBackend

        return SyncedBackend(self.session)

    def unsupported(self, spec: JobSpec) -> list[str]:
        if spec.workdir_git:
            return [
                "workdir: a git repository is cloned by the local backend only; "
                "clone it on the cluster's shared storage and give that folder"
            ]
        return []

    def never_fits(
        self, task: LaunchTask, tasks: list[LaunchTask], warnings: list[str], env: dict[str, str]
    ) -> str | None:
        from jobctl.engine.slurm_sync import check_launch  # also refuses what cannot go into a batch script

        return check_launch(self.session, task, tasks, warnings, env)

    def submit(self, job_ids: list[int]) -> None:
        from jobctl.engine.slurm_sync import submit

        submit(self.session, job_ids)

    def refresh(self, jobs: Sequence[Job | None], force: bool = False) -> None:
        from jobctl.engine.slurm_sync import refresh

        refresh(self.session, [j for j in jobs if j is not None and j.state not in states.TERMINAL], force=force)

    def hold(self, job: Job) -> None:
        if job.backend_id:  # not submitted yet: it will be submitted held
            self._synced().hold(job.backend_id)

    def freeze(self, job: Job) -> None:
        self._synced().suspend(self._bid(job))

    def thaw(self, job: Job) -> None:
        self._synced().resume(self._bid(job))

    def release(self, job: Job, grace: float) -> None:
        self._synced().cancel(self._bid(job), grace, "released")

    def requeue(self, job: Job) -> None:
        from jobctl.engine.slurm_control import restart

        restart(self.session, job)  # release a held/released Slurm job, resubmit a preempted one

    def kill(self, job: Job, now: Job, grace: float, signum: int | None = None) -> None:
        if job.backend_id:
            if signum is not None:  # scancel --signal first, then the cancel itself
                from jobctl.engine.slurm_control import send_signal

                send_signal(self.session, job, signum)
            self._synced().cancel(job.backend_id)

    def update(self, job: Job, changes: dict[str, Any]) -> None:
        if job.backend_id:
            from jobctl.engine.slurm_control import update

            update(self.session, job, changes)

    def cancel_leftover(self, job: Job) -> bool:
        if not job.backend_id:
            return False
        from jobctl.engine.slurm_control import cancel_leftover

        return cancel_leftover(self.session, job)

    def batch_log(self, job: Job, attempt: int) -> Path:
        return self.session.paths.attempt_dir(job.id, attempt) / "slurm.out"

    def describe(self, job: Job) -> dict[str, Any]:
        if not job.attempt:
            return {}
        from jobctl.engine.slurm_sync import batch_output

        return {"slurm_out": batch_output(self.session, job)}

    @staticmethod
    def _bid(job: Job) -> str:
        assert job.backend_id is not None  # a running or frozen Slurm job was submitted
        return job.backend_id


BACKENDS: dict[str, type[Backend]] = {LocalJobs.name: LocalJobs, SlurmJobs.name: SlurmJobs}


def backend_class(name_or_job: str | Job) -> type[Backend]:
    """The backend class of a job (or of a backend name); an unknown name is the local backend."""
    name = name_or_job if isinstance(name_or_job, str) else name_or_job.backend
    return BACKENDS.get(name, LocalJobs)


def backend_for(name_or_job: str | Job, session: Session) -> Backend:
    """The backend object that acts on a job (or on jobs of a backend name) for this session."""
    return backend_class(name_or_job)(session)
