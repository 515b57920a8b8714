"""Pure parsing for everyday queueing (SPEC section 9): queue names, start times, signals, array
throttles. Every parser raises ValueError with a message that says what was expected; callers add
where the value came from (an option or a job file key).
"""

from __future__ import annotations

import datetime as dt
import re
import signal as signal_mod

QUEUE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_QUEUE = "default"
WARN_DEFAULT = 60.0  # seconds before a timeout, as Slurm's --signal without @
_CLOCK_RE = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*")


def check_queue(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_RE.fullmatch(name):
        raise ValueError(f"expected a queue name of letters, digits, '.', '_' and '-' (at most 64), got {name!r}")
    return name


def parse_start(text: object, now: float) -> float:
    """When a job may start, as epoch seconds: a delay (`10m`, `2h`, `90s`, `+1d`), a time of day
    (`22:00`, `07:30:15`: the next one to come, today or tomorrow, local time), or an ISO 8601
    date and time (`2026-11-30T22:00`, `2026-11-30 22:00+01:00`; without an offset: local time)."""
    from jobctl.core.units import parse_duration

    expected = 'expected a delay such as "10m" or "2h", a time of day such as "22:00", or an ISO 8601 time'
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = f"{text}s"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{expected}, got {text!r}")
    raw = text.strip()
    if raw.lower() == "now":
        return now
    clock = _CLOCK_RE.fullmatch(raw)
    if clock:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f'"{raw}" is not a time of day (00:00 to 23:59)')
        base = dt.datetime.fromtimestamp(now)
        at = base.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at.timestamp() <= now:
            at += dt.timedelta(days=1)
        return at.timestamp()
    if re.fullmatch(r"\+?\s*[0-9.]+\s*[smhd]?(\s*[0-9.]+\s*[smhd]?)*", raw, re.IGNORECASE):
        try:
            return now + parse_duration(raw.lstrip("+").strip())
        except ValueError as exc:
            raise ValueError(f"{expected}, got {raw!r} ({exc})") from None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{expected}, got {raw!r}") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    stamp = when.timestamp()
    if stamp < now - 1:
        raise ValueError(f'"{raw}" is in the past')
    return stamp


def parse_signal(text: object) -> int:
    """A signal by name (`INT`, `SIGUSR1`, `usr1`) or number (`2`)."""
    raw = str(text).strip()
    if raw.isdigit():
        number = int(raw)
        if number in {int(s) for s in signal_mod.valid_signals()} and number > 0:
            return number
        raise ValueError(f"no signal number {raw} on this system")
    name = raw.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise ValueError(
            f'unknown signal "{raw}" (expected a name such as INT, TERM, USR1, HUP, or a number)'
        ) from None


def signal_name(number: int) -> str:
    try:
        return signal_mod.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def parse_warning(text: object) -> tuple[int, float]:
    """The `signal:` key: `USR1@60s` (signal, seconds before a timeout); `USR1` alone: 60 s."""
    from jobctl.core.units import parse_duration

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'expected a signal and a time such as "USR1@60s", got {text!r}')
    name, sep, when = text.strip().partition("@")
    number = parse_signal(name)
    if number in (signal_mod.SIGKILL, signal_mod.SIGSTOP):
        raise ValueError(f"{signal_name(number)} cannot be caught; a warning needs a signal the job can handle")
    seconds = parse_duration(when) if sep else WARN_DEFAULT
    return number, seconds


def parse_array_throttle(text: str) -> tuple[str, int | None]:
    """`0-99%4` -> ("0-99", 4); `10` -> ("10", None). The throttle is a whole number >= 1."""
    body, sep, throttle = text.partition("%")
    if not sep:
        return text, None
    if not re.fullmatch(r"\s*\d{1,9}\s*", throttle) or int(throttle) < 1:
        raise ValueError(
            f'"%{throttle}": expected how many tasks may run at once, a whole number from 1 (such as 0-99%4)'
        )
    return body, int(throttle)
