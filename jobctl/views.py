"""How jobs look: the `--json` document (SPEC section 4) and the Konduktor-style table (section 5)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from typing import Any

from jobctl import states
from jobctl.store import loads

JSON_FIELDS = (
    "id", "name", "state", "status", "reason", "message", "exit_code", "attempt", "max_attempts", "resources",
    "num_nodes", "submitted_at", "started_at", "ended_at", "labels", "backend", "backend_id", "user",
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def job_json(row: sqlite3.Row) -> dict[str, Any]:
    accs = loads(row["accelerators"], [])
    return {
        "id": row["id"],
        "name": row["name"],
        "state": row["state"],
        "status": states.status_text(row["state"], row["detail"]),
        "reason": row["reason"],
        "message": row["message"],
        "exit_code": row["exit_code"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "resources": {
            "cpus": row["cpus"],
            "memory_gib": round(row["memory_mib"] / 1024, 3),
            "accelerators": {name: count for name, count in accs} if accs else None,
        },
        "num_nodes": row["num_nodes"],
        "submitted_at": iso(row["submitted_at"]),
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "labels": loads(row["labels"], {}),
        "backend": row["backend"],
        "backend_id": row["backend_id"],
        "user": row["user"],
    }


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


def duration(row: sqlite3.Row, now: float) -> str:
    if row["started_at"] is None:
        return "-"
    end = row["ended_at"] if row["ended_at"] is not None else now
    secs = max(0, int(end - row["started_at"]))
    hours, rest = divmod(secs, 3600)
    mins, sec = divmod(rest, 60)
    return f"{hours}h {mins}m {sec}s" if hours else (f"{mins}m {sec}s" if mins else f"{sec}s")


def resources_text(num_nodes: int, cpus: float, memory_mib: int, accelerators: list[list[Any]]) -> str:
    from jobctl.units import format_gib

    cpu = f"{cpus:g}"
    parts = [f"{cpu}CPU", f"{format_gib(memory_mib)}GiMEM"]
    if accelerators:
        parts.append(" | ".join(f"{name}:{count}" for name, count in accelerators))
    return f"{num_nodes}x({', '.join(parts)})"


def resources(row: sqlite3.Row) -> str:
    return resources_text(row["num_nodes"], row["cpus"], row["memory_mib"], loads(row["accelerators"], []))


STATE_STYLE = {
    states.CREATED: "dim", states.PENDING: "yellow", states.BLOCKED: "yellow", states.ACTIVE: "green",
    states.FAILING: "red", states.RETRYING: "magenta", states.SUSPENDED: "cyan", states.COMPLETED: "bold green",
    states.FAILED: "bold red", states.KILLED: "red",
}


def status_table(rows: list[sqlite3.Row], user: str, now: float | None = None):
    """The Konduktor-style table as a Rich renderable (a preamble and the table)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for col in ("ID", "NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION"):
        table.add_column(col, no_wrap=col != "NAME", overflow="ellipsis" if col == "NAME" else "fold",
                         max_width=40 if col == "NAME" else None)
    stale = 0
    for row in rows:
        started = row["started_at"] if row["state"] not in (states.PENDING, states.BLOCKED, states.CREATED) else None
        status = states.status_text(row["state"], row["detail"])
        if (row["message"] or "").endswith("showing the last known state"):  # Slurm did not answer
            status, stale = f"{status} (stale)", stale + 1
        table.add_row(
            str(row["id"]), Text(row["name"], overflow="ellipsis", no_wrap=True),
            Text(status, style=STATE_STYLE.get(row["state"], "")),
            resources(row), age(now - row["submitted_at"]), clock(started), clock(row["ended_at"]),
            duration(row, now) if started else "-",
        )
    footer = [Text(f"(stale): Slurm did not answer; {stale} job(s) show their last known state")] if stale else []
    return Group(Text(f"User: {user}"), Text("Jobs", style="bold"), table, *footer)
