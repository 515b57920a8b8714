"""Notification targets (SPEC section 10): what to run or call when a job reaches given states.

A target is a small JSON-friendly dict, kept in the job's spec and, merged with the `[notify]` of
config.toml, in the job's row (`jobs.notify`), where `store.transition` finds it:

    {"kind": "command" | "webhook", "value": "<shell command or URL>", "on": ["FAILED", ...],
     "origin": "job" | "config" | "event_callback"}

This module only checks and normalises values; delivery is `jobctl/supervisor/notify.py`.
"""

from __future__ import annotations

import difflib
from typing import Any
from urllib.parse import urlsplit

from jobctl.core import states

KINDS = ("command", "webhook")
DEFAULT_ON = (states.COMPLETED, states.FAILED, states.KILLED)  # the terminal states
MAX_VALUE = 8192  # characters of a command or URL


def parse_states(value: Any) -> list[str]:
    """`on:` as a list of jobctl state names (a single name is a list of one). Case is ignored.

    Raises ValueError naming the first unknown state, with the closest jobctl state or the one a
    reference system's name maps to (Slurm's CANCELLED is our KILLED)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("expected a state name or a list of them, such as [FAILED, COMPLETED]")
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a state name, got {item!r}")
        name = item.strip().upper()
        if name not in states.ALL_STATES:
            raise ValueError(f"unknown state {item!r}{_hint(name)} (states: {', '.join(states.ALL_STATES)})")
        if name not in found:
            found.append(name)
    return found


def _hint(name: str) -> str:
    for system in states.REFERENCE_MAPPING.values():
        for theirs, (ours, _) in system.items():
            if theirs.upper() == name:
                return f' (did you mean "{ours}"?)'
    close = difflib.get_close_matches(name, states.ALL_STATES, n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_command(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a shell command")
    if len(value) > MAX_VALUE:
        raise ValueError(f"longer than {MAX_VALUE} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value) or "\x7f" in value:
        raise ValueError("contains control characters")
    return value


def check_url(value: Any) -> str:
    """An http:// or https:// URL with a host; anything else (file:, ftp:, a bare host) is refused."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an http:// or https:// URL")
    url = value.strip()
    if len(url) > MAX_VALUE or any(ord(c) <= 32 or c == "\x7f" for c in url):
        raise ValueError("expected an http:// or https:// URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise ValueError(f"expected an http:// or https:// URL, got {shown} (only HTTP(S) webhooks are supported)")
    if not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return url


def target(kind: str, value: str, on: list[str] | tuple[str, ...] | None, origin: str) -> dict[str, Any]:
    return {"kind": kind, "value": value, "on": list(on or DEFAULT_ON), "origin": origin}


def wants(targets: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """The targets that ask to be told when a job reaches `state`."""
    return [t for t in targets if state in (t.get("on") or DEFAULT_ON)]


def describe_target(t: dict[str, Any], width: int = 60) -> str:
    """`command 'notify-send ...'` or `webhook https://host/...` for one line of describe."""
    value = " ".join(str(t.get("value", "")).split())
    if t.get("kind") == "webhook":  # the path of a Slack or Discord webhook is its secret: show the host only
        parts = urlsplit(value)
        return f"webhook {parts.scheme}://{parts.netloc}/..." if parts.path not in ("", "/") else f"webhook {value}"
    if len(value) > width:
        value = value[: width - 3] + "..."
    return f"command {value!r}"
