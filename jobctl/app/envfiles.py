"""`--env` and `--env-file` of `launch`: KEY=VALUE pairs, read with bounds, never echoed (every value
of an env file, and of `--env NAME` taken from this environment, is a secret)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from jobctl.errors import UsageError

if TYPE_CHECKING:
    from jobctl.app.launch import LaunchOptions

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what every shell (and the Slurm batch script) takes
ENV_FILE_LIMIT = 1 << 20  # bytes: an env file is a few lines; /dev/zero is not one


def env_file_value(raw: str) -> str:
    """A value as docker compose / python-dotenv read it: one pair of matching quotes around the whole
    value is removed (`K="a b"` -> `a b`, `K='x'` -> `x`); anything else, inner quotes included, is kept."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_env_file(path: str) -> str:
    """The env file's text, read with a bound, never echoed (it holds secrets)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(ENV_FILE_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"--env-file: cannot read {path} ({exc.strerror})") from None
    if len(data) > ENV_FILE_LIMIT:
        raise UsageError(
            f"--env-file: {path} is larger than {ENV_FILE_LIMIT // (1 << 20)} MiB; an env file holds KEY=VALUE lines"
        )
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text") from None


def parse_env(options: LaunchOptions) -> tuple[dict[str, str], list[str]]:
    """--env-file, then --env K=V / --env K (from this environment; treated as a secret).

    Every value of an env file is a secret; errors name the file and line, never the text of it.
    """
    values: dict[str, str] = {}
    secret: list[str] = []
    env_files = [options.env_file] if isinstance(options.env_file, str) else list(options.env_file or [])
    for env_file in env_files:  # in order: a later file wins
        lines = read_env_file(env_file).splitlines()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not ENV_NAME.fullmatch(key.strip()):
                raise UsageError(
                    f"{env_file}:{number}: expected KEY=VALUE (KEY: letters, digits and _, "
                    "not starting with a digit); the line is not shown since it may hold a secret"
                )
            if "\0" in value:
                raise UsageError(f"{env_file}:{number}: {key.strip()}: the value holds a NUL byte")
            values[key.strip()] = env_file_value(value)
            if key.strip() not in secret:
                secret.append(key.strip())
    for item in options.env or []:
        key, sep, value = item.partition("=")
        if not ENV_NAME.fullmatch(key):
            raise UsageError(
                f"--env: expected KEY=VALUE or KEY (KEY: letters, digits and _), got {key!r}{'=...' if sep else ''}"
            )
        if "\0" in value:
            raise UsageError(f"--env {key}: the value holds a NUL byte")
        if sep:
            values[key] = value
        elif key in os.environ:
            values[key] = os.environ[key]
            secret.append(key)
        else:
            raise UsageError(f"--env {key}: {key} is not set in this environment")
    return values, secret
