"""The Timeline page: which attempt held which GPU and which CPU slot, drawn as an SVG Gantt chart.

Lanes: one per GPU of the machine (declared in `capacity.accelerators` or found by nvidia-smi),
then one per CPU slot (`capacity.cpus`, rounded up), then one per Slurm job. An attempt is a bar
on each GPU it held (its devices: the job's allocation while it runs, the attempt's plan.json
after) and on as many CPU slots as it held CPUs. CPUs are a count, not pinned cores, so CPU slots
are assigned here: each attempt takes the lowest-numbered slots free when it started, and a
further slot is added when more were busy than the capacity says (a capacity changed meanwhile).
A bar never overlaps another on its lane.

Bars are coloured as the STATUS column of the terminal table: a job's last attempt by the job's
state, an earlier one by how it ended (a preempted or released attempt as SUSPENDED, a failed one
as FAILED), so retries and preemptions show as bars of another colour before the last one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobctl.core import states
from jobctl.engine.backends import backend_class
from jobctl.store.dashboard import AttemptSpan
from jobctl.store.records import loads

if TYPE_CHECKING:
    from jobctl.app.session import Service

RANGES = {"5m": 300.0, "hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
# how an earlier attempt ended -> the state its bar is coloured as
OUTCOME_STATE = {
    "completed": states.COMPLETED,
    "preempted": states.SUSPENDED,
    "released": states.SUSPENDED,
    "killed": states.KILLED,
}


@dataclass
class Lane:
    key: str  # gpu:H100:0, cpu:3, slurm:12
    label: str
    kind: str  # gpu, cpu, slurm


@dataclass
class Bar:
    lane: str
    job_id: int
    name: str
    attempt: int
    start: float
    end: float
    state: str  # the colour
    status: str  # what the title says
    running: bool


@dataclass
class Timeline:
    start: float
    end: float
    range: str
    lanes: list[Lane]
    bars: list[Bar]

    def document(self) -> dict[str, Any]:
        return {
            "range": self.range,
            "start": self.start,
            "end": self.end,
            "lanes": [asdict(lane) for lane in self.lanes],
            "bars": [asdict(bar) for bar in self.bars],
        }


def attempt_devices(span: AttemptSpan, attempt_dir: Path) -> tuple[str | None, list[int]]:
    """(accelerator, device indices) an attempt held: the job's allocation for its current attempt,
    else what the runner was given (plan.json: JOBCTL_ACCELERATORS of each rank). A file that is
    not what the runner writes counts as no devices."""
    held = loads(span.job.alloc) if span.attempt.n == span.job.attempt else None
    if isinstance(held, dict) and held:
        devices = held.get("devices") or []
        if isinstance(devices, list) and all(isinstance(d, int) for d in devices):
            return held.get("accelerator"), devices
    if not on_this_machine(span):
        return None, []
    from jobctl.backends.local.runner import BadStateFile, read_json

    try:
        plan = read_json(attempt_dir / "plan.json") or {}
    except BadStateFile:
        return None, []
    model, found = None, []
    rank_env = plan.get("rank_env")
    for env in rank_env if isinstance(rank_env, list) else []:
        text = env.get("JOBCTL_ACCELERATORS") if isinstance(env, dict) else None
        if not isinstance(text, str) or ":" not in text:
            continue
        name, _, ids = text.rpartition(":")
        for part in ids.split(","):
            if part.strip().isdigit():
                model = name
                found.append(int(part))
    return model, sorted(set(found))


def on_this_machine(span: AttemptSpan) -> bool:
    """Whether the attempt ran here, on this home's CPUs and GPUs (its backend's jobs are run by
    this home's supervisor), rather than elsewhere (a Slurm job: one lane of its own)."""
    return backend_class(span.job.backend).supervised


def span_end(span: AttemptSpan, now: float) -> tuple[float, bool]:
    """When an attempt ended (or now, and True, while it runs)."""
    if span.attempt.ended_at is not None:
        return span.attempt.ended_at, False
    if span.attempt.n == span.job.attempt and span.job.alloc is None and span.job.state in states.TERMINAL:
        return span.job.ended_at or now, False  # ended, and nothing holds resources any more
    if span.attempt.n != span.job.attempt:
        return span.started_at, False  # an old attempt without an end: nothing to draw
    return now, True


