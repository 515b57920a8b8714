"""`jobctl describe|stats|wait`: one job in full, usage summed, waiting for jobs to end."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from jobctl.cli.commands import JobsArg, JsonOpt, OneJob, check_selectors, duration_option, err, open_service, wait_for
from jobctl.core.states import TERMINAL
from jobctl.errors import UsageError


def describe(job: OneJob, as_json: JsonOpt = False) -> None:
    """Everything about one job: spec, state, resources held, attempts, workers, timeline.

    Example: jobctl describe 12 --json | jq .events
    """
    from jobctl.cli import output

    output.describe(open_service(), job, as_json)


def stats(
    since: Annotated[
        Optional[str],
        typer.Option(help="Only jobs submitted in this last span (7d, 12h) or since a date (2026-11-30)."),
    ] = None,
    by: Annotated[str, typer.Option(help="Group by user, queue, name or label:KEY.")] = "user",
    as_json: JsonOpt = False,
) -> None:
    """Sum what jobs used, like sacct/sreport: jobs, completed, failed, CPU-hours, GPU-hours, peak memory, mean wait.

    Example: jobctl stats --since 7d --by label:team
    """
    from jobctl.cli import output

    # a shared queue: through its supervisor's socket (everyone sees everyone's usage, as with sacct -a),
    # except for root, who reads the database directly (the supervisor need not run)
    output.stats(open_service(local=os.getuid() == 0), _since_option(since), by, as_json)


def _since_option(value: Optional[str]) -> Optional[float]:
    """--since: a span back from now (7d, 12h, 30m) or a date/time (2026-11-30, 2026-11-30T08:00)."""
    import datetime as dt
    import time as time_mod

    from jobctl.core.units import parse_duration

    if value is None:
        return None
    try:
        return time_mod.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since: expected a span such as 7d or 12h, or a date such as 2026-11-30, got {value!r}"
        ) from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def wait(
    jobs: JobsArg = None,
    timeout: Annotated[Optional[str], typer.Option(help="Give up after this long (exit 2).")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Wait for every unfinished job.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Block until the jobs end. Exit 0 if COMPLETED, else the job's code (124 timeout, 137 OOM/killed).

    Example: jobctl wait 12 || echo "failed with $?"
    """
    seconds = duration_option("--timeout", timeout)
    check_selectors(jobs, all_jobs)
    svc = open_service()
    if all_jobs:
        ids = [row.id for row in svc.select([], all_jobs=True) if row.state not in TERMINAL]
        if not ids:
            err("no unfinished jobs")
            raise typer.Exit(0)
    else:
        ids = [row.id for row in svc.select(jobs or [])]
    raise typer.Exit(wait_for(svc, ids, ["--all"] if all_jobs else jobs, as_json=as_json, timeout=seconds))
