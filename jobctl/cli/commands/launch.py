"""`jobctl launch`: record job files, or a command given after `--`, and queue them."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from jobctl.cli.commands import JsonOpt, err, open_service, print_json, wait_for
from jobctl.errors import UsageError


def launch(
    files: Annotated[
        Optional[list[str]],
        typer.Argument(help="Job files (YAML), or after -- a command to run: launch [OPTIONS] -- CMD [ARG...]."),
    ] = None,
    name: Annotated[
        Optional[str],
        typer.Option(help="Job name (default: the file's `name`, else its stem); on a pipeline, a prefix: NAME-TASK."),
    ] = None,
    env: Annotated[
        Optional[list[str]],
        typer.Option(
            "--env", "-e", help="KEY=VALUE, or KEY to take it from this environment (shown as ***). Repeatable."
        ),
    ] = None,
    env_file: Annotated[
        Optional[list[str]],
        typer.Option(help="A file of KEY=VALUE lines (values shown as ***). Repeatable; a later file wins."),
    ] = None,
    cpus: Annotated[Optional[str], typer.Option(help='CPUs per node, e.g. 2 or "2+".')] = None,
    memory: Annotated[Optional[str], typer.Option(help="Memory per node, e.g. 4GiB or 512MiB.")] = None,
    gpus: Annotated[Optional[str], typer.Option(help="Accelerators per node, e.g. H100:2.")] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="Number of workers (nodes).", min=1)] = None,
    priority: Annotated[
        Optional[int], typer.Option(help="Higher runs first and may preempt lower.", min=-1_000_000, max=1_000_000)
    ] = None,
    array: Annotated[
        Optional[str],
        typer.Option(help="N copies (0..N-1) or a range A-B, with JOBCTL_ARRAY_INDEX; A-B%K runs at most K at once."),
    ] = None,
    queue: Annotated[Optional[str], typer.Option(help="The named queue (default: `default`).")] = None,
    hold: Annotated[bool, typer.Option("--hold", help="Record it SUSPENDED (held) until `jobctl start`.")] = False,
    at: Annotated[Optional[str], typer.Option(help='Not before this time: "10m", "2h", "22:00" or ISO 8601.')] = None,
    backend: Annotated[Optional[str], typer.Option(help="local or slurm (default: config `backend`).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; record nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Block until done; exit with the job's code.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the logs while waiting.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate job files, record them and queue them. Prints the new job IDs, one a line.

    Example: id=$(jobctl launch job.yaml --env TOKEN) && jobctl wait "$id"
    """
    from jobctl.app import launch as launch_mod
    from jobctl.cli import output

    files, command = _split_command(files or [])
    service = open_service()
    options = launch_mod.LaunchOptions(
        command=command,
        queue=queue,
        hold=hold,
        at=at,
        name=name,
        env=env,
        env_file=env_file,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        num_nodes=num_nodes,
        array=array,
        backend=backend,
        priority=priority,
        dry_run=dry_run,
    )
    if getattr(service, "remote", False):
        ids, plan = service.launch(files, options)
    else:
        ids, plan = launch_mod.launch(service, files, options)
    for warning in plan.warnings:
        err(f"warning: {warning}", "yellow")
    if dry_run:
        output.print_plan(plan, as_json)
        return
    if as_json and not (wait or follow):  # a list of job objects, as `launch --wait --json` prints
        rows = service.select([str(i) for i in ids])
        from jobctl.cli.views import job_json

        print_json([job_json(r) for r in rows])
    elif not as_json:
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        sys.stdout.flush()
        first = plan.jobs[0]
        more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        name = service.select([str(ids[0])])[0].name if first.get("array") else first["name"]  # NAME-INDEX
        err(f"launched job {ids[0]} ({name}){more} on {first['backend']}: {first['resources']}")
    if wait or follow:
        raise typer.Exit(wait_for(service, ids, follow=follow, as_json=as_json))


def _split_command(args: list[str]) -> tuple[list[str], Optional[list[str]]]:
    """Job files, or the ad-hoc command given after `--` (click drops the `--` itself: find it in argv)."""
    argv = sys.argv[1:]
    if "--" not in argv:
        if not args:
            raise UsageError("launch: give job files, or a command after -- (jobctl launch -- python train.py)")
        return args, None
    tail = argv[argv.index("--") + 1 :]
    if not tail:
        raise UsageError("launch --: give a command after -- (e.g. jobctl launch -- python train.py)")
    if len(args) != len(tail):
        raise UsageError("launch: give job files or a command after --, not both")
    return [], tail
