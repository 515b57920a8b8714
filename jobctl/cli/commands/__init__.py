"""The commands of `jobctl`, one module per verb or group of verbs, and what they share.

`jobctl/cli/main.py` names each command and the module that holds it, and imports only the
module of the command that was typed (every one for help, typos and completion). What several
commands use lives here, in the package's `__init__`, which every command imports anyway: the
common arguments and options, opening the home, one line on stderr, the bulk actions' plumbing,
and waiting for jobs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer

from jobctl.core.states import TERMINAL
from jobctl.errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (see README: JSON output).")]


def _complete_jobs(incomplete: str) -> list[str]:
    from jobctl.cli.completions import complete_jobs

    return complete_jobs(incomplete)


JobsArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Job IDs, names or globs such as 'sweep-*'.", show_default=False, autocompletion=_complete_jobs
    ),
]
OneJob = Annotated[str, typer.Argument(help="A job ID or name.", autocompletion=_complete_jobs)]


# `--all` of each bulk action, saying which jobs it means there
def _all_help(what: str) -> Any:
    return typer.Option("--all", help=f"Every {what} (jobs in other states are skipped).")


StopAll = Annotated[bool, _all_help("running or waiting job")]
StartAll = Annotated[bool, _all_help("SUSPENDED job")]
RetryAll = Annotated[bool, _all_help("FAILED or KILLED job")]
KillAll = Annotated[bool, _all_help("unfinished job")]
RmAll = Annotated[bool, _all_help("finished job")]


def home_paths():
    from jobctl.home import paths

    return paths.resolve()


def open_service(local: bool = False):
    paths = home_paths()
    if paths.shared and not local:  # a shared queue (SPEC section 12): ask root's supervisor
        from jobctl.app.remote import RemoteService

        return RemoteService(paths)
    from jobctl.app.session import Service

    return Service(paths)


def bulk(svc, verb: str, jobs: Optional[list[str]], all_jobs: bool, action, **options):
    """One action on every job named: here, or by the shared queue's supervisor for this caller."""
    if getattr(svc, "remote", False):
        return svc.bulk(verb, jobs or [], all_jobs, **options)
    from jobctl.app import control

    return control.bulk(svc, jobs or [], all_jobs, verb, action)


def err(text: str, style: str = "") -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, style=style or None, markup=False)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def check_selectors(jobs: Optional[list[str]], all_jobs: bool) -> None:
    if jobs and all_jobs:
        raise UsageError("give job selectors or --all, not both")
    if not jobs and not all_jobs:
        raise UsageError("name at least one job (an ID, a name or a glob such as 'sweep-*'), or use --all")


def duration_option(option: str, value: Optional[str]) -> Optional[float]:
    from jobctl.core.units import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def wait_for(service, ids: list[int], again: Optional[list[str]] = None, **kw) -> int:
    """Wait for jobs (`launch --wait`, `wait`); Ctrl-C leaves them running and says how to wait again
    or stop them (exit 130).

    `again`: the selectors to repeat in that hint (what `wait` was given; None: the job IDs)."""
    from jobctl.cli import output

    try:
        return output.wait_and_report(service, ids, **kw)
    except KeyboardInterrupt:
        if os.environ.get("JOBCTL_DEBUG") not in (None, "", "0"):
            raise
        live = list(ids)
        try:
            done = {r.id for r in service.select([str(i) for i in ids], missing_ok=True) if r.state in TERMINAL}
            live = [i for i in ids if i not in done] or live
        except Exception:  # the database is busy or gone: name every job
            pass
        err(interrupted_text(live, again))
        return 130


def interrupted_text(live: list[int], again: Optional[list[str]] = None) -> str:
    """One line after Ctrl-C: `job 12 keeps running; wait again: jobctl wait 12; stop: jobctl kill 12`.
    Many jobs of one launch (an array) are named `$(seq FIRST LAST)`, not one by one."""
    import shlex

    if again:
        sel = shlex.join(again)
    elif len(live) > 3 and live == list(range(live[0], live[0] + len(live))):
        sel = f"$(seq {live[0]} {live[-1]})"
    else:
        sel = " ".join(map(str, live))
    who = f"job {live[0]} keeps" if len(live) == 1 else f"{len(live)} jobs keep"
    return f"{who} running; wait again: jobctl wait {sel}; stop: jobctl kill {sel}"
