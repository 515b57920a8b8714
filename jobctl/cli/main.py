"""The command line: thin Typer commands over the service layer.

One chokepoint (`main`) maps every JobctlError to a red one-line message on stderr and its exit
code; `JOBCTL_DEBUG=1` shows the traceback instead. Data goes to stdout, everything else to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer

from jobctl import __version__
from jobctl.core.states import TERMINAL
from jobctl.errors import JobctlError, UsageError

app = typer.Typer(
    name="jobctl",
    help="A batch job manager: launch job.yaml files, watch them in a table, control them.\n\n"
    "Example: jobctl launch examples/hello.yaml --wait && jobctl status",
    no_args_is_help=False,  # plain `jobctl`: see _root; a group without a command is a usage error
    invoke_without_command=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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


def _paths():
    from jobctl.home import paths

    return paths.resolve()


def _service(local: bool = False):
    paths = _paths()
    if paths.shared and not local:  # a shared queue (SPEC section 12): ask root's supervisor
        from jobctl.app.remote import RemoteService

        return RemoteService(paths)
    from jobctl.app.session import Service

    return Service(paths)


def _bulk(svc, verb: str, jobs: Optional[list[str]], all_jobs: bool, action, **options):
    """One action on every job named: here, or by the shared queue's supervisor for this caller."""
    if getattr(svc, "remote", False):
        return svc.bulk(verb, jobs or [], all_jobs, **options)
    from jobctl.app import control

    return control.bulk(svc, jobs or [], all_jobs, verb, action)


