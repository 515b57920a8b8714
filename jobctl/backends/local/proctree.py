"""The process tree under a runner, read straight from /proc (no scan of every process).

`/proc/<pid>/task/<tid>/children` lists a thread's children (Linux 3.5+, CONFIG_PROC_CHILDREN, on in
every distribution kernel); walking it from a runner visits only that job's processes, where a
`psutil.process_iter` visits every process of the machine: on a busy machine that scan, four times
a second, was half of the supervisor's CPU while many short jobs ran.
"""

from __future__ import annotations

import os

PAGE = os.sysconf("SC_PAGE_SIZE")


def available() -> bool:
    """Whether this kernel has the children files (else callers scan every process instead)."""
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


def children(pid: int) -> list[int]:
    """The PIDs of a process's children, over all its threads; [] when it is gone."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(p) for p in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def rss(pid: int) -> int:
    """A process's resident memory in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss(root: int) -> int:
    """The summed resident memory of a process's descendants (not of the process itself), in bytes."""
    used, stack, seen = 0, children(root), {root}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        used += rss(pid)
        stack.extend(children(pid))
    return used
