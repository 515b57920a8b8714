"""The supervisor of a shared queue (SPEC section 12): root runs it, users talk to it over its socket.

`jobctl supervisor start --shared` (root, with JOBCTL_HOME set) lays the home out for sharing and
starts it; `jobctl supervisor run --shared` is the same in the foreground, for systemd:

    HOME/                 0755 root   (users reach run/ and state/logs/ through it)
    HOME/config.toml      0600 root
    HOME/data/            0700 root   the database: only the supervisor opens it
    HOME/state/, logs/    0711 root   a job's logs are its owner's (0600), reached by their path
    HOME/run/             0755 root   shared.json (0644: this home is shared), the socket (0666, or
                                      0660 and group `shared.allowed_group`), the lock (0600)

It is the single-user supervisor (jobctl/supervisor/daemon.py) with three differences: it never
exits when idle, its socket is open to users, and each connection carries one request of the
protocol in jobctl/shared/protocol.py, answered by a pool of threads (each with its own database
connection) running the use cases of jobctl/app/caller.py as the caller the kernel names.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jobctl.errors import JobctlError, UsageError
from jobctl.home.paths import Paths
from jobctl.shared import protocol
from jobctl.supervisor.daemon import Supervisor

WORKERS = 16  # requests served at once; each holds a thread for at most protocol.READ_TIMEOUT while it reads
ACTING = frozenset({"control", "prune"})  # ops that change jobs and signal their runners: never during a pass


def setup_home(paths: Paths) -> Paths:
    """Lay out a home for sharing (see the module's text); returns its paths, now marked shared."""
    from jobctl.backends.local.runner import write_json
    from jobctl.errors import UnsafePath
    from jobctl.home.paths import check_private

    if os.getuid() != 0:
        raise UsageError("--shared: only root starts a shared queue (its supervisor runs each job as its owner)")
    if not os.environ.get("JOBCTL_HOME"):
        raise UsageError("--shared: set JOBCTL_HOME to the shared queue's home, e.g. JOBCTL_HOME=/var/lib/jobctl")
    socket_path = paths.runtime / "supervisor.sock"
    if len(os.fsencode(socket_path)) >= 100:
        raise UsageError(f"--shared: {paths.config} is too long a path for a socket; choose a shorter JOBCTL_HOME")
    root = paths.config
    for folder, mode in (
        (root, 0o755),
        (paths.data, 0o700),
        (paths.state, 0o711),
        (paths.logs, 0o711),
        (paths.runtime, 0o755),
    ):
        folder.mkdir(parents=True, exist_ok=True, mode=mode)
        check_private(folder, folder=True)
        if os.lstat(folder).st_uid != 0:
            raise UnsafePath(f"{folder}: not owned by root; a shared queue's home is root's")
        os.chmod(folder, mode)
    write_json(paths.shared_marker, {"version": protocol.VERSION, "socket": str(socket_path)})
    os.chmod(paths.shared_marker, 0o644)  # users read it: it says that this home is shared
    return Paths(paths.data, paths.state, paths.config, paths.runtime, True)


def running_shared(paths: Paths) -> bool | None:
    """Whether the supervisor holding the lock (if any) is a shared one; None when none holds it."""
    import fcntl

    try:
        fd = os.open(paths.lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it
        except BlockingIOError:
            pass
        try:
            return bool(json.loads(os.pread(fd, 4096, 0) or b"{}").get("shared"))
        except ValueError:
            return False
    finally:
        os.close(fd)


class ForkGate:
    """No fork while a request is being answered.

    The main loop forks a runner per attempt (`LocalBackend.start`) and the child goes on in Python
    (it sets the job's owner's groups with the password database, writes files and JSON), while the
    request threads look users up (getpwuid, getgrouplist), use SQLite and print tracebacks. A child
    forked while another thread holds one of those locks would inherit it held, by a thread that
    does not exist in the child, and hang. So a request thread holds the gate (shared) while it does
    anything but wait on its socket, and the main loop takes it (exclusive, new requests wait) around
    its forks; reading and writing the socket stay outside, so a slow client never delays a start.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._working = 0
        self._forking = False

    @contextlib.contextmanager
    def working(self):
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._working += 1
        try:
            yield
        finally:
            with self._cond:
                self._working -= 1
                if not self._working:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def forking(self):
        with self._cond:
            self._forking = True
            while self._working:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._forking = False
                self._cond.notify_all()


class SharedSupervisor(Supervisor):
    def __init__(self, paths: Paths, on_demand: bool = False):
        super().__init__(paths, on_demand)
        self.idle_exit = 365 * 86400.0  # a team's queue: always there (systemd restarts it if it dies)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="request")
        self.local = threading.local()
        self.gate = ForkGate()
        # A control request (its state change, then its signal or kill.json) and a pass of the engine
        # never interleave: a pass that saw a job just recorded KILLED would send the default
        # TERM-then-KILL itself, before the request could write its `kill --signal`. Status and
        # other reads never take it. Taken before the gate, in both places (one order: no deadlock).
        self.acting = threading.Lock()

    def make_pool(self) -> Any:
        """None: a shared queue's attempts run as their owners, each in a runner of its own."""
        return None

    def tick(self):
        with self.acting:
            return super().tick()

    def act(self, actions: Any) -> None:
        """Start runners (forks) only while no request thread is working: see ForkGate."""
        if not actions.start:
            super().act(actions)
            return
        with self.gate.forking():
            super().act(actions)

    # -- the socket ------------------------------------------------------------------------------------
    def bind(self) -> None:
        super().bind()
        path = str(self.paths.socket)
        group = self.config.get("shared.allowed_group")
        gid = None
        if group:
            with contextlib.suppress(KeyError):
                gid = grp.getgrnam(group).gr_gid
        if gid is not None:
            os.chown(path, 0, gid)
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o666)  # who may ask is decided per request (config shared.allowed_group)

    def try_exit(self) -> bool:
        return False

    def mark(self, exiting: bool) -> None:
        """As the single-user supervisor, plus `"shared": true` in the lock file (see `running_shared`)."""
        info = {"pid": os.getpid(), "started": self.started, "shared": True, **({"exiting": True} if exiting else {})}
        with contextlib.suppress(OSError):
            os.ftruncate(self.lock_fd, 0)
            os.pwrite(self.lock_fd, json.dumps(info).encode(), 0)

    def poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    def accepted(self, conn: socket.socket) -> None:
        """A request: answered by a request thread (`serve`)."""
        conn.setblocking(True)
        self.pool.submit(self.serve, conn)

    # -- one request -------------------------------------------------------------------------------------
    def store_for_thread(self):
        from jobctl.store.database import Store

        store = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = Store(self.paths.db)
        return store

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(protocol.READ_TIMEOUT)
            try:
                peer = protocol.peer_of(conn)
                message = protocol.receive(conn)
                if message is None:  # a wake-up
                    self.poke()
                    return
                op, args = protocol.check_request(message)
                with self.acting if op in ACTING else contextlib.nullcontext(), self.gate.working():
                    result = self.handle(peer, op, args)
                response: dict[str, Any] = {"version": protocol.VERSION, "ok": True, "result": result}
            except protocol.ProtocolError as exc:
                response = {"version": protocol.VERSION, "ok": False, "error": f"bad request: {exc}", "exit_code": 2}
            except JobctlError as exc:
                response = {"version": protocol.VERSION, "ok": False, "error": exc.message, "exit_code": exc.exit_code}
            except TimeoutError:
                response = {
                    "version": protocol.VERSION,
                    "ok": False,
                    "error": f"bad request: not complete within {protocol.READ_TIMEOUT:g} s",
                    "exit_code": 2,
                }
            except Exception as exc:  # noqa: BLE001 - logged; the caller gets one line, the queue goes on
                with self.gate.working():  # stderr's lock is not held across a fork
                    traceback.print_exc()
                    sys.stderr.flush()
                response = {
                    "version": protocol.VERSION,
                    "ok": False,
                    "error": f"the supervisor failed on this request ({type(exc).__name__}); see its log",
                    "exit_code": 1,
                }
            with contextlib.suppress(OSError, protocol.ProtocolError):
                try:
                    protocol.send(conn, response)
                except protocol.ProtocolError as exc:
                    protocol.send(conn, {"version": protocol.VERSION, "ok": False, "error": str(exc), "exit_code": 1})
            if not response["ok"]:
                discard_input(conn)

    def handle(self, peer: protocol.Peer, op: str, args: dict[str, Any]) -> Any:
        from jobctl.app import caller as caller_mod
        from jobctl.home.config import Config

        config = Config.load(self.paths.config_file)
        caller = caller_mod.Caller.of(peer, config)
        svc = caller_mod.CallerService(self.paths, caller, self.store_for_thread(), self.poke)
        svc._config = config
        handler = HANDLERS.get(op)
        if handler is None:
            raise protocol.ProtocolError(f"unknown op {op[:40]!r} (known: {', '.join(sorted(HANDLERS))})")
        return handler(self, svc, args)


def discard_input(conn: socket.socket, limit: int = protocol.MAX_MESSAGE) -> None:
    """Read what a refused client sent beyond its request (up to `limit`, without waiting), so that
    closing does not reset the connection before the client has read its one-line answer."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        got = 0
        while got < limit:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += len(chunk)


# -- the handlers: (supervisor, service for the caller, args) -> a JSON value ---------------------------
def _strs(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what}: expected a list of strings")
    return value


def _ping(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    return {"user": svc.caller.name, "uid": svc.caller.uid, "admin": svc.caller.admin, "version": protocol.VERSION}


def _status_rows(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import row_doc

    labels = [tuple(p) for p in args.get("labels") or [] if isinstance(p, list) and len(p) == 2]
    limit = args.get("limit")
    rows = svc.status_rows(
        _strs(args.get("selectors"), "selectors"),
        all_jobs=bool(args.get("all_jobs")),
        state=_strs(args.get("state"), "state") or None,
        labels=labels,
        limit=limit if isinstance(limit, int) and limit >= 0 else None,
    )
    return [row_doc(r, svc.caller) for r in rows]


def _select(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import row_doc

    rows = svc.select(
        _strs(args.get("selectors"), "selectors"),
        all_jobs=bool(args.get("all_jobs")),
        missing_ok=bool(args.get("missing_ok")),
    )
    return [row_doc(r, svc.caller) for r in rows]


def _rows(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import row_doc

    ids = args.get("ids")
    if (
        not isinstance(ids, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        or len(ids) > 100_000
    ):
        raise UsageError("ids: expected a list of job IDs")
    found = sorted(svc.store.jobs(ids), key=lambda r: r.id) if ids else []
    return [row_doc(r, svc.caller) for r in found]


def _job_id(args: dict[str, Any]) -> int:
    job_id = args.get("id")
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise UsageError("id: expected a job ID")
    return job_id


def _spec(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import spec_doc

    return spec_doc(svc, _job_id(args))


def _details(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.errors import NotFound

    row = svc.row_by_id(_job_id(args))
    if row is None:
        raise NotFound(f"no job matches '{args.get('id')}'")
    return svc.details(row)


def _readable(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import readable_job, row_doc

    selector = args.get("selector")
    if not isinstance(selector, str):
        raise UsageError("selector: expected a job ID or name")
    return row_doc(readable_job(svc, selector), svc.caller)


def _control(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import control, result_doc

    verb = args.get("verb")
    if not isinstance(verb, str):
        raise UsageError("verb: expected an action")
    given = args.get("options")
    options: dict[str, Any] = given if isinstance(given, dict) else {}
    results = control(svc, verb, _strs(args.get("selectors"), "selectors"), bool(args.get("all_jobs")), options)
    return [result_doc(r) for r in results]


def _prune(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import prune, result_doc

    older = args.get("older_than")
    if not isinstance(older, (int, float)) or isinstance(older, bool) or older < 0:
        raise UsageError("older_than: expected seconds")
    results = prune(svc, float(older))
    if results:
        sup.poke()
    return [result_doc(r) for r in results]


def _launch(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import launch

    return launch(svc, args)


def _config(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    return {"values": svc.config.effective(), "path": str(svc.config.path)}


def _supervisor(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    try:
        capacity = json.loads((sup.paths.runtime / "capacity.json").read_text())
    except (OSError, ValueError):
        capacity = None
    return {
        "pid": os.getpid(),
        "running": True,
        "uptime_s": round(time.time() - sup.started, 1),
        "capacity": capacity,
        "shared": True,
    }


def _array_stats(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    ids = args.get("ids")
    if (
        not isinstance(ids, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        or len(ids) > 100_000
    ):
        raise UsageError("ids: expected a list of array IDs")
    return [
        {
            "array_id": s.array_id,
            "counts": s.counts,
            "first_index": s.first_index,
            "last_index": s.last_index,
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "tasks": s.tasks,
        }
        for s in svc.array_stats(ids).values()
    ]


def _queue(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    from jobctl.app.caller import queue_op

    return queue_op(svc, args.get("verb"), args.get("name"), args.get("changes"))


def _stats(sup: SharedSupervisor, svc: Any, args: dict[str, Any]) -> Any:
    """Everyone's usage for every caller (as sacct -a and sreport show it on a shared cluster)."""
    import math

    from jobctl.app.reports import check_by

    since, by = args.get("since"), args.get("by")
    if since is not None and (
        not isinstance(since, (int, float)) or isinstance(since, bool) or not math.isfinite(since)
    ):
        raise UsageError("since: expected epoch seconds")
    if not isinstance(by, str) or len(by) > 256:
        raise UsageError("by: expected user, queue, name or label:KEY")
    return [
        {
            "key": g.key,
            "jobs": g.jobs,
            "completed": g.completed,
            "failed": g.failed,
            "killed": g.killed,
            "cpu_seconds": g.cpu_seconds,
            "gpu_seconds": g.gpu_seconds,
            "peak_memory_bytes": g.peak_memory_bytes,
            "waits": g.waits,
        }
        for g in svc.usage_groups(since, check_by(by))
    ]


HANDLERS = {
    "ping": _ping,
    "status_rows": _status_rows,
    "select": _select,
    "rows": _rows,
    "spec": _spec,
    "details": _details,
    "readable": _readable,
    "control": _control,
    "prune": _prune,
    "launch": _launch,
    "config": _config,
    "supervisor": _supervisor,
    "array_stats": _array_stats,
    "queue": _queue,
    "stats": _stats,
}