def span_state(span: AttemptSpan) -> tuple[str, str]:
    """(state for the colour, status text) of one attempt's bar."""
    if span.attempt.n == span.job.attempt:
        return span.job.state, states.status_text(span.job.state, span.job.detail)
    outcome = span.attempt.outcome or "ended"
    state = OUTCOME_STATE.get(outcome, states.FAILED)
    # the exit code of a failure; a preempted, released or killed attempt's (143: SIGTERM) says nothing
    code = (
        f", exit {span.attempt.exit_code}" if state == states.FAILED and span.attempt.exit_code not in (None, 0) else ""
    )
    return state, f"attempt {span.attempt.n} {outcome.replace('_', ' ')}{code}"


def build(service: Service, range_name: str, now: float | None = None) -> Timeline:
    """The lanes and bars of the last hour, day or week (`range_name`)."""
    from jobctl.backends.local.capacity import detect

    now = time.time() if now is None else now
    start = now - RANGES[range_name]
    capacity = detect(service.config)
    lanes: list[Lane] = []
    for model, indices in sorted(capacity.devices.items()):
        lanes += [Lane(f"gpu:{model}:{i}", f"GPU {i} ({model})", "gpu") for i in indices]
    cpu_slots = max(1, math.ceil(capacity.cpus))
    lanes += [Lane(f"cpu:{i}", f"CPU {i}", "cpu") for i in range(cpu_slots)]
    known = {lane.key for lane in lanes}
    spans = service.store.attempts_between(start, now)
    bars: list[Bar] = []
    slot_free: list[float] = [-math.inf] * cpu_slots  # when each CPU slot is free again
    for span in spans:
        end, running = span_end(span, now)
        if end <= span.started_at and not running:
            continue
        state, status = span_state(span)

        def bar(lane: str, span: AttemptSpan = span, end: float = end) -> Bar:
            return Bar(lane, span.job.id, span.job.name, span.attempt.n, span.started_at, end, state, status, running)

        if not on_this_machine(span):
            key = f"slurm:{span.job.id}"
            if key not in known:
                known.add(key)
                lanes.append(Lane(key, f"Slurm job {span.job.id}", "slurm"))
            bars.append(bar(key))
            continue
        held, devices = attempt_devices(span, service.paths.attempt_dir(span.job.id, span.attempt.n))
        model = held or "GPU"
        for device in devices:
            key = f"gpu:{model}:{device}"
            if key not in known:  # a GPU no longer declared: it still gets its lane
                known.add(key)
                gpu_lanes = [i for i, lane in enumerate(lanes) if lane.kind == "gpu"]
                lanes.insert(gpu_lanes[-1] + 1 if gpu_lanes else 0, Lane(key, f"GPU {device} ({model})", "gpu"))
            bars.append(bar(key))
        wanted = max(1, math.ceil(span.job.cpus * span.job.num_nodes - 1e-9))
        free = [i for i, at in enumerate(slot_free) if at <= span.started_at][:wanted]
        while len(free) < wanted:  # busier than the capacity: one more lane
            slot_free.append(-math.inf)
            free.append(len(slot_free) - 1)
            key = f"cpu:{len(slot_free) - 1}"
            cpu_index = max(i for i, lane in enumerate(lanes) if lane.kind == "cpu")
            lanes.insert(cpu_index + 1, Lane(key, f"CPU {len(slot_free) - 1}", "cpu"))
            known.add(key)
        for slot in free:
            slot_free[slot] = end if not running else math.inf
            bars.append(bar(f"cpu:{slot}"))
    return Timeline(start, now, range_name, lanes, _no_overlap(bars))


def _no_overlap(bars: list[Bar]) -> list[Bar]:
    """On each lane, a bar starts no earlier than the one before it ends (two records a moment
    apart, such as a runner's clock and the next start, are never drawn on top of each other)."""
    by_lane: dict[str, list[Bar]] = {}
    for b in bars:
        by_lane.setdefault(b.lane, []).append(b)
    out: list[Bar] = []
    for lane_bars in by_lane.values():
        lane_bars.sort(key=lambda b: (b.start, b.end))
        last_end = -math.inf
        for b in lane_bars:
            if b.start < last_end:
                b.start = last_end
            if b.end < b.start:
                b.end = b.start
            last_end = max(last_end, b.end)
            out.append(b)
    return out


