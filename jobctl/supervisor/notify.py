"""Delivering notifications (SPEC section 10): the supervisor's step, and the delivery process.

The supervisor never delivers anything itself: a hook that hangs must not stall scheduling, and
threads do not mix with the runners it forks. Its notify step (`Notifier.step`, once per pass,
outside the write transaction) looks at the due rows of the outbox (`store/notifications.py`) and
starts one short-lived delivery process per row (`python -m jobctl.supervisor.notify ID`), at most
`MAX_IN_FLIGHT` at once. That process claims the row (its PID and start time), makes one try
bounded to `TRY_SECONDS`, records the outcome (delivered, or failed with the next try after a
backoff, or given up after the last try) and exits; its SIGCHLD wakes the supervisor.

At least once: a row is recorded with the state change; it stays pending until a try succeeds or
the last one fails. A delivery process that dies (or a supervisor killed with -9 together with it)
leaves a claim whose process is gone: the next supervisor sees that and tries again at once.

A command runs with bash in its own session, its output read through a pipe and capped
(`OUTPUT_CAP`), its process group killed at the deadline. A webhook is one POST of the job's
`--json` document plus `text` (Slack) and `content` (Discord), with urllib.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobctl.store.records import Job, Notification

TRY_SECONDS = 10.0
OUTPUT_CAP = 64 * 1024  # bytes of a command's output kept (the rest is read and dropped)
MAX_IN_FLIGHT = 8
MESSAGE_CAP = 300  # characters of a try's message in the database


class Notifier:
    """The supervisor's notify step: start delivery processes for the due rows."""

    def __init__(self, python: str = sys.executable):
        self.python = python
        self.in_flight: dict[int, int] = {}  # notification id -> pid of its delivery process

    def step(self, store: Any, now: float, children: set[int]) -> tuple[float | None, list[int]]:
        """Start deliveries that are due; returns (when to look again, PIDs started).

        `children`: the supervisor's unreaped children (a delivery that ended is no longer there)."""
        from jobctl.store import notifications

        self.in_flight = {nid: pid for nid, pid in self.in_flight.items() if pid in children}
        with store.read():
            rows = store.due_notifications(now, limit=MAX_IN_FLIGHT * 4)
            later = store.next_notification_after(now)
        started: list[int] = []
        wake = later
        for row in rows:
            if row.id in self.in_flight:
                continue
            if len(self.in_flight) >= MAX_IN_FLIGHT:
                break  # the ones running now wake us when they end
            if row.claim_pid is not None and _alive(row.claim_pid, row.claim_start):
                stale = now - (row.claimed_at or now) > notifications.CLAIM_STALE_AFTER
                if not stale:  # a delivery process of an earlier supervisor: let it finish
                    wake = now + 1.0 if wake is None else min(wake, now + 1.0)
                    continue
                with contextlib.suppress(OSError):
                    os.killpg(row.claim_pid, signal.SIGKILL)
            pid = self.spawn(row.id, row.claim_pid)
            if pid:
                self.in_flight[row.id] = pid
                started.append(pid)
        return wake, started

    def spawn(self, notification_id: int, seen_pid: int | None) -> int | None:
        argv = [self.python, "-m", "jobctl.supervisor.notify", str(notification_id), str(seen_pid or "-")]
        try:
            return os.posix_spawn(
                self.python,
                argv,
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
                setsid=True,
                setsigmask=(),
                setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE),
            )
        except OSError:
            return None


def _alive(pid: int, start: float | None) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return (start is None or abs(proc.create_time() - start) < 0.01) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- one try ------------------------------------------------------------------------------------


def environment(job: Job, n: Notification, log: str) -> dict[str, str]:
    """What a notify command gets on top of the supervisor's environment."""
    return {
        "JOBCTL_JOB_ID": str(job.id),
        "JOBCTL_JOB_NAME": str(job.name),
        "JOBCTL_STATE": n.state,
        "JOBCTL_STATUS": n.status,
        "JOBCTL_EXIT_CODE": "" if n.exit_code is None else str(n.exit_code),
        "JOBCTL_LOG": log,
    }


def document(job: Job, n: Notification) -> dict[str, Any]:
    """The webhook body: the job's `--json` document as it was when the state was reached, and a
    one-line `text` (Slack) / `content` (Discord)."""
    from jobctl.engine.documents import job_json

    doc = job_json(job)
    doc.update(state=n.state, status=n.status, exit_code=n.exit_code)
    text = f"jobctl: job {job.id} ({job.name}) {n.status}"
    if n.state != "COMPLETED" and job.message and n.state == job.state:
        text += f": {job.message}"
    doc["text"] = text[:1000]
    doc["content"] = doc["text"]
    return doc


