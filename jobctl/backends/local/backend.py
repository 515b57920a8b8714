"""The local backend: each attempt is a forked runner process (see `jobctl/backends/local/runner.py`).

This module starts runners, signals them (only after checking PID *and* start time, since PIDs
are reused) and reads back what they wrote. It never writes the database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from jobctl.backends.base import Observation, WorkerObservation
from jobctl.backends.local.plan import RunnerPlan
from jobctl.backends.local.runner import FROZEN_MARK, BadStateFile, read_json, run_attempt, write_json
from jobctl.errors import BackendError

OUTCOMES = (
    "completed",
    "failed",
    "timed_out",
    "out_of_memory",
    "setup_failed",
    "start_error",
    "killed",
    "released",
    "preempted",
)


def backend_id(job_id: int, attempt: int) -> str:
    return f"{job_id}/{attempt}"


class LocalBackend:
    name = "local"

    def __init__(self, logs: Path, pool: Any = None):
        self.logs = logs
        self.pool = pool  # a supervisor's RunnerPool (slots.py): attempts go to its long-lived runners

    def attempt_dir(self, bid: str) -> Path:
        job, attempt = bid.split("/")
        return self.logs / job / attempt

    # -- starting ------------------------------------------------------------------------------
    def start(self, bid: str, plan: RunnerPlan) -> int:
        """Start the attempt in a runner; returns the runner's PID. The caller reaps it (SIGCHLD).

        With a pool, one of its slot runners runs it (a shared queue's attempts, which run as their
        owners, keep a runner each); else a runner is forked for this attempt alone."""
        folder = self.attempt_dir(bid)
        if self.pool is not None and not plan.run_as:
            try:
                return int(self.pool.start(bid, folder, plan))
            except OSError:
                pass  # no slot runner took it: a runner of its own then
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                os.closerange(3, 1 << 16)  # the lock, the socket and the database stay with the supervisor
            finally:
                run_attempt(folder, plan)
        return pid

    # -- identity and signals ------------------------------------------------------------------
    def runner(self, bid: str, strict: bool = False) -> dict[str, Any] | None:
        """runner.json, checked; a bad one is None (or BadStateFile when `strict`)."""
        try:
            return _checked_runner(read_json(self.attempt_dir(bid) / "runner.json"))
        except BadStateFile:
            if strict:
                raise
            return None

    def runner_alive(self, bid: str) -> bool | None:
        """True alive, False gone, None never started (no runner.json)."""
        info = self.runner(bid, strict=True)
        if info is None:
            return None
        return _same_process(info["pid"], info["start"])

    def _signal(self, bid: str, sig: int) -> bool:
        info = self.runner(bid)  # a bad runner.json is None: never signal a PID read from garbage
        if info is None or not _same_process(info["pid"], info["start"]):
            return False
        try:
            os.kill(info["pid"], sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise BackendError(f"cannot signal the runner of job {bid.split('/')[0]}: {exc.strerror}") from None
        return True

    def suspend(self, bid: str) -> None:
        """Freeze the attempt: the `frozen` mark in its folder, then SIGUSR1 (the runner acts on the mark,
        so a signal that comes late, when the runner already runs another attempt, does nothing)."""
        folder = self.attempt_dir(bid)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the runner may not have made it yet (see cancel)
        mark = folder / FROZEN_MARK
        with contextlib.suppress(FileExistsError):
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        self._signal(bid, signal.SIGUSR1)

    def resume(self, bid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.attempt_dir(bid) / FROZEN_MARK)
        self._signal(bid, signal.SIGUSR2)

    def cancel(
        self,
        bid: str,
        grace: float = 10.0,
        reason: str = "killed",
        message: str | None = None,
        signum: int | None = None,
    ) -> bool:
        """Ask the attempt to end: kill.json first (the runner reads it before it starts any worker, so a
        kill that races the start is not lost), then SIGTERM if the runner already runs. `signum`: the
        signal the job's processes get first instead of SIGTERM (`kill --signal`)."""
        folder = self.attempt_dir(bid)
        if (folder / "result.json").exists():
            return False
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the runner may not have made it yet
        if not (folder / "kill.json").exists():
            request = {"reason": reason, "grace": grace, "message": message}
            if signum is not None:
                request["signal"] = signum
            write_json(folder / "kill.json", request)
        return self._signal(bid, signal.SIGTERM)

    def abandon(self, bid: str, message: str, pid: int | None = None) -> None:
        """The attempt is recorded lost (its files could not be read): ask its runner to end it at once,
        whatever its files say. `pid`: the runner, when it is the caller's own unreaped child; else the
        one runner.json names, if it is still that process."""
        folder = self.attempt_dir(bid)
        with contextlib.suppress(OSError):
            write_json(folder / "kill.json", {"reason": "worker_lost", "grace": 0.0, "message": message})
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            return
        with contextlib.suppress(BackendError):
            self._signal(bid, signal.SIGTERM)

    # -- observing -----------------------------------------------------------------------------
    def observe(self, bid: str, num_nodes: int | None = None) -> Observation:
        """What the attempt's files say. Raises BadStateFile when one of them is not what the runner writes."""
        folder = self.attempt_dir(bid)
        n = num_nodes or _int((read_json(folder / "plan.json") or {}).get("num_nodes", 1), "plan.json")
        result = _checked_result(read_json(folder / "result.json"))
        workers = self._workers(folder, n, result)
        if result is None:
            alive = self.runner_alive(bid)
            if alive is False:  # it may have written its result and exited since we looked
                result = _checked_result(read_json(folder / "result.json"))
                if result is not None:
                    return _finished(bid, result, n, self._workers(folder, n, result))
            if alive is False:
                _end_orphans(bid, self.runner(bid))  # workers of a runner that died (kill -9) may live on
                for w in workers:
                    if w.state == "running":
                        w.state = "lost"
                return Observation(
                    bid,
                    "FAILED",
                    "worker_lost",
                    "the job's processes vanished without an exit code",
                    ended_at=_last_sign_of_life(folder),
                    workers=workers,
                )
            if alive is None:
                return Observation(bid, "CREATED", workers=workers)  # forked, not yet started
            failed = sum(1 for w in workers if w.state == "exited" and w.exit_code != 0)
            return Observation(
                bid,
                "FAILING" if failed else "ACTIVE",
                "workers_failed" if failed else None,
                f"{failed}/{n} workers failed" if failed else None,
                workers=workers,
            )
        return _finished(bid, result, n, workers)

    @staticmethod
    def _workers(folder: Path, n: int, result: dict[str, Any] | None = None) -> list[WorkerObservation]:
        """Each rank: running, or exited with its code; its PID from runner.json, or from result.json
        when the attempt ended before runner.json named its workers."""
        pids = (_checked_runner(read_json(folder / "runner.json")) or {}).get("workers") or {}
        if not pids and result is not None:
            pids = result.get("workers") or {}
        workers = []
        for rank in range(n):
            done = read_json(folder / f"rank{rank}.exit")
            pid = pids.get(str(rank))
            if done is None:
                workers.append(WorkerObservation(rank, "running", pid=pid))
            else:
                workers.append(
                    WorkerObservation(rank, "exited", _int(done.get("exit_code"), f"rank{rank}.exit"), pid=pid)
                )
        return workers


