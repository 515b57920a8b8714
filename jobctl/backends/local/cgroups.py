"""A memory cgroup per attempt, where the machine offers one (cgroup v1 or v2, writable).

The runner moves itself into a child of its own cgroup before it starts the workers, so
everything the job starts is charged there and the kernel enforces the limit exactly (no sampling
gap). When no cgroup can be made (no controller, no permission), `MemoryCgroup.create` returns
None and the supervisor's sampling of the process tree's RSS remains the only guard.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) -> path of this process's cgroup."""
    found: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(","):
                found[name] = path
    except (OSError, ValueError):
        pass
    return found


def _prefix(pool_dir: Path) -> str:
    """Cgroup names of one jobctl home's pool: homes that share a parent cgroup never share a slot."""
    return f"jobctl-{zlib.crc32(os.fsencode(pool_dir)):08x}-"


class MemoryCgroup:
    """One memory cgroup, claimed from a pool for the life of a runner.

    Making a memory cgroup costs the kernel ~15 ms, more than a short job runs, so cgroups are
    reused: slot N is `jobctl-<home>-N` under this process's own cgroup, and a runner owns slot N
    while it holds an flock on `<pool_dir>/N.lock` (released by the kernel if the runner dies).
    """

    def __init__(self, path: Path, version: int, lock_fd: int):
        self.path = path
        self.version = version
        self.lock_fd = lock_fd
        self.oom_base = self._oom_count()
        self.limit: str | None = None  # the memory limit last written, in bytes

    _found: list[tuple[Path, int]] | None = None  # set by `warm`: the supervisor's, which its runners start in

    @classmethod
    def warm(cls) -> None:
        """Read this process's cgroups once, for the runners it forks from now on (one file read fewer each)."""
        cls._found = None
        cls._found = cls._parents()

    @classmethod
    def _parents(cls) -> list[tuple[Path, int]]:
        if cls._found is not None:
            return list(cls._found)
        own = _own_cgroups()
        found = []
        if "memory" in own:
            found.append((ROOT / "memory" / own["memory"].lstrip("/"), 1))
        if "" in own and (ROOT / "cgroup.controllers").exists():
            found.append((ROOT / own[""].lstrip("/"), 2))
        return found

    @classmethod
    def claim(cls, pool_dir: Path, limit_mib: int, slots: int = 4096) -> MemoryCgroup | None:
        limit = str(limit_mib * 1024 * 1024)
        try:
            pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return None
        for parent, version in cls._parents():
            if not os.access(parent, os.W_OK):
                continue
            for slot in range(slots):
                fd = os.open(pool_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                path = parent / f"{_prefix(pool_dir)}{slot}"
                try:
                    with contextlib.suppress(FileExistsError):
                        path.mkdir()
                    if (path / "cgroup.procs").read_text().strip():
                        raise OSError("slot still has processes")  # left by a runner killed with -9
                    cls._configure(path, version, limit)
                    (path / "cgroup.procs").write_text(str(os.getpid()))
                    claimed = cls(path, version, fd)
                    claimed.limit = limit
                    return claimed
                except OSError:
                    os.close(fd)
                    if not path.exists():
                        break  # cannot make cgroups under this parent at all
        return None

    @staticmethod
    def _configure(path: Path, version: int, limit: str) -> None:
        if version == 1:
            for name in ("memory.failcnt", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError):
                    (path / name).write_text("0")
            (path / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # no swap accounting: fine
                (path / "memory.memsw.limit_in_bytes").write_text(limit)
        else:
            (path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")

    @classmethod
    def available(cls) -> bool:
        """Whether a memory cgroup could be made here (tried without moving this process)."""
        for parent, version in cls._parents():
            path = parent / f"jobctl-probe-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                cls._configure(path, version, str(64 * 1024 * 1024))
                return True
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return False

    def _oom_count(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return -1

    def oom_killed(self) -> bool:
        count = self._oom_count()
        if count >= 0:
            return count > self.oom_base
        if self.version == 1:  # old kernels have no oom_kill counter: the limit was hit
            try:
                return int((self.path / "memory.failcnt").read_text()) > 0
            except (OSError, ValueError):
                pass
        return False

    def peak_mib(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text()) // (1024 * 1024)
        except (OSError, ValueError):
            return None

    def reset(self, pool_dir: Path, limit_mib: int) -> bool:
        """Set the limit for this runner's next attempt (a slot runner keeps its cgroup): False when it
        cannot be reused (another pool, or the cgroup cannot be written) and must be given back.

        A lower limit is written while this process is outside the cgroup: the kernel may have to
        reclaim to meet it, and must find nothing of ours to kill when it cannot."""
        if not self.path.name.startswith(_prefix(pool_dir)):
            return False
        limit = str(limit_mib * 1024 * 1024)
        try:
            if limit != self.limit:
                lower = self.limit is None or int(limit) < int(self.limit)
                if lower:
                    (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
                self._configure(self.path, self.version, limit)
                if lower:
                    (self.path / "cgroup.procs").write_text(str(os.getpid()))
                self.limit = limit
            elif self.version == 1:
                self._configure(self.path, self.version, limit)  # resets the v1 counters
        except OSError:
            return False
        self.oom_base = self._oom_count()
        return True

    def release(self) -> None:
        """Move this process back to the parent and give the slot back (the cgroup stays for reuse)."""
        with contextlib.suppress(OSError):
            (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def remove_pool(pool_dir: Path) -> None:
    """Delete the pool's cgroups that no runner holds (the supervisor calls this when it exits)."""
    for parent, _ in MemoryCgroup._parents():
        for path in parent.glob(f"{_prefix(pool_dir)}*"):
            slot = path.name.rsplit("-", 1)[-1]
            try:
                fd = os.open(pool_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                with contextlib.suppress(OSError):
                    path.rmdir()
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
