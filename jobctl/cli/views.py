"""How jobs look: the `--json` document (SPEC section 4) and the Konduktor-style table (section 5)."""

from __future__ import annotations

import datetime as dt
import time

from jobctl.core import states
from jobctl.core.units import memory_text, resources_text
from jobctl.engine.documents import JSON_FIELDS, iso, job_json
from jobctl.store.records import Job, loads

__all__ = ["JSON_FIELDS", "iso", "job_json", "memory_text", "resources_text", "status_table"]


def age(seconds: float) -> str:
    """'<1 min', '22 mins', '1 hr, 5 mins', '2 days, 3 hrs' (Konduktor's SUBMITTED column)."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1 min"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}{'s' if n != 1 else ''}"

    if days:
        return unit(days, "day") + (f", {unit(hours, 'hr')}" if hours else "")
    if hours:
        return unit(hours, "hr") + (f", {unit(mins, 'min')}" if mins else "")
    return unit(mins, "min")


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%m/%d/%y %I:%M%p")


def clock_seconds(ts: float | None) -> str:
    """A local time to the second, for `describe` and its timeline: `08/08/25 04:11:05PM`."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%m/%d/%y %I:%M:%S%p")


def with_message(status: str, message: str | None) -> str:
    """`FAILED (exit 5): it ran out of disk`, without repeating a message the STATUS already says
    (`FAILED (exit 5): exit 5`, `KILLED (by alice): killed by alice`)."""

    def plain(text: str) -> str:
        return " ".join(text.lower().replace("(", " ").replace(")", " ").split())

    if not message or plain(message) in plain(status):
        return status
    return f"{status}: {message}"


def seconds_text(value: float | None) -> str:
    """A duration from the spec as written back: `90s`, `2h (7200s)`; `-` when unset."""
    from jobctl.core.units import format_duration

    if value is None:
        return "-"
    short = format_duration(value)
    return short if value < 60 else f"{short} ({value:g}s)"


def duration(row: Job, now: float) -> str:
    if row.started_at is None:
        return "-"
    end = row.ended_at if row.ended_at is not None else now
    secs = max(0, int(end - row.started_at))
    hours, rest = divmod(secs, 3600)
    mins, sec = divmod(rest, 60)
    return f"{hours}h {mins}m {sec}s" if hours else (f"{mins}m {sec}s" if mins else f"{sec}s")


def resources(row: Job) -> str:
    return resources_text(row.num_nodes, row.cpus, row.memory_mib, loads(row.accelerators, []))


STATE_STYLE = {
    states.CREATED: "dim",
    states.PENDING: "yellow",
    states.BLOCKED: "yellow",
    states.ACTIVE: "green",
    states.FAILING: "red",
    states.RETRYING: "magenta",
    states.SUSPENDED: "cyan",
    states.COMPLETED: "bold green",
    states.FAILED: "bold red",
    states.KILLED: "red",
}


COLUMNS = ("ID", "NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION")
# On a narrow terminal these columns are given up, first to last; ID, NAME and STATUS always stay,
# and STATUS is never cut. See README: "The status table on a narrow terminal".
DROP_ORDER = ("END TIME", "START TIME", "SUBMITTED", "DURATION", "RESOURCES", "USER")
# A queue of several users (SPEC section 12) shows whose each job is, after NAME.
USER_COLUMNS = ("ID", "NAME", "USER", *COLUMNS[2:])


def columns_for(rows: list[Job]) -> tuple[str, ...]:
    """The table's columns: USER joins them when the jobs shown belong to more than one user."""
    users = {row.user for row in rows}
    return USER_COLUMNS if len(users) > 1 else COLUMNS


NAME_COMFORT = 24  # names are shortened to this before any column is given up
NAME_MIN = 10  # and down to this when nothing else is left to give up
GAP = 2  # spaces between two columns