def _finished(bid: str, result: dict[str, Any], n: int, workers: list[WorkerObservation]) -> Observation:
    obs = _finished_state(bid, result, n, workers)
    obs.usage = checked_usage(result.get("usage"))
    return obs


def checked_usage(usage: Any) -> dict[str, Any] | None:
    """result.json's `usage`: kept only as a mapping of the known fields to non-negative numbers (a job
    that writes garbage there loses its accounting, never its outcome)."""
    from jobctl.core.accounting import USAGE_FIELDS

    if not isinstance(usage, dict):
        return None
    kept = {}
    for key in USAGE_FIELDS:
        value = usage.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e18:
            continue
        kept[key] = value
    return kept or None


def _finished_state(bid: str, result: dict[str, Any], n: int, workers: list[WorkerObservation]) -> Observation:
    codes = result.get("exit_codes") or []
    for w in workers:  # the last worker's exit code is only in the result
        if w.state == "running" and w.rank < len(codes) and codes[w.rank] is not None:
            w.state, w.exit_code = "exited", codes[w.rank]
    outcome, code = result["outcome"], result.get("exit_code")
    ended = result.get("ended_at")
    msg = result.get("message")
    if outcome == "completed":
        return Observation(bid, "COMPLETED", None, None, 0, ended_at=ended, workers=workers)
    if outcome in ("timed_out", "out_of_memory", "setup_failed", "start_error"):
        return Observation(bid, "FAILED", outcome, msg, code, ended_at=ended, workers=workers)
    if outcome == "failed":
        failed = result.get("failed", 1)
        if n > 1:
            return Observation(
                bid, "FAILED", "workers_failed", f"{failed}/{n} workers failed", code, ended_at=ended, workers=workers
            )
        return Observation(bid, "FAILED", "exit_code", f"exit {code}", code, ended_at=ended, workers=workers)
    # ended on request (killed, released, preempted): the caller already holds the state it wants
    return Observation(bid, "KILLED", outcome, msg, code, ended_at=ended, workers=workers)


