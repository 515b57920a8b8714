"""Units: memory, CPUs and durations as written in job files and options, and their display."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobctl.core.units import (
    accelerator_count,
    format_duration,
    format_gib,
    parse_accelerator,
    parse_cpus,
    parse_duration,
    parse_gpus_option,
    parse_memory,
)


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (4, 4096),
        (0.5, 512),
        (1, 1024),
        ("4", 4096),
        ("4+", 4096),
        ("1000+", 1024000),
        ("512MiB", 512),
        ("512M", 512),
        ("512MB", 512),
        ("512mi", 512),
        ("4GiB", 4096),
        ("4GB", 4096),
        ("4G", 4096),
        ("4Gi", 4096),
        ("4gb", 4096),
        ("1TiB", 1048576),
        ("1.5GiB", 1536),
        ("4GiB+", 4096),
        (" 4 GiB ", 4096),
        ("0.1", 103),
        ("1KiB", 1),
    ],
)
def test_parse_memory(value: object, mib: int) -> None:
    assert parse_memory(value, where_key="resources.memory") == mib


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("two", 'expected a size such as 4 (GiB), "512MiB", "4GiB" or "4+", got "two"'),
        ("4XB", 'got "4XB"'),
        ("4+GiB", 'got "4+GiB"'),
        ("", 'got ""'),
        (True, "got true"),
        (None, "got null"),
        ([4], "got a list"),
        (0, "expected a size above 0, got 0"),
        ("0MiB", "expected a size above 0"),
        (-1, "expected a size above 0, got -1"),
        (math.nan, "got nan"),
        (math.inf, "expected at most 1 PiB, got inf"),
        (10**400, "expected at most 1 PiB, got a huge number"),
        (2**21, 'a bare number for resources.memory is GiB; write e.g. "512MiB"'),
        ("9" * 200, "expected a size such as"),
    ],
)
def test_parse_memory_errors(value: object, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_memory(value, where_key="resources.memory")
    assert problem in str(info.value)


@pytest.mark.parametrize(("value", "cpus"), [(2, 2.0), (0.5, 0.5), ("2", 2.0), ("4+", 4.0), ("1.5", 1.5)])
def test_parse_cpus(value: object, cpus: float) -> None:
    assert parse_cpus(value) == cpus


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("two", 'expected a number or "N+", got "two"'),
        (True, 'expected a number or "N+", got true'),
        (0, "expected a number above 0, got 0"),
        (-2, "expected a number above 0, got -2"),
        (math.nan, "expected a number above 0, got nan"),
        (math.inf, "expected at most 100000 CPUs, got inf"),
        (100_001, "expected at most 100000 CPUs, got 100001"),
        (-(10**400), "expected a number above 0, got a huge negative number"),
    ],
)
def test_parse_cpus_errors(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem.replace("+", r"\+") + "$"):
        parse_cpus(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (0.5, 0.5),
        ("90", 90.0),
        ("45s", 45.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        (" 2H ", 7200.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("soon", 'got "soon"'),
        ("1h1h", 'got "1h1h"'),
        ("90 5", 'got "90 5"'),
        ("", 'got ""'),
        ("-5m", 'got "-5m"'),
        (True, "got true"),
        (0, "above 0, got 0"),
        (-1, "above 0, got -1"),
        (math.nan, "above 0, got nan"),
        ("366d", "expected at most 365d"),
        (10**400, "at most 365d"),
    ],
)
def test_parse_duration_errors(value: object, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("mib", "text"),
    [(1024, "1"), (2048, "2"), (512, "0.5"), (1536, "1.5"), (100, "0.1"), (1024000, "1000"), (1, "0.01"), (0, "0")],
)
def test_format_gib(mib: int, text: str) -> None:
    assert format_gib(mib) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (45, "45s"),
        (0, "0s"),
        (0.5, "0.5s"),
        (120, "2m"),
        (125, "2m 5s"),
        (3600, "1h"),
        (5400, "1h 30m"),
        (3605, "1h"),
        (90000, "1d 1h"),
        (3 * 86400, "3d"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("H100:8", ("H100", 8)),
        ("A100", ("A100", 1)),
        (" A100-80GB : 2 ", ("A100-80GB", 2)),
        ("tpu-v3-8", ("tpu-v3-8", 1)),
    ],
)
def test_parse_accelerator(text: str, parsed: tuple[str, int]) -> None:
    assert parse_accelerator(text) == parsed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A100:0.5", 'expected a whole number of accelerators (fractions are not supported), got "A100:0.5"'),
        ("A100:0", "expected from 1 to 1024 accelerators, got 0"),
        ("A100:x", 'expected an accelerator such as "H100" or "H100:8", got "A100:x"'),
        (":8", 'got ":8"'),
        ("", 'got ""'),
        ("a b", 'got "a b"'),
    ],
)
def test_parse_accelerator_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_accelerator(text)
    assert problem in str(info.value)


def test_accelerator_count() -> None:
    assert accelerator_count(8) == 8
    assert accelerator_count(8.0) == 8
    for bad in (0, -1, 1025, 1.5, True, None, "8", math.inf, math.nan):
        with pytest.raises(ValueError):
            accelerator_count(bad)


def test_parse_gpus_option() -> None:
    assert parse_gpus_option("2", [["H100", 8]]) == [["H100", 2]]
    assert parse_gpus_option(2, [["H100", 8], ["A100", 8]]) == [["GPU", 2]]
    assert parse_gpus_option("0", [["H100", 8]]) == []
    assert parse_gpus_option("A100:8,H100:8", []) == [["A100", 8], ["H100", 8]]
    with pytest.raises(ValueError, match="expected from 1 to 1024 accelerators"):
        parse_gpus_option("99999", [])
    with pytest.raises(ValueError):
        parse_gpus_option(None, [])


@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none()))
def test_parsers_raise_only_value_error(value: object) -> None:
    for parse in (
        parse_cpus,
        parse_duration,
        parse_memory,
        accelerator_count,
        lambda v: parse_accelerator(v) if isinstance(v, str) else None,
        lambda v: parse_gpus_option(v, [["H100", 1]]),
    ):
        try:
            parse(value)
        except ValueError as e:
            assert len(str(e).splitlines()) == 1
