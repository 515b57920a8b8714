"""Reading and following worker logs (one file per rank and attempt).

Logs are copied as bytes, in bounded chunks: what a job wrote is what `jobctl logs` prints (`\\r` of
progress bars, invalid UTF-8 and all), and a log of any size takes at most a few chunks of memory.
With several ranks each line gets a `[rank N] ` prefix; otherwise nothing is added or changed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from jobctl.errors import UsageError

CHUNK = 1 << 16  # bytes read (and held) at a time


def log_files(job_dir: Path, attempt: int, num_nodes: int, rank: int | None) -> list[tuple[int, Path]]:
    ranks = range(num_nodes) if rank is None else [rank]
    if rank is not None and not 0 <= rank < num_nodes:
        raise UsageError(f"--rank: the job has ranks 0 to {num_nodes - 1}")
    return [(r, job_dir / str(attempt) / f"rank{r}.log") for r in ranks]


def _stdout() -> BinaryIO:
    sys.stdout.flush()  # anything already written as text goes first
    return sys.stdout.buffer


def tail_offset(handle: BinaryIO, n: int) -> int:
    """The offset where the last `n` lines of an open file start, found by reading backwards in chunks.

    A final line without a newline counts as a line; a trailing newline does not start a new one.
    """
    end = handle.seek(0, os.SEEK_END)
    if n <= 0:
        return end
    pos, wanted = end, n
    first = True
    while pos > 0:
        size = min(CHUNK, pos)
        pos -= size
        handle.seek(pos)
        block = handle.read(size)
        if first and block.endswith(b"\n"):
            block = block[:-1]  # the newline that ends the last line
        first = False
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            wanted -= 1
            if wanted == 0:
                return pos + idx + 1
    return 0


class _Prefixer:
    """Writes bytes of one rank with `[rank N] ` at the start of every line (or as they are)."""

    def __init__(self, out: BinaryIO, rank: int | None):
        self.out = out
        self.prefix = f"[rank {rank}] ".encode() if rank is not None else b""
        self.at_line_start = True

    def write(self, data: bytes) -> None:
        if not self.prefix:
            self.out.write(data)
            return
        start = 0
        while start < len(data):
            if self.at_line_start:
                self.out.write(self.prefix)
            end = data.find(b"\n", start)
            if end < 0:
                self.out.write(data[start:])
                self.at_line_start = False
                return
            self.out.write(data[start : end + 1])
            self.at_line_start = True
            start = end + 1

    def end(self) -> None:
        """Close an unfinished prefixed line, so that the next rank's output starts on its own line."""
        if self.prefix and not self.at_line_start:
            self.out.write(b"\n")
            self.at_line_start = True


def print_logs(files: list[tuple[int, Path]], tail: int | None, out: BinaryIO | None = None) -> None:
    out = out if out is not None else _stdout()
    prefixed = len(files) > 1
    for rank, path in files:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            continue
        with handle:
            if tail is not None:
                handle.seek(tail_offset(handle, tail))
            writer = _Prefixer(out, rank if prefixed else None)
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                writer.write(chunk)
            writer.end()
    out.flush()


def follow(
    files_for: Callable[[], list[tuple[int, Path]] | None],
    finished: Callable[[], bool],
    out: BinaryIO | None = None,
    from_start: bool = True,
) -> None:
    """Stream bytes as they are written, until `finished()` and every file is read to its end.

    `files_for` returns the current attempt's files (None before the job starts); when a new attempt
    starts, following moves on to it. One rank: bytes are copied as they come (a progress bar
    updates live). Several ranks: whole lines, each with its `[rank N] ` prefix, so that ranks do
    not interleave inside a line; a line longer than one chunk is cut there.
    """
    out = out if out is not None else _stdout()
    handles: dict[Path, BinaryIO] = {}
    partial: dict[Path, bytes] = {}
    writers: dict[Path, _Prefixer] = {}
    current: list[tuple[int, Path]] = []
    delay = 0.02

    def emit(rank: int, path: Path, data: bytes, prefixed: bool, last: bool = False) -> None:
        writer = writers.setdefault(path, _Prefixer(out, rank if prefixed else None))
        if not prefixed:
            writer.write(data)
            return
        text = partial.pop(path, b"") + data
        cut = text.rfind(b"\n") + 1
        if last:
            cut = len(text)
        elif cut == 0 and len(text) >= CHUNK:
            cut = len(text)  # bounded: a very long line is written in pieces
        if cut:
            writer.write(text[:cut])
            writer.end()
        if text[cut:]:
            partial[path] = text[cut:]

    try:
        while True:
            files = files_for() or []
            if files != current:
                for rank, path in current:  # a new attempt: finish the old one's last line
                    if path in partial:
                        emit(rank, path, b"", True, last=True)
                current = files
            prefixed = len(current) > 1
            progressed = False
            for rank, path in current:
                handle = handles.get(path)
                if handle is None:
                    try:
                        handle = handles[path] = open(path, "rb")
                    except FileNotFoundError:
                        continue
                    if not from_start:
                        handle.seek(0, os.SEEK_END)
                data = handle.read(CHUNK)
                if not data:
                    continue
                progressed = True
                emit(rank, path, data, prefixed)
                out.flush()
            if not progressed:
                if finished():
                    # read to the end: the job may have written its last bytes just now
                    for rank, path in current:
                        handle = handles.get(path)
                        if handle is not None:
                            read = handle.read
                            for chunk in iter(lambda: read(CHUNK), b""):
                                emit(rank, path, chunk, prefixed)
                        emit(rank, path, b"", prefixed, last=True)
                    out.flush()
                    return
                time.sleep(delay)
                delay = min(delay * 1.5, 0.2)
            else:
                delay = 0.02
    finally:
        for handle in handles.values():
            handle.close()
