"""Reading and following worker logs (one file per rank and attempt)."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable, TextIO

from jobctl.errors import UsageError


def log_files(job_dir: Path, attempt: int, num_nodes: int, rank: int | None) -> list[tuple[int, Path]]:
    ranks = range(num_nodes) if rank is None else [rank]
    if rank is not None and not 0 <= rank < num_nodes:
        raise UsageError(f"--rank: the job has ranks 0 to {num_nodes - 1}")
    return [(r, job_dir / str(attempt) / f"rank{r}.log") for r in ranks]


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "r", errors="replace") as handle:
            return list(deque(handle, maxlen=n))
    except FileNotFoundError:
        return []


def print_logs(files: list[tuple[int, Path]], tail: int | None, out: TextIO = sys.stdout) -> None:
    prefix = len(files) > 1
    for rank, path in files:
        if tail is not None:
            lines = tail_lines(path, tail)
        else:
            try:
                with open(path, "r", errors="replace") as handle:
                    if not prefix:
                        for chunk in iter(lambda: handle.read(1 << 16), ""):
                            out.write(chunk)
                        continue
                    lines = handle.readlines()
            except FileNotFoundError:
                continue
        for line in lines:
            out.write(f"[rank {rank}] {line}" if prefix else line)
    out.flush()


def follow(files_for: Callable[[], list[tuple[int, Path]] | None], finished: Callable[[], bool],
           out: TextIO = sys.stdout, from_start: bool = True) -> None:
    """Stream lines as they are written, until `finished()` and every file is read to its end.

    `files_for` returns the current attempt's files (None before the job starts); when a new attempt
    starts, following moves on to it.
    """
    handles: dict[Path, TextIO] = {}
    partial: dict[Path, str] = {}
    current: list[tuple[int, Path]] = []
    delay = 0.02
    try:
        while True:
            files = files_for() or []
            if files != current:
                current = files
            prefix = len(current) > 1
            progressed = False
            for rank, path in current:
                handle = handles.get(path)
                if handle is None:
                    try:
                        handle = handles[path] = open(path, "r", errors="replace")
                    except FileNotFoundError:
                        continue
                    if not from_start:
                        handle.seek(0, os.SEEK_END)
                data = handle.read()
                if not data:
                    continue
                progressed = True
                text = partial.pop(path, "") + data
                lines = text.split("\n")
                partial[path] = lines.pop()
                for line in lines:
                    out.write(f"[rank {rank}] {line}\n" if prefix else f"{line}\n")
                out.flush()
            if not progressed:
                if finished():
                    # one last read: the job may have written its last lines just now
                    for rank, path in current:
                        handle = handles.get(path)
                        rest = (handle.read() if handle else "") + partial.pop(path, "")
                        if rest:
                            for line in rest.rstrip("\n").split("\n"):
                                out.write(f"[rank {rank}] {line}\n" if prefix else f"{line}\n")
                    out.flush()
                    return
                time.sleep(delay)
                delay = min(delay * 1.5, 0.2)
            else:
                delay = 0.02
    finally:
        for handle in handles.values():
            handle.close()
