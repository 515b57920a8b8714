"""The local supervisor: one process per JOBCTL_HOME (an exclusive flock, not a hope).

It sleeps until something happens (a CLI wake-up on its socket, a runner exiting, a timer),
then runs one `Engine.tick` in one write transaction, commits, and only then forks runners and
sends signals. Signal handlers only set flags or write to a wake-up pipe. It exits after
`supervisor.idle_exit` with nothing to do; `launch` starts it again on demand, and so do a runner
whose attempt ends while none listens and every command that shows or waits on live local jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from jobctl.backends.local import capacity as capacity_mod
from jobctl.backends.local.backend import LocalBackend
from jobctl.core import states
from jobctl.core.units import parse_duration
from jobctl.engine.local import Engine
from jobctl.home.config import Config
from jobctl.home.launcher import LOCK_FD_ENV, exiting, spawn_detached, start_if_absent
from jobctl.home.paths import Paths, make_private_dir
from jobctl.store.database import Store
from jobctl.supervisor.notify import Notifier

__all__ = ["Supervisor", "exiting", "main", "spawn_detached", "start_if_absent"]

MEMORY_CHECK_EVERY = 0.25  # seconds, while jobs run
LIVENESS_CHECK_EVERY = 1.0  # seconds, for runners adopted from an earlier supervisor


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _process_start() -> float:
    """When this process started, as psutil computes it for any PID (the start in clock ticks after boot
    from /proc/self/stat, plus the boot time from /proc/stat), without importing psutil before the lock
    is taken; else now."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        ticks = float(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as handle:
            booted = next(float(line.split()[1]) for line in handle if line.startswith(b"btime"))
        return ticks / os.sysconf("SC_CLK_TCK") + booted
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


