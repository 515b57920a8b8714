"""The Usage page: what the machine was used for since a time, summed like `sacct`/`sreport`.

Two views of the period. Held: jobs submitted in the period by state, user and name; CPU-hours as
CPUs held x wall time and GPU-hours as GPUs held x wall time of every attempt (the part of it
inside the period, also split per day); the mean wait from submission to the first start.
Measured (`measured` in /api/usage): what `jobctl stats` sums (SPEC section 11, app/reports.py)
for the jobs submitted in the period: CPU time and GPU time each attempt used, and peak memory.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from html import escape
from typing import TYPE_CHECKING, Any

from jobctl.cli.dashboard.timeline import attempt_devices, on_this_machine, span_end
from jobctl.core import states
from jobctl.store.dashboard import AttemptSpan
from jobctl.store.records import loads

if TYPE_CHECKING:
    from jobctl.app.session import Service


def _gpus(span: AttemptSpan, devices: list[int]) -> int:
    """GPUs an attempt held: the devices it was given here, or what a job elsewhere asked for."""
    if devices:
        return len(devices)
    accs = loads(span.job.accelerators, [])
    return int(accs[0][1]) * span.job.num_nodes if accs and not on_this_machine(span) else 0


def compute(service: Service, since_seconds: float, now: float | None = None) -> dict[str, Any]:
    """The usage document of the last `since_seconds` (served as /api/usage)."""
    now = time.time() if now is None else now
    since = now - since_seconds
    by_state: dict[str, int] = {s: 0 for s in states.ALL_STATES}
    users: dict[str, dict[str, float]] = {}
    names: dict[str, dict[str, float]] = {}
    waited, started = 0.0, 0
    for count in service.store.jobs_since(since):
        by_state[count.state] = by_state.get(count.state, 0) + count.jobs
        for table, key in ((users, count.user), (names, count.name)):
            entry = table.setdefault(key, {"jobs": 0, "cpu_hours": 0.0, "gpu_hours": 0.0})
            entry["jobs"] += count.jobs
        waited += count.waited
        started += count.started
    days: dict[str, dict[str, float]] = {}
    day = dt.datetime.fromtimestamp(since).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() <= now:
        days[day.strftime("%m/%d")] = {"cpu_hours": 0.0, "gpu_hours": 0.0}
        day += dt.timedelta(days=1)
    cpu_total = gpu_total = 0.0
    for span in service.store.attempts_between(since, now):
        end, _ = span_end(span, now)
        begin = max(span.started_at, since)
        if end <= begin:
            continue
        _, devices = attempt_devices(span, service.paths.attempt_dir(span.job.id, span.attempt.n))
        cpus = span.job.cpus * span.job.num_nodes
        gpus = _gpus(span, devices)
        cpu_total += cpus * (end - begin) / 3600
        gpu_total += gpus * (end - begin) / 3600
        for table, key in ((users, span.job.user), (names, span.job.name)):
            entry = table.setdefault(key, {"jobs": 0, "cpu_hours": 0.0, "gpu_hours": 0.0})
            entry["cpu_hours"] += cpus * (end - begin) / 3600
            entry["gpu_hours"] += gpus * (end - begin) / 3600
        # split over local days
        t = begin
        while t < end:
            moment = dt.datetime.fromtimestamp(t)
            next_day = (moment.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)).timestamp()
            piece = min(end, next_day) - t
            bucket = days.setdefault(moment.strftime("%m/%d"), {"cpu_hours": 0.0, "gpu_hours": 0.0})
            bucket["cpu_hours"] += cpus * piece / 3600
            bucket["gpu_hours"] += gpus * piece / 3600
            t = min(end, next_day)

    def rounded(table: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
        rows = [
            {
                "key": k,
                "jobs": int(v["jobs"]),
                "cpu_hours": round(v["cpu_hours"], 4),
                "gpu_hours": round(v["gpu_hours"], 4),
            }
            for k, v in table.items()
        ]
        return sorted(rows, key=lambda r: (-r["gpu_hours"], -r["cpu_hours"], -r["jobs"], r["key"]))

    total = sum(by_state.values())
    from jobctl.app.reports import stats

    measured = stats(service.store, since, "user")  # what the attempts used, as `jobctl stats --by user`
    peaks = [g.peak_memory_bytes for g in measured if g.peak_memory_bytes is not None]
    return {
        "since": dt.datetime.fromtimestamp(since).astimezone().isoformat(timespec="seconds"),
        "until": dt.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
        "source": "attempts",  # CPUs and GPUs held x wall time; not measured use (see SPEC section 11)
        "jobs": total,
        "completed": by_state.get(states.COMPLETED, 0),
        "failed": by_state.get(states.FAILED, 0),
        "killed": by_state.get(states.KILLED, 0),
        "by_state": {k: v for k, v in by_state.items() if v},
        "cpu_hours": round(cpu_total, 4),
        "gpu_hours": round(gpu_total, 4),
        "mean_wait_seconds": round(waited / started, 1) if started else None,
        "per_day": [
            {"day": k, "cpu_hours": round(v["cpu_hours"], 4), "gpu_hours": round(v["gpu_hours"], 4)}
            for k, v in days.items()
        ],
        "by_user": rounded(users),
        "by_name": rounded(names)[:15],
        "measured": {
            "cpu_hours": round(sum(g.cpu_seconds for g in measured) / 3600, 4),
            "gpu_hours": round(sum(g.gpu_seconds for g in measured) / 3600, 4),
            "peak_memory_bytes": max(peaks) if peaks else None,
            "by_user": [g.as_json("user") for g in measured],
        },
    }


# -- charts --------------------------------------------------------------------------------------
def _hbars(rows: list[tuple[str, float, str]], unit: str, aria: str) -> str:
    """Horizontal bars: (label, value, css class) per row."""
    if not rows:
        return '<p class="empty">nothing in this period</p>'
    width, label_w, row_h = 640, 170, 22
    top = max((v for _, v, _ in rows), default=0) or 1
    height = row_h * len(rows) + 6
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" role="img" aria-label="{escape(aria)}">'
    ]
    for i, (label, value, cls) in enumerate(rows):
        y = i * row_h + 3
        w = (width - label_w - 90) * value / top
        shown = label if len(label) <= 24 else label[:23] + "…"
        out.append(f'<text class="axis-label" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(shown)}</text>')
        out.append(
            f'<rect class="{cls}" x="{label_w}" y="{y}" width="{max(w, 1 if value else 0):.1f}" height="{row_h - 6}">'
            f"<title>{escape(label)}: {escape(_num(value))} {escape(unit)}</title></rect>"
        )
        out.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 14}">{escape(_num(value))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _num(value: float) -> str:
    """12, 3.5, 0.25, 0.00123: whole numbers as they are, else three significant digits."""
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"


def _day_bars(per_day: list[dict[str, Any]]) -> str:
    """CPU-hours and GPU-hours per day, side by side."""
    width, height, left, bottom = 720, 220, 48, 28
    top_value = max([d["cpu_hours"] for d in per_day] + [d["gpu_hours"] for d in per_day] + [0]) or 1
    scale = (height - bottom - 12) / top_value
    slot = (width - left - 8) / max(1, len(per_day))
    bar_w = max(2.0, min(24.0, slot / 2 - 3))
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        'role="img" aria-label="CPU-hours and GPU-hours per day">'
    ]
    for frac in (0, 0.5, 1):
        y = height - bottom - frac * top_value * scale
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="axis-label" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_num(frac * top_value)}</text>'
        )
    every = max(1, math.ceil(len(per_day) / 12))
    for i, d in enumerate(per_day):
        x = left + i * slot + 2
        for j, (key, cls) in enumerate((("cpu_hours", "cpu"), ("gpu_hours", "gpu"))):
            h = d[key] * scale
            out.append(
                f'<rect class="{cls}" x="{x + j * (bar_w + 2):.1f}" y="{height - bottom - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"><title>{escape(d["day"])}: {escape(_num(d[key]))} {key.split("_")[0].upper()}-hours'
                "</title></rect>"
            )
        if i % every == 0:
            out.append(f'<text class="axis-label" x="{x:.1f}" y="{height - 10}">{escape(d["day"])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def html(doc: dict[str, Any]) -> str:
    """The Usage page's body: totals, then the charts."""
    from jobctl.app.reports import bytes_text
    from jobctl.cli.views import age

    wait = "-" if doc["mean_wait_seconds"] is None else age(doc["mean_wait_seconds"])
    if doc["mean_wait_seconds"] is not None and doc["mean_wait_seconds"] < 60:
        wait = f"{doc['mean_wait_seconds']:.1f} s"
    totals = [
        ("Jobs", str(doc["jobs"])),
        ("Completed", str(doc["completed"])),
        ("Failed", str(doc["failed"])),
        ("Killed", str(doc["killed"])),
        ("CPU-hours", _num(doc["cpu_hours"])),
        ("GPU-hours", _num(doc["gpu_hours"])),
        ("Mean wait", wait),
    ]
    measured = doc.get("measured")
    if measured:  # what the attempts used (jobctl stats), beside what they held
        totals += [
            ("CPU-hours used", _num(measured["cpu_hours"])),
            ("GPU-hours used", _num(measured["gpu_hours"])),
            ("Peak memory", bytes_text(measured["peak_memory_bytes"])),
        ]
    cards = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>' for k, v in totals
    )
    states_rows = [(s, float(n), f"st-{s}") for s, n in doc["by_state"].items()]
    users = [(r["key"], r["cpu_hours"], "cpu") for r in doc["by_user"]]
    users_gpu = [(r["key"], r["gpu_hours"], "gpu") for r in doc["by_user"] if r["gpu_hours"]]
    names = [(r["key"], r["cpu_hours"], "cpu") for r in doc["by_name"]]
    return (
        f'<div class="cards">{cards}</div>'
        "<h2>Jobs submitted, by state</h2>"
        + _hbars(states_rows, "jobs", "jobs by state")
        + '<h2>CPU-hours and GPU-hours per day</h2><p class="legend"><span class="swatch cpu"></span> CPU-hours '
        '<span class="swatch gpu"></span> GPU-hours</p>'
        + _day_bars(doc["per_day"])
        + "<h2>CPU-hours by user</h2>"
        + _hbars(users, "CPU-hours", "CPU-hours by user")
        + ("<h2>GPU-hours by user</h2>" + _hbars(users_gpu, "GPU-hours", "GPU-hours by user") if users_gpu else "")
        + "<h2>CPU-hours by job name (top 15)</h2>"
        + _hbars(names, "CPU-hours", "CPU-hours by name")
        + '<p class="note">CPU-hours and GPU-hours are what attempts held (CPUs or GPUs x wall time), '
        "not measured use.</p>"
    )
