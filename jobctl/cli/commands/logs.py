"""`jobctl logs`: a job's output."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jobctl.cli.commands import OneJob, open_service


def logs(
    job: OneJob,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as the job writes.")] = False,
    rank: Annotated[Optional[int], typer.Option(help="Only this worker.", min=0)] = None,
    attempt: Annotated[Optional[int], typer.Option(help="An earlier attempt (default: the latest).", min=1)] = None,
    tail: Annotated[Optional[int], typer.Option(help="Only the last N lines.", min=0)] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Slurm's own output of the job (slurm.out).")] = False,
) -> None:
    """Print a job's output (stdout and stderr of each worker).

    Example: jobctl logs 12 -f --rank 0
    """
    from jobctl.cli import output

    svc = open_service()
    if getattr(svc, "remote", False):
        svc.readable_job(job)  # the owner's (or an admin's): else `job 7 belongs to bob`, exit 1
    output.logs(svc, job, follow=follow, rank=rank, attempt=attempt, tail=tail, batch=batch)
