"""A memory cgroup per attempt, where the machine offers one (cgroup v1 or v2, writable).

The runner moves itself into a fresh child of its own cgroup before it starts the workers, so
everything the job starts is charged there and the kernel enforces the limit exactly (no sampling
gap). When no cgroup can be made (no controller, no permission), `MemoryCgroup.create` returns
None and the supervisor's sampling of the process tree's RSS remains the only guard.
"""

from __future__ import annotations

import contextlib
import os
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


class MemoryCgroup:
    def __init__(self, path: Path, version: int):
        self.path = path
        self.version = version

    @classmethod
    def create(cls, name: str, limit_mib: int) -> MemoryCgroup | None:
        own = _own_cgroups()
        limit = str(limit_mib * 1024 * 1024)
        candidates = []
        if "memory" in own:
            candidates.append((ROOT / "memory" / own["memory"].lstrip("/"), 1))
        if "" in own and (ROOT / "cgroup.controllers").exists():
            candidates.append((ROOT / own[""].lstrip("/"), 2))
        for parent, version in candidates:
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                if version == 1:
                    (path / "memory.limit_in_bytes").write_text(limit)
                    with contextlib.suppress(OSError):  # no swap accounting: fine
                        (path / "memory.memsw.limit_in_bytes").write_text(limit)
                else:
                    (path / "memory.max").write_text(limit)
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                (path / "cgroup.procs").write_text(str(os.getpid()))
                return cls(path, version)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    @classmethod
    def available(cls) -> bool:
        """Whether a memory cgroup could be made here (tried without moving this process)."""
        own = _own_cgroups()
        parents = []
        if "memory" in own:
            parents.append((ROOT / "memory" / own["memory"].lstrip("/"), "memory.limit_in_bytes"))
        if "" in own and (ROOT / "cgroup.controllers").exists():
            parents.append((ROOT / own[""].lstrip("/"), "memory.max"))
        for parent, knob in parents:
            path = parent / f"jobctl-probe-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / knob).write_text(str(64 * 1024 * 1024))
                return True
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return False

    def oom_killed(self) -> bool:
        try:
            name = "memory.oom_control" if self.version == 1 else "memory.events"
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
            if self.version == 1:  # old kernels have no oom_kill counter: the limit was hit
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

    def remove(self) -> None:
        """Move this process back to the parent and delete the (now empty) cgroup."""
        with contextlib.suppress(OSError):
            (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):
            self.path.rmdir()
