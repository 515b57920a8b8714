"""What one attempt used (SPEC section 11), measured by its runner.

- CPU: `getrusage(RUSAGE_CHILDREN)` of the runner, the exact user + system time of every process of
  the tree once it is reaped (each parent adds its waited-for children; the runner is a subreaper, so
  orphans are reaped, and counted, here). Where the attempt has a cgroup v2 with `cpu.stat`, its
  `usage_usec` is used when larger (processes whose parents never waited for them), less the
  runner's own CPU time.
- Peak memory: the memory cgroup's peak where there is one and it is this attempt's own
  (`memory.max_usage_in_bytes` is reset when a v1 cgroup is claimed; a reused v2 cgroup's
  `memory.peak` counts only when it rose above what it was at the claim), and then nothing is
  sampled. Otherwise the larger of the tree's summed RSS, sampled by the runner once a second
  from the first second on, and the largest single process's peak RSS from `wait4` as the runner
  reaps each process (exact, also for a process that lived less than a sample).
- GPUs: gpu_seconds = devices held x wall time; with `nvidia-smi`, utilisation and memory of the
  held devices sampled every `GPU_SAMPLE_EVERY` seconds (`gpu_util_avg`, `gpu_memory_max_bytes`).

The result goes into result.json (`usage`), written atomically with the attempt's outcome.
"""

from __future__ import annotations

import contextlib
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobctl.backends.local.plan import RunnerPlan

SAMPLE_EVERY = 1.0  # seconds between samples of the tree's RSS
GPU_SAMPLE_EVERY = 5.0
NVIDIA_SMI_TIMEOUT = 5.0
MIB = 1024 * 1024


