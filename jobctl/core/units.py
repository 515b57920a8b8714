"""Parsing and formatting of the quantities in a job file: CPUs, memory, durations, accelerators.

Parsers take what YAML or a command-line option gives (a number or a string) and raise ValueError
with a complete, one-line problem such as `expected a number or "N+", got "two"`; the caller adds
where it came from (a JobFileError with file, line and key, or a UsageError naming the option).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fractions import Fraction  # imported where memory is parsed: `status` never needs it

MIB_PER_GIB = 1024
MAX_MEMORY_MIB = 1 << 30  # 1 PiB: far beyond any machine, small enough to catch typos
MAX_CPUS = 100_000
MAX_DURATION_S = 365 * 86_400

# Binary multiples in MiB. Decimal spellings (GB, G, ...) mean the same as the binary ones, as in
# SkyPilot and Konduktor where "16GB" is 16 GiB of memory; the 7% between them never matters here.
_MEMORY_UNITS: dict[str, int] = {  # the power of 1024 of each unit, in MiB
    letter + suffix: power for power, letter in enumerate("kmgtp", start=-1) for suffix in ("", "b", "i", "ib")
}

# At most 30 digits: a longer number is a mistake, and this keeps Fraction/int conversions cheap.
_NUMBER = r"(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})"
# Longer strings are refused before matching (which also keeps the regexes' backtracking cheap).
_MAX_TEXT = 100


class _LazyPattern:
    """A regular expression compiled on first use: `status` imports this module only to format."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0):
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:  # fullmatch, match, pattern, ...
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)


def _lazy(pattern: str, flags: int = 0) -> Any:
    return _LazyPattern(pattern, flags)


_MEMORY_RE: re.Pattern[str] = _lazy(rf"\s*({_NUMBER})\s*([a-z]*)\s*(\+?)\s*", re.IGNORECASE)
_CPUS_RE: re.Pattern[str] = _lazy(rf"\s*({_NUMBER})\s*(\+?)\s*")
_DURATION_PART_RE: re.Pattern[str] = _lazy(rf"\s*({_NUMBER})\s*([smhd]?)", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def describe_value(value: object) -> str:
    """A short, one-line rendering of an offending value for `got ...`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int) and value.bit_length() > 128:  # also avoids int-to-str digit limits
        return "a huge number" if value > 0 else "a huge negative number"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def quote(text: str, limit: int = 40) -> str:
    """`text` in double quotes, shortened, with every non-printable character escaped."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return '"' + escape(text) + '"'


def escape(text: str) -> str:
    """Escape what would break a one-line message (newlines, U+2028, control characters)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _as_float(value: object) -> float | None:
    """An int or float (never a bool) as a float, inf when too large; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond ±1.8e308
        return math.inf if value > 0 else -math.inf


def parse_memory(value: object, *, where_key: str = "memory") -> int:
    """A memory request in whole MiB (rounded up). A bare number, or a string without unit, is GiB.

    Accepts 4, 0.5, "4", "4+" (at least 4 GiB: we reserve 4), "512MiB", "512M", "4GiB", "4GB",
    "4G", "4Gi", "1TiB", "1.5GiB", "4GiB+". `where_key` names the setting in the hint given when a
    bare number is implausibly large (someone who meant MiB).
    """
    from fractions import Fraction

    expected = 'expected a size such as 4 (GiB), "512MiB", "4GiB" or "4+"'
    mib: Fraction | float  # a float only for ±inf, which the range checks below refuse
    if isinstance(value, int) and not isinstance(value, bool):
        mib = Fraction(value * MIB_PER_GIB)
        unit_given = False
    elif isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"{expected}, got {describe_value(value)}")
        mib = Fraction(value) * MIB_PER_GIB if math.isfinite(value) else value
        unit_given = False
    elif isinstance(value, str) and len(value) <= _MAX_TEXT:
        match = _MEMORY_RE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in _MEMORY_UNITS):
            raise ValueError(f"{expected}, got {describe_value(value)}")
        mib = Fraction(match.group(1)) * (Fraction(1024) ** _MEMORY_UNITS[unit] if unit else MIB_PER_GIB)
        unit_given = bool(unit)
    else:
        raise ValueError(f"{expected}, got {describe_value(value)}")
    if mib <= 0:
        raise ValueError(f"expected a size above 0, got {describe_value(value)}")
    if mib > MAX_MEMORY_MIB:
        hint = "" if unit_given else f' (a bare number for {where_key} is GiB; write e.g. "512MiB")'
        raise ValueError(f"expected at most 1 PiB, got {describe_value(value)}{hint}")
    return max(1, math.ceil(mib))