def _err(text: str, style: str = "") -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, style=style or None, markup=False)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        print(f"jobctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """jobctl: launch job files, see them in a table, stop/start/retry/kill them."""
    if ctx.invoked_subcommand is None:  # plain `jobctl`: the help, on stderr, and exit 2 (no command given)
        sys.stderr.write(ctx.get_help() + "\n")
        raise typer.Exit(2)


# -- launch ------------------------------------------------------------------------------------
@app.command()
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
    service = _service()
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
        _err(f"warning: {warning}", "yellow")
    if dry_run:
        output.print_plan(plan, as_json)
        return
    if as_json and not (wait or follow):  # a list of job objects, as `launch --wait --json` prints
        rows = service.select([str(i) for i in ids])
        from jobctl.cli.views import job_json

        _print_json([job_json(r) for r in rows])
    elif not as_json:
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        sys.stdout.flush()
        first = plan.jobs[0]
        more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        name = service.select([str(ids[0])])[0].name if first.get("array") else first["name"]  # NAME-INDEX
        _err(f"launched job {ids[0]} ({name}){more} on {first['backend']}: {first['resources']}")
    if wait or follow:
        raise typer.Exit(_wait(service, ids, follow=follow, as_json=as_json))


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


def _wait(service, ids: list[int], again: Optional[list[str]] = None, **kw) -> int:
    """Wait for jobs; Ctrl-C leaves them running and says how to wait again or stop them (exit 130).

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
        _err(interrupted_text(live, again))
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


# -- status --------------------------------------------------------------------------------------
@app.command()
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
    service = _service()
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


# -- control -------------------------------------------------------------------------------------
@app.command()
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

    _check_selectors(jobs, all_jobs)
    svc = _service()
    results = _bulk(svc, "stop", jobs, all_jobs, lambda row: control.stop(svc, row, release), release=release)
    from jobctl.cli import output

    raise typer.Exit(output.report(results, as_json, nothing="stop"))


@app.command()
def start(jobs: JobsArg = None, all_jobs: StartAll = False, as_json: JsonOpt = False) -> None:
    """Undo stop: resume a frozen job, or requeue a released or held one.

    Example: jobctl start 12
    """
    from jobctl.app import control
    from jobctl.cli import output

    _check_selectors(jobs, all_jobs)
    svc = _service()
    results = _bulk(svc, "start", jobs, all_jobs, lambda r: control.start(svc, r))
    raise typer.Exit(output.report(results, as_json, nothing="start"))


@app.command()
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

    _check_selectors(jobs, all_jobs)
    values = None
    if env or env_file:  # secrets are deleted when a job ends: a retry may give them again
        from jobctl.app.envfiles import parse_env
        from jobctl.app.launch import LaunchOptions

        values = parse_env(LaunchOptions(env=env, env_file=env_file))[0]
    svc = _service()
    if values is not None and getattr(svc, "remote", False):
        raise UsageError("retry --env/--env-file: not available on a shared queue; launch the job again")
    if values:
        svc.env_drop = set(values)  # a supervisor started now must not inherit them (see launch)
    results = _bulk(svc, "retry", jobs, all_jobs, lambda r: control.retry(svc, r, values))
    raise typer.Exit(output.report(results, as_json, nothing="retry"))


@app.command()
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

    seconds = 0.0 if grace is not None and grace.strip() in ("0", "0s") else _duration_option("--grace", grace)
    signum = None
    if signal is not None:
        from jobctl.core.queueing import parse_signal

        try:
            signum = parse_signal(signal)
        except ValueError as exc:
            raise UsageError(f"--signal: {exc}") from None
    _check_selectors(jobs, all_jobs)
    svc = _service()
    if getattr(svc, "remote", False):
        results = svc.bulk("kill", jobs or [], all_jobs, grace=seconds, signal=signum)
    else:
        results = control.bulk(svc, jobs or [], all_jobs, "kill", lambda r: control.kill(svc, r, seconds, signum))
    raise typer.Exit(output.report(results, as_json, nothing="kill"))


@app.command()
def rm(jobs: JobsArg = None, all_jobs: RmAll = False, as_json: JsonOpt = False) -> None:
    """Forget finished jobs and delete their logs.

    Example: jobctl rm 12 13
    """
    from jobctl.app import control
    from jobctl.cli import output

    _check_selectors(jobs, all_jobs)
    svc = _service()
    results = _bulk(svc, "rm", jobs, all_jobs, lambda r: control.remove(svc, r))
    raise typer.Exit(output.report(results, as_json, nothing="rm"))


@app.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age of finished jobs to forget, e.g. 7d.")] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Forget finished jobs that ended before the given age, with their logs.

    Example: jobctl prune --older-than 7d
    """
    from jobctl.app import control
    from jobctl.cli import output

    seconds = _duration_option("--older-than", older_than)
    assert seconds is not None  # the option has a default
    svc = _service()
    results = svc.prune(seconds) if getattr(svc, "remote", False) else control.prune(svc, seconds)
    nothing = f"nothing to prune: no finished job ended more than {older_than} ago"
    raise typer.Exit(output.report(results, as_json, nothing=nothing))


# -- reading -------------------------------------------------------------------------------------
@app.command()
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

    svc = _service()
    if getattr(svc, "remote", False):
        svc.readable_job(job)  # the owner's (or an admin's): else `job 7 belongs to bob`, exit 1
    output.logs(svc, job, follow=follow, rank=rank, attempt=attempt, tail=tail, batch=batch)


@app.command()
def describe(job: OneJob, as_json: JsonOpt = False) -> None:
    """Everything about one job: spec, state, resources held, attempts, workers, timeline.

    Example: jobctl describe 12 --json | jq .events
    """
    from jobctl.cli import output

    output.describe(_service(), job, as_json)


@app.command()
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
    output.stats(_service(local=os.getuid() == 0), _since_option(since), by, as_json)


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


@app.command()
def wait(
    jobs: JobsArg = None,
    timeout: Annotated[Optional[str], typer.Option(help="Give up after this long (exit 2).")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Wait for every unfinished job.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Block until the jobs end. Exit 0 if COMPLETED, else the job's code (124 timeout, 137 OOM/killed).

    Example: jobctl wait 12 || echo "failed with $?"
    """
    seconds = _duration_option("--timeout", timeout)
    _check_selectors(jobs, all_jobs)
    svc = _service()
    if all_jobs:
        ids = [row.id for row in svc.select([], all_jobs=True) if row.state not in TERMINAL]
        if not ids:
            _err("no unfinished jobs")
            raise typer.Exit(0)
    else:
        ids = [row.id for row in svc.select(jobs or [])]
    raise typer.Exit(_wait(svc, ids, ["--all"] if all_jobs else jobs, as_json=as_json, timeout=seconds))


def _duration_option(option: str, value: Optional[str]) -> Optional[float]:
    from jobctl.core.units import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _check_selectors(jobs: Optional[list[str]], all_jobs: bool) -> None:
    if jobs and all_jobs:
        raise UsageError("give job selectors or --all, not both")
    if not jobs and not all_jobs:
        raise UsageError("name at least one job (an ID, a name or a glob such as 'sweep-*'), or use --all")


# -- config and supervisor -----------------------------------------------------------------------
config_app = typer.Typer(help="Settings in config.toml. Example: jobctl config set capacity.cpus 8")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(as_json: JsonOpt = False) -> None:
    """Show every setting with its value.

    Example: jobctl config show --json
    """
    from jobctl.cli import output

    output.config_show(_service().config, as_json)


@config_app.command("get")
def config_get(key: Annotated[str, typer.Argument(help="A dotted key such as defaults.cpus.")]) -> None:
    """Print one setting.

    Example: jobctl config get defaults.memory
    """
    value = _service().config.get(key)
    print(json.dumps(value) if not isinstance(value, str) else value)


@config_app.command("set", context_settings={"ignore_unknown_options": True})  # `set capacity.cpus -2`: a value
def config_set(
    key: Annotated[str, typer.Argument(help="A dotted key such as capacity.accelerators.")],
    value: Annotated[str, typer.Argument(help="A TOML value, e.g. 8, '\"32GiB\"' or '{H100 = 4}'.")],
) -> None:
    """Change one setting.

    Example: jobctl config set capacity.accelerators '{H100 = 4}'
    """
    _settings_owner()
    service = _service(local=True)
    stored = service.config.set(key, value)
    service.wake_supervisor(start=False)  # a running supervisor picks the change up at once
    _err(f"{key} = {json.dumps(stored)}")


@config_app.command("unset")
def config_unset(key: Annotated[str, typer.Argument(help="A dotted key such as defaults.cpus.")]) -> None:
    """Remove a setting from config.toml, so that it takes its default.

    Example: jobctl config unset capacity.cpus
    """
    _settings_owner()
    service = _service(local=True)
    was_set = service.config.unset(key)
    if was_set:
        service.wake_supervisor(start=False)  # a running supervisor picks the change up at once
    default = service.config.get(key)
    from jobctl.home.config import unset_text

    shown = unset_text(key) if default is None else json.dumps(default)
    _err(f"{key} = {shown} (default)" + ("" if was_set else "; it was not set"))


def _settings_owner() -> None:
    if _paths().shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the settings of a shared queue are root's; ask its administrator to change them")


@config_app.command("path")
def config_path() -> None:
    """Print where config.toml lives.

    Example: $EDITOR "$(jobctl config path)"
    """
    print(_paths().config_file)


supervisor_app = typer.Typer(help="The local supervisor that runs jobs. It starts on demand.")
app.add_typer(supervisor_app, name="supervisor")


SharedOpt = Annotated[
    bool,
    typer.Option(
        "--shared", help="A queue shared by the users of this machine (root only; JOBCTL_HOME such as /var/lib/jobctl)."
    ),
]


@supervisor_app.command("run")
def supervisor_run(shared: SharedOpt = False) -> None:
    """Run the supervisor in the foreground (for systemd).

    Example: jobctl supervisor run
    """
    paths = _paths()
    if shared or paths.shared:
        from jobctl.supervisor.shared import SharedSupervisor, setup_home

        raise typer.Exit(SharedSupervisor(setup_home(paths) if shared else paths).run())
    from jobctl.supervisor.daemon import Supervisor

    raise typer.Exit(Supervisor(paths).run())


@supervisor_app.command("start")
def supervisor_start(shared: SharedOpt = False) -> None:
    """Start the supervisor in the background if it is not running.

    Example: jobctl supervisor start
    """
    from jobctl.cli import output

    if _paths().shared and not shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the supervisor of a shared queue is root's; ask its administrator to start it")
    if shared:
        from jobctl.supervisor.shared import running_shared, setup_home

        setup_home(_paths())
        if running_shared(_paths()) is False:  # this user's own supervisor runs here: the shared one takes over
            output.supervisor_stop(_service(local=True))
    output.supervisor_start(_service(local=True))


@supervisor_app.command("stop")
def supervisor_stop() -> None:
    """Stop the supervisor; running jobs keep running.

    Example: jobctl supervisor stop
    """
    from jobctl.cli import output

    if _paths().shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the supervisor of a shared queue is root's; only root stops it")
    raise typer.Exit(output.supervisor_stop(_service(local=True)))


@supervisor_app.command("status")
def supervisor_status(as_json: JsonOpt = False) -> None:
    """Show the supervisor's pid, uptime and capacity.

    Example: jobctl supervisor status --json
    """
    from jobctl.cli import output

    svc = _service()
    if getattr(svc, "remote", False):
        raise typer.Exit(output.supervisor_status(svc, as_json, svc.call("supervisor")))
    raise typer.Exit(output.supervisor_status(svc, as_json))


# -- dashboard -----------------------------------------------------------------------------------
@app.command()
def dashboard(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback is reachable from the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).", min=0, max=65535)] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
    allow_control: Annotated[
        bool, typer.Option("--allow-control", help="Add stop/start/kill/retry buttons (read-only without it).")
    ] = False,
) -> None:
    """Serve a web page of jobs, a timeline and usage until Ctrl-C; prints its URL with an access token.

    Example: jobctl dashboard --port 8765 --open
    """
    from jobctl.app.remote import refuse_shared
    from jobctl.cli.dashboard.server import serve  # imported only here: no cost for other commands

    refuse_shared(_paths(), "dashboard")  # root's only on a shared queue; its POSTs go through the socket
    raise typer.Exit(serve(_paths(), host, port, open_browser=open_browser, allow_control=allow_control))


