"""`jobctl config show|get|set|unset|path`: the settings in config.toml."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from jobctl.cli.commands import JsonOpt, err, home_paths, open_service

config_app = typer.Typer(help="Settings in config.toml. Example: jobctl config set capacity.cpus 8")


@config_app.command("show")
def config_show(as_json: JsonOpt = False) -> None:
    """Show every setting with its value.

    Example: jobctl config show --json
    """
    from jobctl.cli import output

    output.config_show(open_service().config, as_json)


@config_app.command("get")
def config_get(key: Annotated[str, typer.Argument(help="A dotted key such as defaults.cpus.")]) -> None:
    """Print one setting.

    Example: jobctl config get defaults.memory
    """
    value = open_service().config.get(key)
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
    service = open_service(local=True)
    stored = service.config.set(key, value)
    service.wake_supervisor(start=False)  # a running supervisor picks the change up at once
    err(f"{key} = {json.dumps(stored)}")


@config_app.command("unset")
def config_unset(key: Annotated[str, typer.Argument(help="A dotted key such as defaults.cpus.")]) -> None:
    """Remove a setting from config.toml, so that it takes its default.

    Example: jobctl config unset capacity.cpus
    """
    _settings_owner()
    service = open_service(local=True)
    was_set = service.config.unset(key)
    if was_set:
        service.wake_supervisor(start=False)  # a running supervisor picks the change up at once
    default = service.config.get(key)
    from jobctl.home.config import unset_text

    shown = unset_text(key) if default is None else json.dumps(default)
    err(f"{key} = {shown} (default)" + ("" if was_set else "; it was not set"))


def _settings_owner() -> None:
    if home_paths().shared and os.getuid() != 0:
        from jobctl.errors import UnsafePath

        raise UnsafePath("the settings of a shared queue are root's; ask its administrator to change them")


@config_app.command("path")
def config_path() -> None:
    """Print where config.toml lives.

    Example: $EDITOR "$(jobctl config path)"
    """
    print(home_paths().config_file)
