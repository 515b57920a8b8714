"""Slot runners: long-lived runners that run short attempts one after another.

A runner forked per attempt costs more than a short job runs (the fork of the supervisor, a new
session, the cgroup move, the process's end). So the supervisor keeps a pool of runners: each is
forked once, becomes a runner (its own session, a child subreaper, signals taken with sigtimedwait)
and then waits on a socket pair for work. For each attempt it gets one line, runs the attempt exactly
as a runner of one attempt does (`runner.one_attempt`: plan.json, runner.json, the kill.json check,
the workers, result.json, in that order), and answers one line when the result is written.

What a runner of one attempt guarantees still holds, attempt by attempt:

- runner.json names this process (PID and start) only while it runs that attempt: it takes the next
  one only after the last one's result.json is written, so "the runner lives and there is no result"
  still means "the attempt runs", and a runner killed with -9 loses exactly the attempt it ran.
- A kill or a freeze is a file in the attempt's folder, then a signal; a signal that arrives after its
  attempt ended finds no such file in the next attempt's folder and changes nothing.
- Every process of an attempt is reaped (or killed) before the next attempt starts.
- If its supervisor is gone when an attempt ends, the runner tells (or starts) the next one, as a runner
  of one attempt does, and exits. When its supervisor dies while it waits, it does the same (that
  supervisor may have died before reading the runner's last word); a supervisor that leaves in good
  order says so first, and its idle runners just exit.

Lines from the supervisor: {"bid", "dir", "plan"} (run this attempt) or {"exit": true}. Line from the
runner: "done <bid>".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from jobctl.backends.local.plan import RunnerPlan
from jobctl.backends.local.runner import (
    WATCHED,
    CgroupHolder,
    Home,
    become_runner,
    log_crash,
    one_attempt,
    process_identity,
    set_title,
    tell_supervisor,
)

IDLE_TITLE = "jobctl-runner idle"
KEEP_IDLE = 5.0  # seconds an idle slot runner is kept for the next attempt
MAX_IDLE = 8  # idle slot runners kept at most
SEND_TIMEOUT = 10.0  # seconds for an idle runner to read an attempt handed to it


def serve(sock: socket.socket, supervisor_socket: str) -> None:
    """Body of a slot runner, forked by the supervisor. Never returns: it ends with os._exit."""
    code = 0
    cgroups = CgroupHolder(keep=True)
    folder: Path | None = None
    try:
        home = Home()
        set_title(IDLE_TITLE)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)  # the supervisor's, closed here
        become_runner()
        identity = process_identity()
        environ = dict(os.environ)  # the supervisor's, as a runner of one attempt would copy it each time
        reader = sock.makefile("rb")
        while True:
            line = reader.readline()
            if not line:  # the supervisor died: whatever it had not seen yet, a live one must
                tell_supervisor(RunnerPlan(0, 0, 1, "", socket=supervisor_socket), home)
                return
            if not line.endswith(b"\n"):
                return  # the supervisor gave up handing us this attempt (see RunnerPool.start)
            message = json.loads(line)
            if message.get("exit"):
                return
            bid, folder, plan = str(message["bid"]), Path(message["dir"]), RunnerPlan.from_json(message["plan"])
            set_title(f"jobctl-runner job {plan.job_id} attempt {plan.attempt}")
            while signal.sigtimedwait(WATCHED, 0) is not None:
                pass  # signals meant for earlier attempts: their files decide, and those attempts ended
            one_attempt(folder, plan, identity, cgroups, slot=True, environ=environ)
            leave_workdir(home.cwd)
            set_title(IDLE_TITLE)
            try:
                sock.sendall(f"done {bid}\n".encode())
            except OSError:  # the supervisor is gone: tell the next one, and end
                tell_supervisor(plan, home)
                return
            folder = None
    except BaseException:  # noqa: BLE001 - the runner must always leave a trace and exit
        code = 70
        if folder is not None:
            log_crash(folder)  # no result.json: the attempt is seen as lost
    finally:
        cgroups.release()
        os._exit(code)


def leave_workdir(start: str | None) -> None:
    """Back to the folder the runner started in (else /), as a runner forked for the next attempt would
    be: the attempt entered its workdir, which may be removed (`rm` of a git workdir's job) or unmounted
    while this runner waits, and the next attempt must not run from there."""
    for folder in (start, "/"):
        if folder:
            try:
                os.chdir(folder)
                return
            except OSError:
                continue


class Slot:
    """The supervisor's side of one slot runner."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        self.bid: str | None = None  # the attempt it runs; None: idle
        self.idle_since = time.monotonic()
        self.buffer = b""


class RunnerPool:
    """The slot runners of one supervisor: forks them, hands them attempts, hears them end."""

    def __init__(self, supervisor_socket: str):
        self.supervisor_socket = supervisor_socket
        self.slots: dict[int, Slot] = {}  # pid -> slot

    def start(self, bid: str, folder: Path, plan: RunnerPlan) -> int:
        """Hand the attempt to an idle slot runner (forked when none is idle); its PID. Raises OSError
        when no runner can take it."""
        line = (json.dumps({"bid": bid, "dir": str(folder), "plan": plan.to_json()}) + "\n").encode()
        for _ in range(2):
            slot = self._idle() or self._fork()
            try:
                slot.sock.settimeout(SEND_TIMEOUT)  # a long script fills the socket's buffer: it reads as we send
                try:
                    slot.sock.sendall(line)
                finally:
                    slot.sock.setblocking(False)
            except OSError:
                self.drop(slot.pid)  # it died meanwhile: its SIGCHLD comes; try a fresh one
                continue
            slot.bid = bid
            return slot.pid
        raise OSError(0, "no slot runner could take the attempt")

    def _idle(self) -> Slot | None:
        best = None
        for slot in self.slots.values():
            if slot.bid is None and (best is None or slot.idle_since > best.idle_since):
                best = slot  # the most recently used: its pages are warm, the others may age out
        return best

    def _fork(self) -> Slot:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                keep = theirs.fileno()
                os.closerange(3, keep)  # the lock, the socket, the database and the other slots stay behind
                os.closerange(keep + 1, 1 << 16)
            finally:
                serve(theirs, self.supervisor_socket)
        theirs.close()
        ours.setblocking(False)
        slot = self.slots[pid] = Slot(pid, ours)
        return slot

    def busy(self) -> frozenset[str]:
        """The attempts handed to a live slot runner that has not said yet that they ended."""
        return frozenset(slot.bid for slot in self.slots.values() if slot.bid is not None)

    def sockets(self) -> list[socket.socket]:
        return [slot.sock for slot in self.slots.values()]

    def heard(self, ready: list[Any]) -> list[str]:
        """Read what the ready slot sockets say; the attempts that ended (their result.json is written)."""
        ended = []
        for slot in [s for s in self.slots.values() if s.sock in ready]:
            try:
                data = slot.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # it exited or died: its SIGCHLD is reaped by the supervisor
                self.drop(slot.pid)
                continue
            slot.buffer += data
            *lines, slot.buffer = slot.buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"done ") and slot.bid == line[5:].decode(errors="replace"):
                    ended.append(slot.bid)
                    slot.bid = None
                    slot.idle_since = time.monotonic()
        return ended

    def drop(self, pid: int) -> None:
        slot = self.slots.pop(pid, None)
        if slot is not None:
            slot.sock.close()

    def trim(self, now: float | None = None) -> float | None:
        """Let idle runners go after KEEP_IDLE seconds (beyond MAX_IDLE at once); when to look again."""
        now = time.monotonic() if now is None else now
        idle = sorted((s for s in self.slots.values() if s.bid is None), key=lambda s: s.idle_since)
        surplus = len(idle) - MAX_IDLE
        later = None
        for slot in idle:
            if surplus > 0 or now - slot.idle_since >= KEEP_IDLE:
                surplus -= 1
                self._dismiss(slot)
            else:
                due = slot.idle_since + KEEP_IDLE
                later = due if later is None else min(later, due)
        return later

    def _dismiss(self, slot: Slot) -> None:
        with contextlib.suppress(OSError):
            slot.sock.sendall(b'{"exit": true}\n')
        self.drop(slot.pid)

    def close(self) -> None:
        """The supervisor is leaving: idle runners end now, busy ones after their attempt (they find
        the socket closed, and tell the next supervisor)."""
        for slot in list(self.slots.values()):
            if slot.bid is None:
                self._dismiss(slot)
            else:
                self.drop(slot.pid)
