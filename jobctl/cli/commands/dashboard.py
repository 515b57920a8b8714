"""`jobctl dashboard`: a local web page of jobs (the page itself, jobctl/cli/dashboard/, is imported only when it runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl.cli.commands import home_paths


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

    refuse_shared(home_paths(), "dashboard")  # root's only on a shared queue; its POSTs go through the socket
    raise typer.Exit(serve(home_paths(), host, port, open_browser=open_browser, allow_control=allow_control))
