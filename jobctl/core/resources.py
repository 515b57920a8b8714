"""Resources: what a job asks for, what it holds, what a machine has, and whether a request could
ever fit (`never_fits`). Pure, like the scheduler (`jobctl/core/scheduler.py`) that builds on it;
`launch` needs only this part, to refuse a job that no machine state would let start.
"""

from collections.abc import Iterable
from typing import NamedTuple

from jobctl.core.models import MIB_PER_GIB
from jobctl.core.units import count_text

EPS = 1e-6  # CPU counts are floats: tolerate rounding when comparing them

Option = tuple[str | None, int]  # an accelerator alternative (name, device count); (None, 0): none


class Capacity(NamedTuple):
    cpus: float
    memory_mib: int
    devices: dict[str, tuple[int, ...]]  # accelerator name -> device indices


class Request(NamedTuple):
    """A job waiting to start (PENDING, or SUSPENDED by the system after preemption)."""

    job_id: int
    priority: int  # higher first
    order: float  # submission time; older (smaller) first; ties broken by job_id
    cpus: float  # total for the job (all nodes)
    memory_mib: int  # total
    accelerators: tuple[tuple[str, int], ...] = ()  # alternatives ("any one of these"); (): none
    limit: float | None = None  # once started, it ends within this many seconds; None: unknown
    queue: str = "default"  # its named queue (SPEC section 9); see QueueLimit
    group: int | None = None  # its array (the array's first job ID), for the array's throttle
    user: str | None = None  # who launched it (fair share and per-user caps: see UserPolicy)


class Running(NamedTuple):
    """A job holding resources now."""

    job_id: int
    priority: int
    order: float
    cpus: float
    memory_mib: int
    devices: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, indices) it holds
    preemptible: bool = True  # False: frozen by a user, or already being terminated
    releasing: bool = False  # True: already being terminated; its resources will free soon
    ends_by: float | None = None  # a time by which it will have ended (its timeout); None: unknown
    queue: str = "default"
    group: int | None = None
    user: str | None = None  # who launched it (fair share and per-user caps: see UserPolicy)


class Allocation(NamedTuple):
    cpus: float
    memory_mib: int
    accelerator: str | None
    devices: tuple[int, ...]  # sorted device indices of that accelerator


def rank_key(job: Request | Running) -> tuple[int, float, int]:
    """Sort key: the smallest key ranks first."""
    return (-job.priority, job.order, job.job_id)


class Pool:
    """An amount of resources (device counts per name); may go negative when used as a budget."""

    __slots__ = ("cpus", "devices", "memory_mib")

    def __init__(self, cpus: float, memory_mib: int, devices: dict[str, int]):
        self.cpus, self.memory_mib, self.devices = cpus, memory_mib, devices

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pool):
            return NotImplemented
        return (self.cpus, self.memory_mib, self.devices) == (other.cpus, other.memory_mib, other.devices)

    def __repr__(self) -> str:
        return f"Pool(cpus={self.cpus!r}, memory_mib={self.memory_mib!r}, devices={self.devices!r})"

    @classmethod
    def of(cls, capacity: Capacity) -> "Pool":
        counts = {name: len(indices) for name, indices in capacity.devices.items()}
        return cls(capacity.cpus, capacity.memory_mib, counts)

    def copy(self) -> "Pool":
        return Pool(self.cpus, self.memory_mib, dict(self.devices))

    def fits(self, cpus: float, memory_mib: int, option: Option) -> bool:
        name, count = option
        return (
            cpus <= self.cpus + EPS
            and memory_mib <= self.memory_mib
            and (name is None or count <= self.devices.get(name, 0))
        )

    def add(self, cpus: float, memory_mib: int, devices: Iterable[tuple[str, int]], sign: int = 1) -> None:
        self.cpus += sign * cpus
        self.memory_mib += sign * memory_mib
        for name, count in devices:
            self.devices[name] = self.devices.get(name, 0) + sign * count

    def add_running(self, job: Running, sign: int = 1) -> None:
        self.add(job.cpus, job.memory_mib, ((n, len(i)) for n, i in job.devices), sign)

    def take(self, cpus: float, memory_mib: int, option: Option) -> None:
        name, count = option
        self.add(cpus, memory_mib, [(name, count)] if name is not None else [], -1)


def options(req: Request) -> list[Option]:
    return list(req.accelerators) if req.accelerators else [(None, 0)]


def _gib(mib: float) -> str:
    """4 GiB, 0.5 GiB, 1.3 GiB: one decimal at most, none when it is 0."""
    text = f"{mib / MIB_PER_GIB:.1f}"
    return f"{text[:-2] if text.endswith('.0') else text} GiB"


def never_fits(req: Request, capacity: Capacity) -> str | None:
    """None if `req` could fit an empty machine, else a one-line reason naming the resource."""
    reasons = []
    if req.cpus > capacity.cpus + EPS:
        reasons.append(f"needs {count_text(req.cpus, 'CPU')} but capacity is {count_text(capacity.cpus, 'CPU')}")
    if req.memory_mib > capacity.memory_mib:
        reasons.append(f"needs {_gib(req.memory_mib)} of memory but capacity is {_gib(capacity.memory_mib)}")
    if req.accelerators:
        empty = Pool.of(capacity)
        if not any(empty.fits(0, 0, opt) for opt in req.accelerators):
            wanted = " or ".join(f"{count} {name}" for name, count in req.accelerators)
            names = list(dict.fromkeys(name for name, _ in req.accelerators))
            have = " and ".join(f"{len(capacity.devices.get(n, ()))} {n}" for n in names)
            if len(names) == 1:
                have = str(len(capacity.devices.get(names[0], ())))
            reasons.append(f"needs {wanted} but this machine has {have}")
    return "; ".join(reasons) or None