def shorten(name: str, width: int) -> str:
    """Shorten in the middle, keeping the end, where array tasks and sweeps differ:
    `very-long-sweep-name-for-the-search-2` -> `very-long-swe…search-2`."""
    if len(name) <= width:
        return name
    if width <= 1:
        return "…"[:width]
    keep = width - 1  # one cell for the ellipsis
    cut = max(name.rfind("-"), name.rfind("_"), name.rfind("."))
    suffix = len(name) - cut if cut > 0 else 0  # `-12`: the array index, or the last word
    tail = max(keep * 2 // 5, suffix if suffix <= keep - 3 else 0)
    tail = min(tail, keep - 1)
    head = keep - tail
    return name[:head] + "…" + name[len(name) - tail :]


def table_cells(row: Job, now: float) -> dict[str, str]:
    started = row.started_at if row.state not in (states.PENDING, states.BLOCKED, states.CREATED) else None
    return {
        "ID": str(row.id),
        "NAME": row.name,
        "USER": row.user,
        "STATUS": states.status_text(row.state, row.detail),
        "RESOURCES": resources(row),
        "SUBMITTED": age(now - row.submitted_at),
        "START TIME": clock(started),
        "END TIME": clock(row.ended_at),
        "DURATION": duration(row, now) if started else "-",
    }


def fit_columns(widths: dict[str, int], width: int | None, columns: tuple[str, ...] = COLUMNS) -> tuple[list[str], int]:
    """The columns to show and the NAME width, for a terminal `width` cells wide (None: no limit)."""
    shown = list(columns)
    full = widths["NAME"]
    if width is None:
        return shown, full

    def total(name_width: int) -> int:
        return sum(widths[c] for c in shown if c != "NAME") + name_width + GAP * (len(shown) - 1)

    comfort = min(full, max(NAME_COMFORT, len("NAME")))
    for col in DROP_ORDER:
        if total(comfort) <= width:
            break
        if col in shown:
            shown.remove(col)
    name_width = max(min(full, width - total(0)), min(full, NAME_MIN))
    return shown, name_width


QUIET = (states.PENDING, states.BLOCKED, states.CREATED)  # waiting rows: the first left out of a long table


def cap_rows(rows: list[Job], cap: int) -> tuple[list[Job], dict[str, int]]:
    """At most `cap` rows, newest first, keeping running, suspended and finished jobs before waiting ones
    (with 100k jobs queued the ones that run are what a user looks for). Returns the rows kept and
    the number left out by state."""
    if len(rows) <= cap:
        return rows, {}
    busy = [r for r in rows if r.state not in QUIET][:cap]
    room = cap - len(busy)
    waiting = [r for r in rows if r.state in QUIET][:room]
    kept_ids = {r.id for r in busy} | {r.id for r in waiting}
    left: dict[str, int] = {}
    for r in rows:
        if r.id not in kept_ids:
            left[r.state] = left.get(r.state, 0) + 1
    return [r for r in rows if r.id in kept_ids], left


def more_text(left: dict[str, int]) -> str:
    total = sum(left.values())
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(left.items(), key=lambda kv: -kv[1]))
    return f"... and {total} more ({by_state}): see --limit N, --state, --json"  # fits 80 columns


def status_table(
    rows: list[Job],
    user: str,
    now: float | None = None,
    width: int | None = None,
    left: dict[str, int] | None = None,
):
    """The Konduktor-style table as a Rich renderable (a preamble and the table).

    With `width`, columns are given up (DROP_ORDER) and long names shortened in the middle so that
    every line fits; ID, NAME and the whole STATUS stay. `left`: rows left out by state, said in a footer.
    """
    from rich.cells import cell_len
    from rich.console import Group
    from rich.text import Text

    def cells_of(value: str) -> int:
        return len(value) if value.isascii() else cell_len(value)

    # Laid out here rather than by rich.Table: the widths are decided above, and one plain text with
    # a style span per STATUS costs a small fraction of the time for a long table.
    now = time.time() if now is None else now
    cells = [table_cells(row, now) for row in rows]
    stale = 0
    for row, c in zip(rows, cells):
        if (row.message or "").endswith("showing the last known state"):  # Slurm did not answer
            c["STATUS"], stale = f"{c['STATUS']} (stale)", stale + 1
    columns = columns_for(rows)
    widths = {col: max([cells_of(col)] + [cells_of(c[col]) for c in cells]) for col in columns}
    shown, name_width = fit_columns(widths, width, columns)
    for c in cells:
        c["NAME"] = shorten(c["NAME"], name_width)
    widths["NAME"] = max([len("NAME")] + [cells_of(c["NAME"]) for c in cells])
    pads = {col: widths[col] + GAP for col in shown[:-1]}
    lines: list[str] = []
    spans: list[tuple[int, int, str]] = []
    offset = 0
    for values, style in [({col: col for col in shown}, "")] + [
        (c, STATE_STYLE.get(row.state, "")) for row, c in zip(rows, cells)
    ]:
        parts = []
        at = offset
        for col in shown:
            value = values[col]
            if col == "STATUS" and style:
                spans.append((at, at + len(value), style))
            if col in pads:
                value += " " * (pads[col] - cells_of(value))
            parts.append(value)
            at += len(value)
        text = "".join(parts)
        lines.append(text)
        offset += len(text) + 1
    fits = width is None or max(map(cells_of, lines)) <= width
    body = Text("\n".join(lines), no_wrap=fits, overflow="fold")
    body.stylize("bold", 0, len(lines[0]))
    for start, end, style in spans:
        body.stylize(style, start, end)
    blocks = [Text(f"User: {user}"), Text("Jobs", style="bold"), body]
    if left:
        blocks.append(Text(more_text(left), style="dim"))
    if stale:
        blocks.append(Text(f"(stale): Slurm did not answer; {stale} job(s) show their last known state"))
    return Group(*blocks)