def parse_cpus(value: object) -> float:
    """A CPU request: a number above 0, or "N" / "N+" (at least N: we reserve N)."""
    number = _as_float(value)
    if number is None:
        match = _CPUS_RE.fullmatch(value) if isinstance(value, str) and len(value) <= _MAX_TEXT else None
        if not match:
            raise ValueError(f'expected a number or "N+", got {describe_value(value)}')
        number = float(match.group(1))
    if math.isnan(number) or number <= 0:
        raise ValueError(f"expected a number above 0, got {describe_value(value)}")
    if number > MAX_CPUS:
        raise ValueError(f"expected at most {MAX_CPUS} CPUs, got {describe_value(value)}")
    return number


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string: "90", "45s", "30m", "2h", "1d", "1h30m", "1h 30m"."""
    seconds = _as_float(value)
    if seconds is None:
        seconds = _duration_text(value) if isinstance(value, str) and len(value) <= _MAX_TEXT else None
        if seconds is None:
            raise ValueError(
                'expected a duration such as 90 (seconds), "45s", "30m", "2h", "1d" or '
                f'"1h30m", got {describe_value(value)}'
            )
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"expected a duration above 0, got {describe_value(value)}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"expected at most 365d, got {describe_value(value)}")
    return seconds


def _duration_text(text: str) -> float | None:
    """Seconds in "90", "1h30m", "1h 30m" ...; None when the text is not a duration."""
    text = text.strip()
    seconds, pos, units_seen = 0.0, 0, set()
    while pos < len(text):
        match = _DURATION_PART_RE.match(text, pos)
        if not match:
            return None
        unit = match.group(2).lower()
        # A unitless number only on its own ("90"), and each unit at most once.
        if (not unit and (pos or match.end() != len(text))) or unit in units_seen:
            return None
        units_seen.add(unit)
        seconds += float(match.group(1)) * _DURATION_UNITS[unit]
        pos = match.end()
    return seconds if units_seen else None


def count_text(count: float, word: str) -> str:
    """`1 CPU`, `2 CPUs`, `0.5 CPUs`, `4 GPUs`: a count and its noun, plural unless exactly one."""
    return f"{count:g} {word}" if count == 1 else f"{count:g} {word}s"


def format_gib(mib: int | float) -> str:
    """MiB as GiB for the status table: 1024 -> "1", 512 -> "0.5", 100 -> "0.1" (≤ 2 decimals)."""
    gib = mib / MIB_PER_GIB
    text = f"{gib:.2f}".rstrip("0").rstrip(".")
    if text == "0" and mib > 0:
        return "0.01"  # never show a real reservation as nothing
    return text


def format_duration(seconds: float) -> str:
    """A short duration for messages: "45s", "2m", "2m 5s", "1h 30m", "2d 3h".

    The most significant unit and, when not zero, the next one; the rest is dropped.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.2g}s"
    total = int(round(seconds))
    units = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if total >= size or unit == "s":
            text = f"{total // size}{unit}"
            if unit != "s":
                next_unit, next_size = units[i + 1]
                rest = total % size // next_size
                if rest:
                    text += f" {rest}{next_unit}"
            return text
    raise AssertionError("unreachable")


# -- accelerators ---------------------------------------------------------------------------------