def _children_times() -> tuple[float, int]:
    """(user + system seconds, peak RSS bytes of the largest single process) of reaped descendants."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024  # Linux: ru_maxrss in KiB


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def parse_nvidia_smi(text: str) -> dict[int, tuple[float | None, int | None]]:
    """`nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader[,nounits]`
    -> {index: (utilisation %, memory used in bytes)}. Values such as `[N/A]` or `[Not Supported]`
    are None; a header line and blank or malformed lines are skipped."""
    found: dict[int, tuple[float | None, int | None]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        util = _number(cells[1].removesuffix("%").strip())
        mem = cells[2]
        factor = MIB
        for unit, size in (("KiB", 1024), ("MiB", MIB), ("GiB", 1024 * MIB)):
            if mem.endswith(unit):
                mem, factor = mem[: -len(unit)].strip(), size
                break
        used = _number(mem)
        found[int(cells[0])] = (util, None if used is None else int(used * factor))
    return found


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


class UsageMeter:
    """Measures one attempt from inside its runner (see the module docstring)."""

    def __init__(self, devices: list[str], cgroup: Any = None):
        self.devices = devices  # the GPU indices the attempt holds (CUDA_VISIBLE_DEVICES)
        self.cgroup = cgroup
        self.started = time.monotonic()
        self.cpu_base, _ = _children_times()
        self.self_cpu_base = _self_cpu()
        self.cg_cpu_base = cgroup_cpu_seconds(cgroup)
        self.cg_peak_base = cgroup_peak_bytes(cgroup)
        self.max_tree_rss = 0
        # The cgroup's peak is exact where it is this attempt's own: then no sampling at all (a v2
        # cgroup reused from an earlier attempt keeps that one's peak, so there the tree is sampled).
        own_peak = cgroup is not None and (cgroup.version == 1 or self.cg_peak_base == 0)
        self.next_sample = float("inf") if own_peak else self.started + SAMPLE_EVERY
        self.nvidia_smi: str | None = None
        if devices:
            import shutil

            self.nvidia_smi = shutil.which("nvidia-smi")
        self.next_gpu_sample = 0.0
        self.gpu_util: list[float] = []
        self.gpu_mem_max: int | None = None

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now >= self.next_sample or (self.nvidia_smi is not None and now >= self.next_gpu_sample)

    def sample(self, procs: list[Any], now: float | None = None) -> None:
        """Add the RSS of the tree's processes (psutil.Process objects), at most once a SAMPLE_EVERY."""
        now = time.monotonic() if now is None else now
        if now >= self.next_sample:
            self.next_sample = now + SAMPLE_EVERY
            total = 0
            for proc in procs:
                with contextlib.suppress(Exception):
                    total += proc.memory_info().rss
            self.max_tree_rss = max(self.max_tree_rss, total)
        if self.nvidia_smi and now >= self.next_gpu_sample:
            self.next_gpu_sample = now + GPU_SAMPLE_EVERY
            self.sample_gpus()

    def sample_gpus(self) -> None:
        import subprocess

        try:
            out = subprocess.run(
                [
                    str(self.nvidia_smi),
                    "--query-gpu=index,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-i",
                    ",".join(self.devices),
                ],
                capture_output=True,
                text=True,
                timeout=NVIDIA_SMI_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            self.nvidia_smi = None  # does not answer: stop asking
            return
        values = parse_nvidia_smi(out.stdout)
        utils = [u for u, _ in values.values() if u is not None]
        mems = [m for _, m in values.values() if m is not None]
        if utils:
            self.gpu_util.append(sum(utils) / len(utils))
        if mems:
            self.gpu_mem_max = max(self.gpu_mem_max or 0, sum(mems))

    def result(self, wall_seconds: float | None = None, reaped_peak: int | None = None) -> dict[str, Any]:
        """`reaped_peak`: the largest peak RSS of the processes the runner reaped in this attempt (from
        wait4); without it, getrusage's, which is the largest of every child this process ever had."""
        wall = time.monotonic() - self.started if wall_seconds is None else wall_seconds
        cpu_total, child_peak = _children_times()
        if reaped_peak is not None:
            child_peak = reaped_peak
        cpu = cpu_total - self.cpu_base
        cg_cpu = cgroup_cpu_seconds(self.cgroup)
        if cg_cpu is not None and self.cg_cpu_base is not None:
            cg_delta = cg_cpu - self.cg_cpu_base - (_self_cpu() - self.self_cpu_base)
            cpu = max(cpu, cg_delta)
        peak = max(self.max_tree_rss, child_peak)
        cg_peak = cgroup_peak_bytes(self.cgroup)
        if cg_peak is not None and self.cgroup is not None:
            own = self.cgroup.version == 1 or self.cg_peak_base is None or cg_peak > self.cg_peak_base
            if own and cg_peak > 0:
                peak = cg_peak
        usage: dict[str, Any] = {
            "wall_seconds": round(max(wall, 0.0), 3),
            "cpu_seconds": round(max(cpu, 0.0), 3),
            "max_rss_bytes": int(peak),
            "gpu_seconds": round(len(self.devices) * max(wall, 0.0), 3),
        }
        if self.gpu_util:
            usage["gpu_util_avg"] = round(sum(self.gpu_util) / len(self.gpu_util), 1)
        if self.gpu_mem_max is not None:
            usage["gpu_memory_max_bytes"] = self.gpu_mem_max
        return usage


def cgroup_cpu_seconds(cgroup: Any) -> float | None:
    """A cgroup v2's `cpu.stat` usage_usec in seconds (None: v1, or not readable)."""
    if cgroup is None or cgroup.version != 2:
        return None
    try:
        for line in (Path(cgroup.path) / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        pass
    return None


def cgroup_peak_bytes(cgroup: Any) -> int | None:
    if cgroup is None:
        return None
    name = "memory.max_usage_in_bytes" if cgroup.version == 1 else "memory.peak"
    try:
        return int((Path(cgroup.path) / name).read_text())
    except (OSError, ValueError):
        return None


def devices_of(plan: RunnerPlan) -> list[str]:
    """The GPU indices an attempt holds, from its workers' CUDA_VISIBLE_DEVICES."""
    found: list[str] = []
    for env in plan.rank_env:
        for device in str((env or {}).get("CUDA_VISIBLE_DEVICES", "")).split(","):
            device = device.strip()
            if device and device not in found:
                found.append(device)
    return found
