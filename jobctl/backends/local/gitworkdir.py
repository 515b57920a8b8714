"""A job's `workdir: {url, ref}` (SkyPilot's git workdir): cloned at the ref for each attempt.

The runner calls `clone` before it starts the workers; a failure ends the attempt as
FAILED (start error) with a message naming the URL and the ref. The git CLI runs with an argument
list (no shell), no terminal prompts, and a time limit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CLONE_TIMEOUT = 600.0  # seconds for the clone and the checkout together


class CloneError(RuntimeError):
    pass


def clone(url: str, ref: str | None, dest: Path, timeout: float = CLONE_TIMEOUT) -> Path:
    """Clone `url` into `dest` (which must not exist yet) and check out `ref` (default branch if None)."""
    what = f"git clone of {url}" + (f" at {ref}" if ref else "")
    env = dict(
        os.environ, GIT_TERMINAL_PROMPT="0", GIT_SSH_COMMAND=os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    )
    steps = [["git", "clone", "--quiet", "--", url, str(dest)]]
    if ref:
        steps.append(["git", "-C", str(dest), "checkout", "--quiet", ref, "--"])
    for argv in steps:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                cwd=dest.parent,  # never the caller's folder, which may be gone
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise CloneError(f"{what} failed: git is not installed") from None
        except subprocess.TimeoutExpired:
            raise CloneError(f"{what} failed: it took longer than {timeout:g}s") from None
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
            detail = lines[-1] if lines else f"exit code {done.returncode}"
            raise CloneError(f"{what} failed: {detail}")
    return dest