from jobctl.cli.queueing import register as _register_queueing  # noqa: E402 - queue, update (SPEC section 9)

_register_queueing(app)


def _click_exceptions() -> tuple[Any, Any]:  # click's classes, found at run time (never imported here)
    """(ClickException, UsageError) of the click that Typer runs on: the `click` package for older
    Typer releases, the copy Typer vendors (`typer._click`) for newer ones. Found through
    `typer.BadParameter`, which both export, so `click` itself is never imported."""
    module = sys.modules[typer.BadParameter.__module__]
    return module.ClickException, module.UsageError


def _command_path_from_argv() -> str:
    """`jobctl CMD [SUB]` as typed, for a parser error that carries no context (an option given
    last without its value): the words of sys.argv that name commands, up to the first other one."""
    command = typer.main.get_command(app)
    words = ["jobctl"]
    for word in sys.argv[1:]:
        sub = getattr(command, "commands", {}).get(word) if not word.startswith("-") else None
        if sub is None:
            break
        words.append(word)
        command = sub
    return " ".join(words)


def _usage_line(exc) -> str:
    """One line for a click usage error: what is wrong, and which --help to read."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else _command_path_from_argv()
    command = getattr(ctx, "command", None) if ctx is not None else None
    if message == "Missing command" and command is not None and hasattr(command, "list_commands"):
        message = f"missing command (one of: {', '.join(command.list_commands(ctx))})"
    elif message.startswith("No such command") and command is not None and hasattr(command, "list_commands"):
        import difflib
        import re

        typed = re.search(r"'(.*)'", message)
        names = command.list_commands(ctx)
        close = difflib.get_close_matches(typed.group(1), names, n=1) if typed else []
        if "did you mean" not in message.lower():
            message += f' (did you mean "{close[0]}"?)' if close else f" (commands: {', '.join(names)})"
    return f"error: {message} (see '{path} --help')"


def _app_for(argv: list[str]) -> typer.Typer:
    """The app with only the command that `argv` names, when it names one exactly.

    Typer turns every registered command into a click command on each run, reading each one's
    signature: with some 30 commands that is a tenth of what `jobctl status` costs. The root takes
    only flags, so the first word not starting with "-" is the command. Anything else (no command, a
    typo, shell completion) gets the whole app, so help lists and "did you mean" stay complete."""
    word = next((w for w in argv if not w.startswith("-")), None)
    if word is None or any(key.endswith("_COMPLETE") for key in os.environ if key.startswith("_")):
        return app
    commands = [c for c in app.registered_commands if _command_name(c) == word]
    groups = [g for g in app.registered_groups if g.name == word]
    if len(commands) + len(groups) != 1:
        return app
    pruned = typer.Typer()
    pruned.__dict__.update(app.__dict__)
    pruned.registered_commands, pruned.registered_groups = commands, groups
    return pruned


def _command_name(info: Any) -> str:
    return info.name or typer.main.get_command_name(info.callback.__name__)


def main() -> None:
    """Entry point: the one place where errors become a message and an exit code.

    Typer runs with standalone_mode=False so that every click exception reaches this function;
    usage errors become one line on stderr and exit 2 (SPEC section 4)."""
    from jobctl.home import paths as paths_mod

    paths_mod.CALLER_UMASK = os.umask(0o077)  # jobs run under the caller's umask, jobctl's own files are private
    debug = os.environ.get("JOBCTL_DEBUG") not in (None, "", "0")
    click_exception, click_usage_error = _click_exceptions()
    try:
        code = _app_for(sys.argv[1:])(prog_name="jobctl", standalone_mode=False)  # click returns typer.Exit's code here
        sys.exit(code if isinstance(code, int) else 0)
    except JobctlError as exc:
        if debug:
            raise
        _err(f"error: {exc.message}", "red")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _err("interrupted", "red")
        sys.exit(130)
    except click_usage_error as exc:
        if debug:
            raise
        _err(_usage_line(exc), "red")
        sys.exit(2)
    except click_exception as exc:
        if debug:
            raise
        _err(f"error: {' '.join(exc.format_message().split())}", "red")
        sys.exit(exc.exit_code if exc.exit_code else 1)
    except Exception as exc:  # anything unexpected
        from jobctl.store.database import DatabaseError, explain

        if isinstance(exc, DatabaseError) and not debug:  # a query outside a mapped transaction
            _err(f"error: {explain(exc, _paths().db).message}", "red")
            sys.exit(1)
        if debug:
            raise
        _err(f"error: {type(exc).__name__}: {exc} (set JOBCTL_DEBUG=1 for the traceback)", "red")
        sys.exit(1)
