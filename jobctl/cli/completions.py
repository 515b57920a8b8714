"""Shell completions for bash, zsh and fish, generated from the app itself.

The scripts call back into `jobctl` (click's completion protocol), so they complete every command
and option of the installed version, and job IDs and names from the local database.
Regenerate the files in `completions/` with `python -m jobctl.completions`; a test fails when
they are out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHELLS = {"bash": "jobctl.bash", "zsh": "_jobctl", "fish": "jobctl.fish"}
COMPLETE_VAR = "_JOBCTL_COMPLETE"


def complete_jobs(incomplete: str) -> list[str]:
    """Job IDs and names from the local database, newest first (never fails: completion is best effort)."""
    from jobctl.errors import UnsafePath
    from jobctl.home import paths

    try:
        db = paths.resolve().db
    except UnsafePath:
        return []  # a home someone else could change: nothing is read from it (the command itself says why)
    if not db.exists():
        return []
    from jobctl.store.completion import recent_jobs

    rows = recent_jobs(db, 500)
    seen: list[str] = []
    for job_id, name in rows:
        for word in (str(job_id), name):
            if word.startswith(incomplete) and word not in seen:
                seen.append(word)
    return seen


def generate(shell: str) -> str:
    # Typer's own script template: it speaks the protocol Typer's app answers (complete_bash, …).
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="jobctl", complete_var=COMPLETE_VAR, shell=shell)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "completions"
    out.mkdir(parents=True, exist_ok=True)
    for shell, filename in SHELLS.items():
        (out / filename).write_text(generate(shell))
        print(out / filename)


if __name__ == "__main__":
    main()