def run_command(command: str, env: dict[str, str], cwd: str, timeout: float = TRY_SECONDS) -> tuple[bool, str]:
    """Run a notify command with bash; (ok, what happened). Bounded in time and in kept output."""
    try:
        proc = subprocess.Popen(
            ["bash", "-c", command, "jobctl-notify"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return False, f"could not start bash: {exc.strerror}"
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    kept = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    code = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            chunk = _read(fd)
            if chunk is None:
                pass
            elif chunk:
                if len(kept) < OUTPUT_CAP:
                    kept += chunk[: OUTPUT_CAP - len(kept)]
                continue
            else:  # end of output: wait for the exit itself (bounded)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                if code is None:
                    timed_out = True
                break
        code = proc.poll()
        if code is not None:
            break  # background processes may hold the pipe open: do not wait for them
    if timed_out:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc.stdout.close()
    if timed_out:
        return False, f"command timed out after {timeout:g}s (killed){_last_line(kept)}"
    assert code is not None
    if code != 0:
        what = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return False, f"command failed ({what}){_last_line(kept)}"
    return True, "command ran (exit 0)"


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _last_line(output: bytes | bytearray) -> str:
    lines = bytes(output).decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return ""
    line = "".join(c if c.isprintable() else "?" for c in lines[-1].strip())
    return f": {line[:200]}"


class _Deadline(Exception):
    pass


def post_webhook(url: str, body: dict[str, Any], timeout: float = TRY_SECONDS) -> tuple[bool, str]:
    """One POST of `body` as JSON; ok on a 2xx answer. The whole try, connect to last byte, is bounded.
    The message never quotes the URL (its path may be a secret; describe names the host)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "jobctl"},
    )

    def expire(signum: int, frame: object) -> None:
        raise _Deadline

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(OUTPUT_CAP)
            return True, f"answered {answer.status}"
    except _Deadline:
        return False, f"no answer: timed out after {timeout:g}s"
    except urllib.error.HTTPError as exc:
        return False, f"answered HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        return False, f"failed: {reason}"
    except (OSError, ValueError) as exc:
        return False, f"failed: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def deliver(notification_id: int, seen_pid: int | None) -> int:
    """The delivery process: claim the row, try once, record the outcome. Exit status 0 unless the
    database could not be reached (the row then stays pending, and is tried again)."""
    import psutil

    from jobctl.home.paths import resolve
    from jobctl.store.database import Store

    paths = resolve()
    store = Store(paths.db)
    try:
        me = psutil.Process()
        with store.write():
            n = store.claim_notification(notification_id, me.pid, me.create_time(), time.time(), seen_pid)
            job = store.job(n.job_id) if n is not None else None
            workdir = store.workdir_of(n.job_id) if n is not None else None
        if n is None or job is None:
            return 0  # delivered, given up, removed, or claimed by another
        target = n.target_doc
        if target.get("kind") == "command":
            log = str(paths.attempt_dir(job.id, n.attempt) / "rank0.log") if n.attempt else ""
            env = {**os.environ, **environment(job, n, log)}
            cwd = workdir if workdir and os.path.isdir(workdir) else str(Path.home())
            umask = _job_umask(job)
            old_umask = os.umask(umask) if umask is not None else None  # files it makes: as the job's
            try:
                ok, message = run_command(str(target.get("value", "")), env, cwd)
            finally:
                if old_umask is not None:
                    os.umask(old_umask)
        elif target.get("kind") == "webhook":
            ok, message = post_webhook(str(target.get("value", "")), document(job, n))
        else:
            ok, message = False, f"unknown notify target {target.get('kind')!r}"
        with store.write():
            store.record_notification_try(notification_id, ok, message[:MESSAGE_CAP], time.time())
        return 0
    finally:
        store.close()


def _job_umask(job: Job) -> int | None:
    try:
        umask = json.loads(job.envs or "{}").get("umask")
    except (ValueError, AttributeError):
        return None
    return umask if isinstance(umask, int) and 0 <= umask <= 0o777 else None


def main(argv: list[str]) -> int:
    os.umask(0o077)
    try:
        notification_id = int(argv[0])
        seen = None if len(argv) < 2 or argv[1] == "-" else int(argv[1])
    except (IndexError, ValueError):
        print("usage: python -m jobctl.supervisor.notify NOTIFICATION_ID [SEEN_PID]", file=sys.stderr)
        return 2
    try:
        return deliver(notification_id, seen)
    except Exception as exc:  # noqa: BLE001 - the row stays pending; the supervisor's log says why
        print(f"jobctl notify {notification_id}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
