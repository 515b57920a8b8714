"""Small state files written atomically and read back with suspicion (runner.json, result.json,
kill.json, plan.json, secrets files): what the runner, the supervisor and the CLI share on disk."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE_LIMIT = 1 << 20  # bytes: a state file the runner writes is far smaller; a bigger one is garbage
# New files: never through a symlink someone left in the way, never an existing file.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class BadStateFile(Exception):
    """A state file that is not what the runner writes (a symlink, too big, not a JSON object, wrong types)."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file atomically (readers see the old file or the new, never half).

    The temporary file has a random name in the same folder, is created 0600 with O_EXCL and
    O_NOFOLLOW (as mkstemp does, without its cost: runners write four of these per job), and is
    renamed over the target: a symlink at either name is replaced, never followed.
    """
    text = json.dumps(data).encode()
    tmp = os.path.join(path.parent, f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, NEW_FILE, 0o600)
    try:
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private(path: Path, text: str) -> None:
    """Create a new 0600 file (refused if anything, a symlink included, is already there)."""
    with os.fdopen(os.open(path, NEW_FILE, 0o600), "w") as handle:
        handle.write(text)


def read_json(path: Path, limit: int = STATE_FILE_LIMIT) -> dict[str, Any] | None:
    """A JSON object from a state file; None when the file does not exist (yet).

    Raises BadStateFile for anything the runner would not have written: a symlink, a FIFO, more
    than `limit` bytes, bytes that are not JSON, JSON that is not an object.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadStateFile(f"{path.name}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadStateFile(f"{path.name}: not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BadStateFile(f"{path.name}: larger than {limit} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise BadStateFile(f"{path.name}: not valid JSON") from None
    if not isinstance(value, dict):
        raise BadStateFile(f"{path.name}: not a JSON object")
    return value
