"""`jobctl supervisor run|start|stop|status`: the local supervisor."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from jobctl.cli.commands import JsonOpt, home_paths, open_service

supervisor_app = typer.Typer(help="The local supervisor that runs jobs. It starts on demand.")


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
    paths = home_paths()
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

    if home_paths().shared and not shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the supervisor of a shared queue is root's; ask its administrator to start it")
    if shared:
        from jobctl.supervisor.shared import running_shared, setup_home

        setup_home(home_paths())
        if running_shared(home_paths()) is False:  # this user's own supervisor runs here: the shared one takes over
            output.supervisor_stop(open_service(local=True))
    output.supervisor_start(open_service(local=True))


@supervisor_app.command("stop")
def supervisor_stop() -> None:
    """Stop the supervisor; running jobs keep running.

    Example: jobctl supervisor stop
    """
    from jobctl.cli import output

    if home_paths().shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the supervisor of a shared queue is root's; only root stops it")
    raise typer.Exit(output.supervisor_stop(open_service(local=True)))


@supervisor_app.command("status")
def supervisor_status(as_json: JsonOpt = False) -> None:
    """Show the supervisor's pid, uptime and capacity.

    Example: jobctl supervisor status --json
    """
    from jobctl.cli import output

    svc = open_service()
    if getattr(svc, "remote", False):
        raise typer.Exit(output.supervisor_status(svc, as_json, svc.call("supervisor")))
    raise typer.Exit(output.supervisor_status(svc, as_json))