def _end_orphans(bid: str, info: dict[str, Any] | None) -> None:
    """SIGKILL what a runner that died without a result left running: the processes of its session
    (the runner calls setsid, so the session ID is its PID) started after it, that carry this
    attempt's JOBCTL_JOB_ID and JOBCTL_ATTEMPT. The job is recorded as `worker lost`; they must not
    run on, nor beside the attempt a retry starts."""
    if info is None:
        return
    import psutil

    job, attempt = bid.split("/")
    mine = {"JOBCTL_JOB_ID": job, "JOBCTL_ATTEMPT": attempt}
    for proc in psutil.process_iter(["pid", "uids", "create_time"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != os.getuid() or proc.pid == info["pid"]:
                continue
            if (proc.info["create_time"] or 0) < info["start"] - 0.01 or os.getsid(proc.pid) != info["pid"]:
                continue
            env = proc.environ()
            if all(env.get(k) == v for k, v in mine.items()):
                proc.kill()  # psutil checks the PID was not reused since process_iter saw it
        except (psutil.Error, OSError):
            continue


def _last_sign_of_life(folder: Path) -> float:
    """When a runner that left no result ended: at the machine's restart if it started before it, else now."""
    import psutil

    started = (read_json(folder / "runner.json") or {}).get("start") or 0.0
    booted = psutil.boot_time()
    return booted if started < booted else time.time()


def _int(value: Any, where: str, none: bool = False) -> Any:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value < (1 << 31):
        raise BadStateFile(f"{where}: expected an integer, got {type(value).__name__}")
    return value


def _number(value: Any, where: str) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadStateFile(f"{where}: expected a number, got {type(value).__name__}")
    return value


def _checked_runner(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """runner.json: {"pid": int > 0, "start": number, "workers": {rank: pid}}."""
    if info is None:
        return None
    if _int(info.get("pid"), "runner.json: pid") <= 0 or _number(info.get("start"), "runner.json: start") is None:
        raise BadStateFile("runner.json: pid or start missing")
    _checked_workers(info.get("workers"), "runner.json")
    return info


def _checked_workers(workers: Any, where: str) -> None:
    """A `workers` field: {rank: pid}, or absent."""
    if workers is not None:
        if not isinstance(workers, dict) or not all(k.isdigit() for k in workers):
            raise BadStateFile(f"{where}: workers: expected a mapping of rank to pid")
        for rank, pid in workers.items():
            _int(pid, f"{where}: workers.{rank}")


def _checked_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """result.json: the fields `_finished` reads, with their types."""
    if result is None:
        return None
    if result.get("outcome") not in OUTCOMES:
        raise BadStateFile("result.json: outcome: not one the runner writes")
    codes = result.get("exit_codes")
    if codes is not None and not isinstance(codes, list):
        raise BadStateFile("result.json: exit_codes: expected a list")
    for code in codes or []:
        _int(code, "result.json: exit_codes", none=True)
    _int(result.get("exit_code"), "result.json: exit_code", none=True)
    _int(result.get("failed", 0), "result.json: failed")
    _checked_workers(result.get("workers"), "result.json")
    _number(result.get("ended_at"), "result.json: ended_at")
    if result.get("message") is not None and not isinstance(result["message"], str):
        raise BadStateFile("result.json: message: expected text")
    return result


def _same_process(pid: int, start: float) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - start) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
