"""The sweep scenario of benchmarks/run.py (`--only sweep`): one `--array` of many `true` tasks.

- `launch FILE --array N` (wall, supervisor running, 2 CPU slots): budget under 2 s for 10,000;
- `status` (arrays collapsed to one row, SPEC section 9) while the tasks wait, interleaved with the
  minimal Typer app (benchmarks/floor_app.py) in shuffled rounds: budget 1.25x the floor;
- the drain after those rounds (all the tasks left, or a given number), as jobs per second,
  against the 500-job throughput run when it ran in the same invocation (same rate expected);
- the supervisor's RSS, sampled all along (peak): budget under 100 MB.

The harness (Home, Report, timed, ...) is passed in as a module, since run.py runs as __main__.
"""

from __future__ import annotations

import random
import time
from types import ModuleType
from typing import Any

import psutil


def bench_sweep(h: ModuleType, report: Any, n: int, rounds: int, drain: int | None = None) -> None:
    """`drain`: how many tasks to time once the status rounds are over (None: all that are left, to the
    end; 0: none, the rest is killed)."""
    h.log(f"sweep: a {n:,}-task array of `true` on 2 slots; status vs floor, {rounds} interleaved rounds")
    home = h.Home(f"sweep-{n}")
    home.configure(capacity__cpus="2", supervisor__idle_exit='"30m"')
    sup = psutil.Process(home.start_supervisor())
    peak = [sup.memory_info().rss]

    def sample() -> None:
        try:
            peak[0] = max(peak[0], sup.memory_info().rss)
        except psutil.Error:
            pass

    path = home.job_file("t", h.TRUE_JOB.format(name="t"))
    home.jc("launch", path, "--array", str(n), "--dry-run")  # untimed: the bytecode cache is warm, as installed
    c0 = sup.cpu_times()
    launch_wall, _, _ = h.timed([*h.JOBCTL, "launch", path, "--array", str(n)], home.env)
    sample()
    cases = [("floor", h.FLOOR, dict(h.os.environ)), ("status", [*h.JOBCTL, "status"], home.env)]
    wall: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    waiting: list[int] = []
    rng = random.Random(3)
    for _ in range(rounds + 1):  # the first round warms the caches and is not counted
        order = cases[:]
        rng.shuffle(order)
        for label, cmd, env in order:
            w, _, proc = h.timed(cmd, env)
            if label == "status" and "t[0-" not in proc.stdout:
                raise RuntimeError(f"status does not show the array as one row: {proc.stdout[:300]!r}")
            wall[label].append(w)
            sample()
        waiting.append(home.count("state = 'PENDING'"))
    for values in wall.values():
        del values[0]
    elapsed, timed = None, 0
    c1 = sup.cpu_times()
    if drain != 0:
        start, c_start = time.perf_counter(), home.count(f"state IN {h.TERMINAL}")
        timed = n - c_start if drain is None else min(drain, n - c_start)
        c1 = sup.cpu_times()
        deadline = time.monotonic() + 3600
        while home.count(f"state IN {h.TERMINAL}") < c_start + timed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{home.path}: the sweep did not drain in an hour")
            sample()
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        bad = home.count(f"state IN {h.TERMINAL} AND state != 'COMPLETED'")
        if bad:
            raise RuntimeError(f"{bad} of {n} tasks did not complete ({home.path})")
    sample()
    c2 = sup.cpu_times()
    med = {k: h.median(v) for k, v in wall.items()}
    ratio = med["status"] / med["floor"]
    report.add(
        "2 Throughput",
        f"`launch --array {n:,}` of `true` (wall, supervisor running)",
        h.secs(launch_wall),
        "",
        "",
        "< 2 s",
        h.verdict(launch_wall < 2.0),
    )
    report.add(
        "1 CLI latency",
        f"`status` while ~{min(waiting):,} tasks of one array wait (collapsed to one row)",
        h.ms(med["status"]),
        f"{h.ms(med['floor'])} (minimal Typer app)",
        f"{ratio:.2f}×",
        "≤ 1.25×",
        h.verdict(ratio <= 1.25),
    )
    rate_500 = getattr(h, "THROUGHPUT_RATE", None)
    if elapsed is not None:
        rate = timed / elapsed
        report.add(
            "2 Throughput",
            f"{n:,}-task array: {timed:,} tasks drained after the status rounds (2 slots)",
            f"{elapsed:.1f} s ({rate:.0f} jobs/s)",
            f"{rate_500:.0f} jobs/s (500 jobs, same run)" if rate_500 else "",
            f"{rate / rate_500:.2f}×" if rate_500 else "",
            "same rate as 500",
            h.verdict(rate >= 0.8 * rate_500) if rate_500 else "info",
        )
    report.add(
        "5 Supervisor",
        f"RSS during the {n:,}-task sweep (peak of samples)",
        f"{peak[0] / 2**20:.1f} MiB",
        "",
        "",
        "< 100 MB",
        h.verdict(peak[0] < 100e6),
    )
    launch_cpu = c1.user + c1.system - c0.user - c0.system  # the launch and the status rounds, while tasks ran
    cpu = (c2.user + c2.system - c1.user - c1.system) / max(timed, 1) * 1000
    report.detail(
        "\n".join(
            [
                f"### Sweep: {n:,} `true` tasks in one array, 2 slots",
                "",
                f"- `launch --array {n:,}`: {launch_wall:.2f} s.",
                f"- `status` ({rounds} rounds, interleaved with the floor): median {h.ms(med['status'])} against "
                f"{h.ms(med['floor'])}; tasks waiting during the rounds: {max(waiting):,} → {min(waiting):,}.",
                (
                    f"- {timed:,} tasks drained in {elapsed:.1f} s ({timed / elapsed:.0f} jobs/s) with the rest "
                    f"still queued; supervisor CPU {cpu:.1f} ms per job ({launch_cpu:.1f} s before, during the "
                    "launch and the status rounds)."
                    if elapsed is not None
                    else "- drain not measured (the tasks were killed)."
                ),
                f"- supervisor RSS peak {peak[0] / 2**20:.1f} MiB.",
            ]
        )
    )
    home.cleanup()
