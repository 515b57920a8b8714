"""`jobctl stop|start|retry|kill|rm|prune`: the actions on jobs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jobctl.cli.commands import (
    JobsArg,
    JsonOpt,
    KillAll,
    RetryAll,
    RmAll,
    StartAll,
    StopAll,
    bulk,
    check_selectors,
    duration_option,
    open_service,
)
from jobctl.errors import UsageError


def stop(
    jobs: JobsArg = None,
    release: Annotated[bool, typer.Option("--release", help="Terminate and requeue instead of freezing.")] = False,
    all_jobs: StopAll = False,
    as_json: JsonOpt = False,
) -> None:
    """Suspend jobs: freeze running ones (SIGSTOP), hold waiting ones.

    Example: jobctl stop 12   (then: jobctl start 12)
    """
    from jobctl.app import control

    check_selectors(jobs, all_jobs)
    svc = open_service()
    results = bulk(svc, "stop", jobs, all_jobs, lambda row: control.stop(svc, row, release), release=release)
    from jobctl.cli import output

    raise typer.Exit(output.report(results, as_json, nothing="stop"))


def start(jobs: JobsArg = None, all_jobs: StartAll = False, as_json: JsonOpt = False) -> None:
    """Undo stop: resume a frozen job, or requeue a released or held one.

    Example: jobctl start 12
    """
    from jobctl.app import control
    from jobctl.cli import output

    check_selectors(jobs, all_jobs)
    svc = open_service()
    results = bulk(svc, "start", jobs, all_jobs, lambda r: control.start(svc, r))
    raise typer.Exit(output.report(results, as_json, nothing="start"))


def retry(
    jobs: JobsArg = None,
    all_jobs: RetryAll = False,
    env: Annotated[
        Optional[list[str]],
        typer.Option(
            "--env",
            "-e",
            help="A secret to give again: KEY=VALUE, or KEY from this environment (a job's secrets are "
            "deleted when it ends).",
        ),
    ] = None,
    env_file: Annotated[
        Optional[list[str]], typer.Option("--env-file", help="Secrets to give again, from a file of KEY=VALUE lines.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a FAILED or KILLED job again, as a new attempt (earlier logs are kept).

    Example: jobctl retry 'sweep-*'
    """
    from jobctl.app import control
    from jobctl.cli import output

    check_selectors(jobs, all_jobs)
    values = None
    if env or env_file:  # secrets are deleted when a job ends: a retry may give them again
        from jobctl.app.envfiles import parse_env
        from jobctl.app.launch import LaunchOptions

        values = parse_env(LaunchOptions(env=env, env_file=env_file))[0]
    svc = open_service()
    if values is not None and getattr(svc, "remote", False):
        raise UsageError("retry --env/--env-file: not available on a shared queue; launch the job again")
    if values:
        svc.env_drop = set(values)  # a supervisor started now must not inherit them (see launch)
    results = bulk(svc, "retry", jobs, all_jobs, lambda r: control.retry(svc, r, values))
    raise typer.Exit(output.report(results, as_json, nothing="retry"))


def kill(
    jobs: JobsArg = None,
    grace: Annotated[Optional[str], typer.Option(help="Seconds between SIGTERM and SIGKILL (default 10s).")] = None,
    signal: Annotated[
        Optional[str], typer.Option("--signal", "-s", help="Send this signal first instead of SIGTERM (INT, USR1, 2).")
    ] = None,
    all_jobs: KillAll = False,
    as_json: JsonOpt = False,
) -> None:
    """Kill jobs: SIGTERM to every process of the job, SIGKILL after the grace period.

    Example: jobctl kill 12 --grace 2s
    """
    from jobctl.app import control
    from jobctl.cli import output

    seconds = 0.0 if grace is not None and grace.strip() in ("0", "0s") else duration_option("--grace", grace)
    signum = None
    if signal is not None:
        from jobctl.core.queueing import parse_signal

        try:
            signum = parse_signal(signal)
        except ValueError as exc:
            raise UsageError(f"--signal: {exc}") from None
    check_selectors(jobs, all_jobs)
    svc = open_service()
    if getattr(svc, "remote", False):
        results = svc.bulk("kill", jobs or [], all_jobs, grace=seconds, signal=signum)
    else:
        results = control.bulk(svc, jobs or [], all_jobs, "kill", lambda r: control.kill(svc, r, seconds, signum))
    raise typer.Exit(output.report(results, as_json, nothing="kill"))


def rm(jobs: JobsArg = None, all_jobs: RmAll = False, as_json: JsonOpt = False) -> None:
    """Forget finished jobs and delete their logs.

    Example: jobctl rm 12 13
    """
    from jobctl.app import control
    from jobctl.cli import output

    check_selectors(jobs, all_jobs)
    svc = open_service()
    results = bulk(svc, "rm", jobs, all_jobs, lambda r: control.remove(svc, r))
    raise typer.Exit(output.report(results, as_json, nothing="rm"))


def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age of finished jobs to forget, e.g. 7d.")] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Forget finished jobs that ended before the given age, with their logs.

    Example: jobctl prune --older-than 7d
    """
    from jobctl.app import control
    from jobctl.cli import output

    seconds = duration_option("--older-than", older_than)
    assert seconds is not None  # the option has a default
    svc = open_service()
    results = svc.prune(seconds) if getattr(svc, "remote", False) else control.prune(svc, seconds)
    nothing = f"nothing to prune: no finished job ended more than {older_than} ago"
    raise typer.Exit(output.report(results, as_json, nothing=nothing))