class Supervisor:
    def __init__(self, paths: Paths, on_demand: bool = False):
        self.paths = paths
        self.on_demand = on_demand  # started by a CLI call, not by `supervisor run`
        self.config = Config.load(paths.config_file)
        self.idle_exit = parse_duration(self.config.get("supervisor.idle_exit"))
        self.grace = parse_duration(self.config.get("kill.grace"))
        self.children: set[int] = set()
        self.runner_pids: dict[str, int] = {}  # backend id -> runner pid, read once from runner.json
        self.stop_requested = False
        self.started = _process_start()  # what checkers compare with the PID's start: exact even on a slow start
        self.slurm_next = 0.0  # when to look at Slurm again for local jobs waiting on Slurm jobs
        self.runners: Any = None  # the slot runners (backends/local/slots.py), made when the loop starts
        from jobctl.supervisor.retention import Retention

        self.retention = Retention(paths)

    # -- process plumbing ----------------------------------------------------------------------
    def acquire_lock(self, wait: float) -> bool:
        make_private_dir(self.paths.runtime)
        fd = self._inherited_lock()
        if fd is None:
            fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        self.lock_fd = fd
        self.mark(exiting=False)
        return True

    def mark(self, exiting: bool) -> None:
        """Say in the lock file who holds it, and whether it is on its way out (not answering any more)."""
        info = {"pid": os.getpid(), "started": self.started, **({"exiting": True} if exiting else {})}
        with contextlib.suppress(OSError):
            os.ftruncate(self.lock_fd, 0)
            os.pwrite(self.lock_fd, json.dumps(info).encode(), 0)

    def _inherited_lock(self) -> int | None:
        """The lock handed over by `start_if_absent` (already held: the lock was never free meanwhile)."""
        number = os.environ.pop(LOCK_FD_ENV, None)
        if not number:
            return None
        try:
            fd = int(number)
            held, ours = os.fstat(fd), os.stat(self.paths.lock)
            if (held.st_dev, held.st_ino) != (ours.st_dev, ours.st_ino):
                return None  # not our lock file: leave that descriptor alone
            os.set_inheritable(fd, False)
            return fd
        except (ValueError, OSError):
            return None

    def bind(self) -> None:
        path = self.paths.socket
        make_private_dir(path.parent)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(path))
        finally:
            os.umask(old)
        self.listener.listen(128)
        self.listener.setblocking(False)

    def unbind(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.paths.socket.unlink()

    def install_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

        def on_stop(signum: int, frame: object) -> None:
            self.stop_requested = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGCHLD, lambda s, f: None)  # only to wake select via the wake-up fd
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def drain(self) -> None:
        """Empty the wake-up pipe, then take every waiting connection (`accepted`)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self.wake_r, 4096):
                pass
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # none waiting (BlockingIOError), or one that went away
                break
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        """A connection is a wake-up call from the owning user's CLI: read it and close it."""
        with conn:
            if peer_uid(conn) != os.getuid():
                return  # only the owning user may talk to this supervisor
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.recv(64)

    def reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            if self.runners is not None:
                self.runners.drop(pid)
            for bid in [b for b, p in self.runner_pids.items() if p == pid]:
                del self.runner_pids[bid]

    def busy_children(self) -> bool:
        """Children that are not idle slot runners (those are let go when the supervisor leaves)."""
        if self.runners is None:
            return bool(self.children)
        return any(pid not in self.runners.slots or self.runners.slots[pid].bid is not None for pid in self.children)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        waited = time.monotonic()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # whoever started us may have blocked signals
        if not self.acquire_lock(wait=5.0):
            return 0  # another supervisor holds this home
        self.paths.ensure()
        if time.monotonic() - waited > 0.2 and self.on_demand and not self._live_work():
            return 0  # started on demand while another was exiting or stopping, and nothing is left to do
        self.install_signals()
        self.bind()
        self.store = Store(self.paths.db)
        import gc

        import psutil  # noqa: F401 - imported once here, so a forked runner starts without the cost

        import jobctl.backends.local.usage  # noqa: F401 - likewise
        from jobctl.backends.local.cgroups import MemoryCgroup
        from jobctl.backends.local.runner import libc

        MemoryCgroup.warm()  # likewise: the runners' cgroups and C library, found once here
        libc()

        gc.freeze()  # what exists now is never collected: forked runners share those pages untouched

        self.backend = LocalBackend(self.paths.logs, self.make_pool())
        self.notifier = Notifier()
        self.engine = Engine(
            self.backend,
            self.detect_capacity(),
            str(self.paths.socket),
            self.grace,
            str(self.paths.runtime / "cgroups"),
            paths=self.paths,
        )
        self.loop()
        return 0

    def make_pool(self) -> Any:
        """The long-lived runners that run short attempts in turn (backends/local/slots.py)."""
        from jobctl.backends.local.slots import RunnerPool

        self.runners = RunnerPool(str(self.paths.socket))
        return self.runners

    def loop(self) -> None:
        """Tick on events (a CLI wake-up, a runner's note, SIGCHLD) and timers, never on a fast clock.

        Between ticks, only the memory check runs (no database), at a pace that slows down as the
        number of running jobs grows; runners adopted from an earlier supervisor are looked at once
        a second, since no SIGCHLD will come for them.
        """
        idle_since = time.monotonic()
        next_memory_check = next_liveness = 0.0
        need_tick, holding, live, next_wake = True, [], 0, None
        try:
            while not self.stop_requested:
                self.reap()
                if need_tick:
                    holding, live, next_wake, more = self.tick()
                    need_tick = False
                    if more:
                        need_tick = True  # the queue window was full and there may be room left
                        continue
                mono = time.monotonic()
                deadlines = []
                if next_wake is not None:
                    deadlines.append(mono + max(0.0, next_wake - time.time()))
                if holding:
                    if mono >= next_memory_check:
                        self.check_memory(holding)
                        next_memory_check = mono + MEMORY_CHECK_EVERY * max(1.0, len(holding) / 25)
                    deadlines.append(next_memory_check)
                    if any(not self._is_child(r) for r in holding):
                        if mono >= next_liveness:
                            next_liveness = mono + LIVENESS_CHECK_EVERY
                        deadlines.append(next_liveness)
                if self.runners is not None:
                    trim = self.runners.trim(mono)  # idle slot runners go after a few seconds
                    if trim is not None:
                        deadlines.append(trim)
                if live or self.busy_children():
                    idle_since = mono
                else:
                    left = self.idle_exit - (mono - idle_since)
                    if left <= 0:
                        if self.try_exit():
                            break
                        need_tick = True  # work arrived unannounced (a delivery recorded by a command): pass now
                        continue
                    deadlines.append(mono + max(left, 0.05))
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                with contextlib.suppress(InterruptedError):
                    watched: list[socket.socket | int] = [self.listener, self.wake_r]
                    if self.runners is not None:
                        watched += self.runners.sockets()
                    ready, _, _ = select.select(watched, [], [], timeout)
                if self.runners is not None and ready:
                    self.runners.heard(ready)  # attempts that ended: the pass below records them
                self.drain()
                mono = time.monotonic()
                due = next_wake is not None and time.time() >= next_wake
                need_tick = bool(ready) or due or bool(holding and mono >= next_liveness > 0)
        finally:
            if self.runners is not None:
                self.runners.close()
            self.mark(exiting=True)
            self.unbind()
            self.store.close(checkpoint=True)  # leaves a self-contained database file behind
            from jobctl.backends.local.cgroups import remove_pool

            remove_pool(self.paths.runtime / "cgroups")

    def config_stamp(self) -> float | None:
        try:
            return self.paths.config_file.stat().st_mtime
        except OSError:
            return None

    def detect_capacity(self):
        """Capacity from config.toml (re-read when it changes: `jobctl config set` takes effect at once)."""
        self.config_mtime = self.config_stamp()
        self.config = Config.load(self.paths.config_file)
        self.grace = parse_duration(self.config.get("kill.grace"))
        capacity = capacity_mod.detect(self.config)
        (self.paths.runtime / "capacity.json").write_text(
            json.dumps(
                {
                    "cpus": capacity.cpus,
                    "memory_mib": capacity.memory_mib,
                    "accelerators": {k: len(v) for k, v in capacity.devices.items()},
                }
            )
        )
        return capacity

    def tick(self):
        """One pass in one write transaction; then fork and signal. Never lets one bad job kill the loop."""
        try:
            if self.config_stamp() != self.config_mtime:
                self.engine.capacity = self.detect_capacity()
                self.engine.grace = self.grace
            from jobctl.engine.fairshare import limits_of

            self.engine.user_limits = limits_of(self.config)  # limits.max_*_per_user
            slurm_wake = self.poll_slurm_upstreams()
            store = self.store
            with store.write():
                own = {bid: pid for bid, pid in self.runner_pids.items() if pid in self.children}
                busy = self.runners.busy() if self.runners is not None else frozenset()
                actions = self.engine.tick(store, time.time(), own, busy)
                if slurm_wake:  # a local job waits for a Slurm job: look at Slurm again soon
                    actions.next_wake = min(actions.next_wake or slurm_wake, slurm_wake)
                live = int(store.has_live("local"))  # whether, not how many: O(1) however long the queue
                live += store.pending_notifications()  # undelivered notifications keep the supervisor up
                holding = self.engine.holding(store)
            held = {f"{row.id}/{row.attempt}" for row in holding}
            self.runner_pids = {b: p for b, p in self.runner_pids.items() if b in held}
            self.act(actions)
            try:
                retention = self.retention.run(self.store, self.config, time.time())  # SPEC section 9
            except Exception:  # noqa: BLE001 - logged; jobs go on, the next pass tries again
                import traceback

                traceback.print_exc()
                retention = time.time() + 5.0
            if retention is not None:
                actions.wake_at(retention)
            notify_wake = self.deliver_notifications()
            if notify_wake is not None:
                actions.next_wake = min(actions.next_wake or notify_wake, notify_wake)
            return holding, live, actions.next_wake, actions.more
        except Exception:  # noqa: BLE001 - logged; the next event retries
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            return [], 1, time.time() + 1.0, False

    def deliver_notifications(self) -> float | None:
        """The notify step (SPEC section 10), after the pass's transaction: start a delivery process for
        each due notification (see supervisor/notify.py); returns when the next one is due."""
        try:
            wake, started = self.notifier.step(self.store, time.time(), self.children)
        except Exception:  # noqa: BLE001 - logged; the rows stay pending and the next pass tries again
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            return time.time() + 5.0
        self.children.update(started)
        return wake

    def poll_slurm_upstreams(self) -> float | None:
        """Mirror the Slurm jobs that waiting local jobs depend on; when to look again (None: none).
        At most once every few seconds, however often the loop ticks."""
        now = time.time()
        if now < self.slurm_next:
            return self.slurm_next  # look then (a launch may have just added such a local job)
        self.slurm_next = now + 3.0
        if not self.store.has_live("slurm"):
            return None  # no Slurm job to wait for: no cost for homes that never use Slurm
        from jobctl.engine.slurm_sync import refresh_upstreams

        if not hasattr(self, "slurm_service"):
            from jobctl.engine.session import StoreSession

            self.slurm_service = StoreSession(self.paths, self.store)
        return refresh_upstreams(self.slurm_service)

    def _is_child(self, row) -> bool:
        pid = self._runner_pid(f"{row.id}/{row.attempt}")
        return pid is not None and pid in self.children

    def _runner_pid(self, bid: str) -> int | None:
        if bid not in self.runner_pids:
            info = self.backend.runner(bid)
            if not info:
                return None
            self.runner_pids[bid] = info["pid"]
        return self.runner_pids[bid]

    def act(self, actions) -> None:
        for job_id, attempt, plan in actions.start:
            try:
                pid = self.backend.start(f"{job_id}/{attempt}", plan)
            except OSError as exc:  # no fork possible now: the runner never started, say so
                from jobctl.backends.local.runner import unstarted_result, write_json

                folder = self.paths.attempt_dir(job_id, attempt)
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # a runner makes it, and none ran
                write_json(
                    folder / "result.json", unstarted_result("start_error", f"could not start a runner: {exc.strerror}")
                )
                continue
            self.children.add(pid)
            self.runner_pids[f"{job_id}/{attempt}"] = pid
        for bid, reason, grace, message in actions.cancel:
            self.backend.cancel(bid, grace, reason, message)

    def _live_work(self) -> bool:
        store = Store(self.paths.db)
        try:
            return store.has_live("local") or store.pending_notifications() > 0
        finally:
            store.close()

    def try_exit(self) -> bool:
        """Stop listening, then check once more under the lock: a launch may have just landed.

        A launch that lands after that check finds no socket and a lock marked "exiting": it starts the
        next supervisor, which takes the lock as this one leaves.
        """
        self.mark(exiting=True)
        self.unbind()
        with self.store.write():
            live = int(self.store.has_live("local"))
            live += self.store.pending_notifications()
        if live:
            self.bind()
            self.mark(exiting=False)
            return False
        return True

    def check_memory(self, holding) -> None:
        """Kill a job whose process tree uses more memory than it asked for (SPEC section 7).

        Each runner's tree is walked through /proc's children files (jobctl/backends/local/proctree.py);
        without them, one pass over /proc for all jobs: a map of parent -> children, then each tree.
        """
        import psutil

        from jobctl.core.units import format_gib

        roots = {}
        for row in holding:
            if row.state in states.RUNNING:
                bid = f"{row.id}/{row.attempt}"
                pid = self._runner_pid(bid)
                if pid:
                    roots[pid] = (bid, row.memory_mib * row.num_nodes)
        if not roots:
            return
        from jobctl.backends.local import proctree

        walk = proctree.available()
        kids: dict[int, list[psutil.Process]] = {}
        if not walk:  # no children files in /proc: one scan of every process
            for proc in psutil.process_iter(["ppid"]):
                kids.setdefault(proc.info["ppid"], []).append(proc)
        for root, (bid, limit) in roots.items():
            if walk:
                used = proctree.tree_rss(root)  # only this job's processes
            else:
                used, stack = 0, list(kids.get(root, []))
                while stack:
                    proc = stack.pop()
                    stack.extend(kids.get(proc.pid, []))
                    with contextlib.suppress(psutil.Error):
                        used += proc.memory_info().rss
            used_mib = used / (1024 * 1024)
            if used_mib > limit:
                message = (
                    f"used {format_gib(int(used_mib))} GiB of its {format_gib(limit)} GiB memory limit; "
                    "raise resources.memory in the job file (or --memory) to allow more"
                )
                self.backend.cancel(bid, 0.0, "out_of_memory", message)


def main() -> int:
    from jobctl.home import paths as paths_mod

    os.umask(0o077)
    paths = paths_mod.resolve()
    if paths.shared:  # a runner or a command started it again after a crash: the shared supervisor
        from jobctl.supervisor.shared import SharedSupervisor

        return SharedSupervisor(paths, on_demand=True).run()
    return Supervisor(paths, on_demand=True).run()


if __name__ == "__main__":
    sys.exit(main())