MAX_ACCELERATORS = 1024  # per node, per alternative
ACCELERATOR_NAME_RE: re.Pattern[str] = _lazy(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
ACCELERATOR_EXPECTED = 'expected an accelerator such as "H100" or "H100:8"'
_FRACTION_PROBLEM = "expected a whole number of accelerators (fractions are not supported)"
_COUNT_RE: re.Pattern[str] = _lazy(r"[0-9]{1,9}")
_FRACTION_RE: re.Pattern[str] = _lazy(r"[0-9]*\.[0-9]+")


class FractionalAccelerators(ValueError):
    """A fraction of an accelerator (SkyPilot's "T4:0.5", a shared GPU). Devices are handed out
    whole here: a job file may round it up to `whole` (with a warning); options refuse it."""

    def __init__(self, message: str, whole: int):
        super().__init__(message)
        self.whole = whole


def _fraction(message: str, value: float) -> ValueError:
    whole = math.ceil(value) if math.isfinite(value) and value > 0 else 0
    return FractionalAccelerators(message, whole) if 1 <= whole <= MAX_ACCELERATORS else ValueError(message)


def parse_accelerator(text: str) -> tuple[str, int]:
    """ "H100:8" -> ("H100", 8); "H100" -> ("H100", 1)."""
    name, colon, count_text = text.strip().rpartition(":")
    if not colon:
        name, count_text = count_text, "1"
    name, count_text = name.strip(), count_text.strip()
    if not ACCELERATOR_NAME_RE.fullmatch(name):
        raise ValueError(f"{ACCELERATOR_EXPECTED}, got {quote(text)}")
    if _COUNT_RE.fullmatch(count_text):
        return name, accelerator_count(int(count_text))
    if _FRACTION_RE.fullmatch(count_text):  # SkyPilot allows "A100:0.5"; we hand out whole devices
        raise _fraction(f"{_FRACTION_PROBLEM}, got {quote(text)}", float(count_text))
    raise ValueError(f"{ACCELERATOR_EXPECTED}, got {quote(text)}")


def accelerator_count(value: object) -> int:
    """A count of accelerators per node: a whole number (8 or 8.0) from 1 to MAX_ACCELERATORS."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float) and math.isfinite(value):
        raise _fraction(f"{_FRACTION_PROBLEM}, got {describe_value(value)}", value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a number of accelerators, got {describe_value(value)}")
    if not 1 <= value <= MAX_ACCELERATORS:
        raise ValueError(f"expected from 1 to {MAX_ACCELERATORS} accelerators, got {describe_value(value)}")
    return value


def parse_gpus_option(value: object, current: list[list[Any]]) -> list[list[Any]]:
    """The value of `--gpus`: "H100:2", "A100:8,H100:8" (alternatives), or a bare count, which keeps
    the accelerator name of `current` when it has exactly one alternative (else "GPU"); 0: none."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError(f"{ACCELERATOR_EXPECTED}, got {describe_value(value)}")
    text = value.strip()
    if _COUNT_RE.fullmatch(text):
        if int(text) == 0:
            return []
        name = current[0][0] if len(current) == 1 else "GPU"
        return [[name, accelerator_count(int(text))]]
    alternatives = [parse_accelerator(part) for part in text.split(",")]
    return [[name, count] for name, count in dict.fromkeys(alternatives)]


def memory_text(memory_mib: int | float) -> str:
    """Memory for RESOURCES: whole GiB as `4GiMEM`, less than 1 GiB as `64MiMEM`, else `1.5GiMEM`."""
    if memory_mib < 1024 and float(memory_mib).is_integer():
        return f"{int(memory_mib)}MiMEM"
    return f"{format_gib(memory_mib)}GiMEM"


def resources_text(num_nodes: int, cpus: float, memory_mib: int, accelerators: list[list[Any]]) -> str:
    cpu = f"{cpus:g}"
    parts = [f"{cpu}CPU", memory_text(memory_mib)]
    if accelerators:
        parts.append(" | ".join(f"{name}:{count}" for name, count in accelerators))
    return f"{num_nodes}x({', '.join(parts)})"