# -- drawing -------------------------------------------------------------------------------------
WIDTH = 1200
LABEL_W = 150
LANE_H = 24
TOP = 28
TICKS = {"5m": 60.0, "hour": 600.0, "day": 7200.0, "week": 86400.0}


def _x(t: float, tl: Timeline) -> float:
    return LABEL_W + (t - tl.start) / (tl.end - tl.start) * (WIDTH - LABEL_W - 10)


def _clock(ts: float, range_name: str) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(ts)
    return moment.strftime("%a %m/%d") if range_name == "week" else moment.strftime("%I:%M%p")


def svg(tl: Timeline) -> str:
    """The chart as one SVG element; every text in it is escaped."""
    height = TOP + LANE_H * max(1, len(tl.lanes)) + 10
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="Timeline of the last {escape(tl.range)}">'
    ]
    step = TICKS[tl.range]
    import datetime as dt

    first = dt.datetime.fromtimestamp(tl.start)
    if tl.range == "week":
        tick = first.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    else:
        tick = math.ceil(tl.start / step) * step
    while tick < tl.end:
        x = _x(tick, tl)
        out.append(f'<line class="tick" x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{height - 10}"/>')
        out.append(f'<text class="tick-label" x="{x:.1f}" y="{TOP - 10}">{escape(_clock(tick, tl.range))}</text>')
        tick += step
    lane_y: dict[str, int] = {}
    for i, lane in enumerate(tl.lanes):
        y = TOP + i * LANE_H
        lane_y[lane.key] = y
        out.append(
            f'<rect class="lane lane-{lane.kind}{" odd" if i % 2 else ""}" x="0" y="{y}" width="{WIDTH}" height="{LANE_H}"/>'
        )
        out.append(f'<text class="lane-label" x="6" y="{y + LANE_H - 8}">{escape(lane.label)}</text>')
    by_lane: dict[str, list[Bar]] = {}
    for b in tl.bars:
        by_lane.setdefault(b.lane, []).append(b)
    for lane_key, lane_bars in by_lane.items():
        if lane_key not in lane_y:
            continue
        y = lane_y[lane_key]
        lane_bars.sort(key=lambda b: b.start)
        for i, b in enumerate(lane_bars):
            # in the units written (1/100 px), so that x + width never reaches into the next bar
            x0 = round(_x(max(b.start, tl.start), tl), 2)
            x1 = round(_x(min(b.end, tl.end), tl), 2)
            nxt = lane_bars[i + 1].start if i + 1 < len(lane_bars) else tl.end
            limit = round(_x(min(nxt, tl.end), tl), 2)
            x1 = min(max(x1, x0 + 2), max(limit, x0))  # at least 2 px wide, never into the next bar
            width = round(max(0.0, x1 - x0), 2)
            if x0 + width > limit:
                width = round(max(0.0, width - 0.01), 2)
            title = f"{b.name} (job {b.job_id}), attempt {b.attempt}: {b.status}; {_span_text(b)}"
            classes = f"bar st-{b.state}" + (" running" if b.running else "")
            out.append(
                f'<a href="/job/{b.job_id}" class="bar-link">'
                f'<rect class="{classes}" x="{x0:.2f}" y="{y + 3}" width="{width:.2f}" height="{LANE_H - 6}" '
                f'data-lane="{escape(b.lane)}" data-job="{b.job_id}" data-attempt="{b.attempt}" '
                f'data-start="{b.start:.3f}" data-end="{b.end:.3f}" data-state="{b.state}">'
                f"<title>{escape(title)}</title></rect>"
            )
            if width > 40:
                label = b.name if len(b.name) * 7 < width - 8 else b.name[: max(1, int((width - 8) / 7) - 1)] + "…"
                out.append(f'<text class="bar-label" x="{x0 + 4:.1f}" y="{y + LANE_H - 8}">{escape(label)}</text>')
            out.append("</a>")
    now_x = _x(tl.end, tl)
    out.append(f'<line class="now" x1="{now_x:.1f}" y1="{TOP - 6}" x2="{now_x:.1f}" y2="{height - 10}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _span_text(b: Bar) -> str:
    from jobctl.cli.views import clock_seconds

    end = "running" if b.running else clock_seconds(b.end)
    return f"{clock_seconds(b.start)} to {end}"
