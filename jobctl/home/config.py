"""Settings in `config.toml`: read with tomllib, written with tomli-w, every key validated.

Keys are dotted (`defaults.cpus`, `capacity.accelerators`); `KEYS` is the one list of what may be
set, each with the form it expects. An unknown key or a bad value is refused with the key and the
expected form.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobctl.errors import UsageError


def _positive_number(value: Any) -> float:
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError
    return int(value) if float(value).is_integer() else float(value)


def _memory(value: Any) -> str:
    from jobctl.core.units import parse_memory

    parse_memory(value, where_key="memory")
    return str(value) if isinstance(value, str) else f"{value}GiB"


def _duration(value: Any) -> str | float:
    from jobctl.core.units import parse_duration

    parse_duration(value)
    return value


def _accelerators(value: Any) -> dict[str, int]:
    if isinstance(value, str):  # "H100=4,A100=2" or "H100:4" from the command line
        pairs = [p.replace("=", ":").split(":") for p in value.split(",") if p.strip()]
        value = {k.strip(): int(v) for k, v in pairs}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items()
    ):
        raise ValueError
    return value


def _count(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError
    return value


def _backend(value: Any) -> str:
    if value not in ("local", "slurm"):
        raise ValueError
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


def _whole(value: Any) -> int:
    if isinstance(value, str):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError
    return value


def _notify_command(value: Any) -> str:
    from jobctl.core.notify import check_command

    return check_command(value)


def _notify_webhook(value: Any) -> str:
    from jobctl.core.notify import check_url

    return check_url(value)


def _notify_on(value: Any) -> list[str]:
    from jobctl.core.notify import parse_states

    if isinstance(value, str):  # `config set notify.on FAILED,KILLED` or `[FAILED, KILLED]` unquoted
        value = [v.strip().strip("'\"") for v in value.strip().strip("[]").split(",") if v.strip()]
    return parse_states(value)


@dataclass(frozen=True)
class Key:
    parse: Callable[[Any], Any]
    form: str
    default: Any
    help: str


KEYS: dict[str, Key] = {
    "backend": Key(_backend, '"local" or "slurm"', "local", "where jobs run unless --backend says otherwise"),
    "defaults.cpus": Key(_positive_number, "a number > 0", 1, "CPUs reserved for a job that sets none"),
    "defaults.memory": Key(
        _memory, 'memory such as "1GiB" or "512MiB"', "1GiB", "memory reserved and enforced for a job that sets none"
    ),
    "capacity.cpus": Key(_positive_number, "a number > 0", None, "CPUs jobs may use (default: detected)"),
    "capacity.memory": Key(_memory, 'memory such as "32GiB"', None, "memory jobs may use (default: detected)"),
    "capacity.accelerators": Key(
        _accelerators, "a table such as {H100 = 4}", None, "accelerators (default: nvidia-smi)"
    ),
    "supervisor.idle_exit": Key(
        _duration, 'a duration such as "60s"', "60s", "the supervisor exits after this long with nothing to do"
    ),
    "kill.grace": Key(_duration, 'a duration such as "10s"', "10s", "time between SIGTERM and SIGKILL"),
    "shared.allowed_group": Key(
        _string, "a Unix group name", None, "shared queue: only members of this group may use it (default: everyone)"
    ),
    "shared.admin_group": Key(
        _string, "a Unix group name", None, "shared queue: members may control every user's jobs (root always may)"
    ),
    "limits.max_gpus_per_user": Key(
        _whole, "a whole number >= 0", None, "GPUs one user's running jobs may hold at once (default: no limit)"
    ),
    "limits.max_running_per_user": Key(
        _whole, "a whole number >= 0", None, "jobs of one user that may run at once (default: no limit)"
    ),
    "retention.max_age": Key(
        _duration, 'a duration such as "30d"', None, "finished jobs older than this are forgotten, logs too"
    ),
    "retention.max_finished": Key(
        _count, "a whole number >= 1", None, "at most this many finished jobs are kept (the newest), logs too"
    ),
    "notify.command": Key(
        _notify_command, "a shell command", None, "run for every job reaching a notify.on state (SPEC section 10)"
    ),
    "notify.webhook": Key(
        _notify_webhook,
        "an http:// or https:// URL",
        None,
        "POSTed the job's JSON for every job reaching a notify.on state",
    ),
    "notify.on": Key(
        _notify_on,
        "a list of states such as [FAILED, KILLED]",
        ["COMPLETED", "FAILED", "KILLED"],
        "the states notify.command and notify.webhook are for",
    ),
    "slurm.partition": Key(_string, "a partition name", None, "sbatch --partition"),
    "slurm.account": Key(_string, "an account name", None, "sbatch --account"),
}


def unset_text(key: str) -> str:
    """How `config show`/`unset` print a key without a value: capacity is detected from the
    machine; the Slurm keys are simply not passed to sbatch (the cluster's default applies)."""
    return "(detected)" if key.startswith("capacity.") else "(not set)"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in KEYS:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(KEYS), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Config:
    """The settings of one jobctl home. Values not set in the file take their defaults."""

    def __init__(self, path: Path, values: dict[str, Any]):
        self.path = path
        self.values = values  # only the keys set in the file

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            return cls(path, {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
        values = {}
        for key, value in _flatten(raw).items():
            if key not in KEYS:
                raise UsageError(f"{path}: {key}: unknown setting{_suggest(key)}")
            values[key] = cls._check(key, value, where=str(path))
        return cls(path, values)

    @staticmethod
    def _check(key: str, value: Any, where: str = "config") -> Any:
        spec = KEYS[key]
        try:
            return spec.parse(value)
        except (ValueError, TypeError) as exc:
            why = f": {exc}" if key.startswith("notify.") and str(exc) else ""  # which state, which scheme
            prefix = f"{where}: " if where else ""  # `config set` names no file: the key is what was typed
            raise UsageError(f"{prefix}{key}: expected {spec.form}, got {value!r}{why}") from None

    def get(self, key: str) -> Any:
        if key not in KEYS:
            raise UsageError(f"{key}: unknown setting{_suggest(key)}")
        return self.values.get(key, KEYS[key].default)

    def notify_targets(self) -> list[dict[str, Any]]:
        """The `[notify]` targets every job gets (SPEC section 10), in the form of core/notify.py."""
        from jobctl.core.notify import target

        on = self.get("notify.on")
        return [
            target(kind, self.values[f"notify.{kind}"], on, "config")
            for kind in ("command", "webhook")
            if self.values.get(f"notify.{kind}")
        ]

    def effective(self) -> dict[str, Any]:
        return {key: self.get(key) for key in KEYS}

    def set(self, key: str, raw: str) -> Any:
        """Validate and write one setting. `raw` comes from the command line: TOML value or bare text."""
        if key not in KEYS:
            raise UsageError(f"{key}: unknown setting{_suggest(key)}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        value = self._check(key, value, where="")
        self.values[key] = value
        self._write()
        return value

    def unset(self, key: str) -> bool:
        """Remove one setting from the file, so that it takes its default again. False when it was not set."""
        if key not in KEYS:
            raise UsageError(f"{key}: unknown setting{_suggest(key)}")
        if key not in self.values:
            return False
        del self.values[key]
        self._write()
        return True

    def _write(self) -> None:
        import tomli_w

        nested: dict[str, Any] = {}
        for key, value in sorted(self.values.items()):
            *parents, leaf = key.split(".")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".toml.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            tomli_w.dump(nested, handle)
        os.replace(tmp, self.path)
