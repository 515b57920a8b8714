"""The command line's entry point: the root app, which commands there are, and error handling.

The commands themselves live in `jobctl/cli/commands/`, one module per verb or group of verbs;
`COMMANDS` below names each one and its module, and a run imports only the module of the command
that was typed. One chokepoint (`main`) maps every JobctlError to a red one-line message on stderr
and its exit code; `JOBCTL_DEBUG=1` shows the traceback instead. Data goes to stdout, everything
else to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from typing import Annotated, Any, Optional

import typer

from jobctl import __version__
from jobctl.cli.commands import err, home_paths
from jobctl.errors import JobctlError

# Every command: its name -> "module:attribute" in jobctl.cli.commands, a function (a command) or a
# typer.Typer (a group of commands). `jobctl --help` lists the commands in this order, then the groups.
COMMANDS: dict[str, str] = {
    "launch": "launch:launch",
    "status": "status:status",
    "stop": "control:stop",
    "start": "control:start",
    "retry": "control:retry",
    "kill": "control:kill",
    "rm": "control:rm",
    "prune": "control:prune",
    "logs": "logs:logs",
    "describe": "reports:describe",
    "stats": "reports:stats",
    "wait": "reports:wait",
    "dashboard": "dashboard:dashboard",
    "update": "queueing:update",  # SPEC section 9
    "config": "config:config_app",
    "supervisor": "supervisor:supervisor_app",
    "queue": "queueing:queue_app",  # SPEC section 9
}


def _version(value: bool) -> None:
    if value:
        print(f"jobctl {__version__}")
        raise typer.Exit()


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


def build_app(names: Optional[Collection[str]] = None) -> typer.Typer:
    """The root app with the commands named (None: every one), each imported from its module here."""
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
    app.callback()(_root)
    for name, target in COMMANDS.items():
        if names is not None and name not in names:
            continue
        module, _, attribute = target.partition(":")
        # the import statement's machinery, not importlib.import_module: `python -X importtime` shows it
        command = getattr(__import__(f"jobctl.cli.commands.{module}", fromlist=[attribute]), attribute)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)
    return app


def _click_exceptions() -> tuple[Any, Any]:  # click's classes, found at run time (never imported here)
    """(ClickException, UsageError) of the click that Typer runs on: the `click` package for older
    Typer releases, the copy Typer vendors (`typer._click`) for newer ones. Found through
    `typer.BadParameter`, which both export, so `click` itself is never imported."""
    module = sys.modules[typer.BadParameter.__module__]
    return module.ClickException, module.UsageError


def _command_path_from_argv() -> str:
    """`jobctl CMD [SUB]` as typed, for a parser error that carries no context (an option given
    last without its value): the words of sys.argv that name commands, up to the first other one."""
    command = typer.main.get_command(build_app())
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
    signature, and each command's module costs its import: with some 30 commands that is a tenth of
    what `jobctl status` costs. The root takes only flags, so the first word not starting with "-"
    is the command. Anything else (no command, a typo, shell completion) gets the whole app, so help
    lists and "did you mean" stay complete."""
    word = next((w for w in argv if not w.startswith("-")), None)
    if word not in COMMANDS or any(key.endswith("_COMPLETE") for key in os.environ if key.startswith("_")):
        return build_app()
    return build_app([word])


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
        err(f"error: {exc.message}", "red")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err("interrupted", "red")
        sys.exit(130)
    except click_usage_error as exc:
        if debug:
            raise
        err(_usage_line(exc), "red")
        sys.exit(2)
    except click_exception as exc:
        if debug:
            raise
        err(f"error: {' '.join(exc.format_message().split())}", "red")
        sys.exit(exc.exit_code if exc.exit_code else 1)
    except Exception as exc:  # anything unexpected
        from jobctl.store.database import DatabaseError, explain

        if isinstance(exc, DatabaseError) and not debug:  # a query outside a mapped transaction
            err(f"error: {explain(exc, home_paths().db).message}", "red")
            sys.exit(1)
        if debug:
            raise
        err(f"error: {type(exc).__name__}: {exc} (set JOBCTL_DEBUG=1 for the traceback)", "red")
        sys.exit(1)
