"""What this machine offers jobs: CPUs, memory and accelerator devices.

Detected (os.cpu_count, psutil, `nvidia-smi`), each overridable under `[capacity]` in
config.toml, so GPUs can be declared on a machine without them (their indices are 0..n-1).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from jobctl.core.resources import Capacity
from jobctl.home.config import Config


def detect_gpus() -> dict[str, tuple[int, ...]]:
    """NVIDIA GPUs by model, with their indices, from `nvidia-smi`; {} when there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, list[int]] = {}
    for line in out.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            found.setdefault(gpu_model(name), []).append(int(index))
    return {model: tuple(indices) for model, indices in found.items()}


def gpu_model(full_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100'; 'Tesla V100-SXM2-16GB' -> 'V100'; 'NVIDIA A100-SXM4-80GB' -> 'A100'."""
    words = [w for w in full_name.replace("-", " ").split() if w.upper() not in ("NVIDIA", "TESLA", "GEFORCE")]
    return words[0].upper() if words else "GPU"


def detect(config: Config, *, with_gpus: bool = True) -> Capacity:
    from jobctl.core.units import parse_memory

    cpus = config.get("capacity.cpus") or float(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    memory = config.get("capacity.memory")
    if memory is not None:
        memory_mib = parse_memory(memory, where_key="capacity.memory")
    else:
        memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    declared = config.get("capacity.accelerators")
    if declared is not None:
        devices = {name: tuple(range(count)) for name, count in declared.items() if count > 0}
    else:
        devices = detect_gpus() if with_gpus else {}
    return Capacity(cpus=float(cpus), memory_mib=int(memory_mib), devices=devices)
