"""`jobctl status`: the table of jobs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jobctl.cli.commands import JobsArg, JsonOpt, open_service
from jobctl.errors import UsageError


def status(
    jobs: JobsArg = None,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Include every finished job.")] = False,
    state: Annotated[Optional[list[str]], typer.Option(help="Only jobs in this state (repeatable).")] = None,
    label: Annotated[Optional[list[str]], typer.Option(help="Only jobs with label k=v (repeatable).")] = None,
    limit: Annotated[
        Optional[int],
        typer.Option(
            help="Show the N newest finished jobs (default 20, every one with --all); 0: unfinished jobs only.", min=0
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh the table in place until Ctrl-C.")] = False,
    queue: Annotated[Optional[str], typer.Option(help="Only jobs of this queue.")] = None,
    expand: Annotated[
        bool, typer.Option("--expand", help="Every task of an array (default: one summary row per array).")
    ] = False,
    as_json: JsonOpt = False,
    user: Annotated[Optional[str], typer.Option("--user", "-u", help="Only this user's jobs (a shared queue).")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only your own jobs.")] = False,
) -> None:
    """Show jobs in a table: unfinished ones and the 20 newest finished ones, newest first.

    Example: jobctl status --state PENDING --label team=vision
    """
    from jobctl.cli import output

    if watch and as_json:
        raise UsageError("--watch and --json do not go together (a live table, or one JSON document)")
    labels = []
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--label: expected k=v, got {item!r}")
        labels.append((key, value))
    if user is not None and mine:
        raise UsageError("--user and --mine do not go together (--mine is --user with your own name)")
    if queue is not None:
        from jobctl.app.queueing import queue_option

        queue_option(queue)
    service = open_service()
    output.status(
        service,
        jobs or [],
        all_jobs=all_jobs,
        state=state,
        labels=labels,
        limit=limit,
        watch=watch,
        as_json=as_json,
        queue=queue,
        expand=expand,
        user=service.user if mine else user,
    )
