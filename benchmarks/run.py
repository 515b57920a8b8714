#!/usr/bin/env python3
"""jobctl benchmarks: CLI latency, throughput, dispatch latency, scale, supervisor footprint.

    python benchmarks/run.py           # the full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick   # a smoke pass with smaller N (< 2 minutes), for CI

Every ratio is measured in the same run, interleaved with its baseline on the same machine
(rounds in shuffled order, medians over the rounds), so background load hits both sides alike.
Each scenario gets a fresh JOBCTL_HOME under /tmp (`jb-…`), and every supervisor and job started
here is killed at the end. Results are printed and written as Markdown to
benchmarks/results/latest.md (git-ignored). See docs/benchmarks.md.

Baselines it compares against: a minimal Typer app (benchmarks/floor_app.py), task-spooler
(`tsp`, Debian package task-spooler), GNU parallel (Debian `parallel`) and `xargs -P2`. Missing
Debian packages are installed with apt-get when running as root (else the command to run is
printed and those rows are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
FLOOR = [PY, str(HERE / "floor_app.py")]
TERMINAL = ("COMPLETED", "FAILED", "KILLED")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def jobctl_cmd() -> list[str]:
    """The installed entry script run by this interpreter (not a pyenv shim), else `python -m jobctl`."""
    for cand in (Path(PY).parent / "jobctl", shutil.which("jobctl")):
        if cand and Path(cand).is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                first = Path(cand).read_text().splitlines()[0]
                if first.startswith("#!") and "python" in first and "import" in Path(cand).read_text():
                    return [PY, str(cand)]
    return [PY, "-m", "jobctl"]


JOBCTL = jobctl_cmd()

# Run everything as an installed package runs: with bytecode cached. Some environments (some CI images, the
# machine of docs/benchmarks.md) set PYTHONDONTWRITEBYTECODE=1, which makes an editable install recompile every
# jobctl module on every command;
# a private PYTHONPYCACHEPREFIX keeps the cache out of the repository. The no-cache case is measured separately.
NOCACHE_ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
NOCACHE_ENV.pop("PYTHONPYCACHEPREFIX", None)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), f"jb-pycache-{os.getuid()}")


# -- measuring ------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and CPU seconds (user+sys of the child) of one run; output captured (a pipe)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.0995 or seconds <= -0.0995 else f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


# -- homes ----------------------------------------------------------------------------------------
class Home:
    """A fresh JOBCTL_HOME under /tmp, with helpers to drive jobctl and read its database."""

    all: list[Home] = []
    keep = False  # --keep: leave the folders for profiling (processes are still stopped)

    def __init__(self, label: str):
        self.label = label
        self.path = Path(tempfile.mkdtemp(prefix="jb-", dir="/tmp"))
        self.env = dict(os.environ, JOBCTL_HOME=str(self.path))
        self.env.pop("JOBCTL_DEBUG", None)
        self._conn: sqlite3.Connection | None = None
        self.cleaned = False
        Home.all.append(self)

    @property
    def db_path(self) -> Path:
        return self.path / "data" / "jobctl.db"

    def jc(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([*JOBCTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"jobctl {' '.join(args)} (home {self.path}) exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
            )
        return proc

    def configure(self, **settings: str) -> None:
        for key, value in settings.items():
            self.jc("config", "set", key.replace("__", "."), value)

    def start_supervisor(self) -> int:
        self.jc("supervisor", "start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = self.supervisor_pid()
            if pid and Path(self.path / "run" / "supervisor.sock").exists():
                return pid
            time.sleep(0.02)
        raise RuntimeError(f"no supervisor came up in {self.path}")

    def supervisor_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = json.loads((self.path / "run" / "supervisor.lock").read_text())["pid"]
            if psutil.pid_exists(pid):
                return pid
        return None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        return self._conn

    def count(self, where: str = "1") -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}").fetchone()[0]

    def wait_until(self, where: str, n: int, timeout: float = 600, poll: float = 0.02) -> None:
        deadline = time.monotonic() + timeout
        while self.count(where) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.path}: timed out waiting for {n} jobs with {where}")
            time.sleep(poll)

    def wait_job(self, job_id: int, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            row = self.conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row and row[0] in TERMINAL:
                return row[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.path}: job {job_id} not finished after {timeout}s")
            time.sleep(0.005)

    def job_file(self, name: str, body: str) -> str:
        path = self.path / f"{name}.yaml"
        path.write_text(body)
        return str(path)

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        with contextlib.suppress(Exception):
            if self.db_path.exists() and self.count(f"state NOT IN {TERMINAL}"):
                self.jc("kill", "--all", "--grace", "0", check=False, timeout=300)
        pid = self.supervisor_pid()
        with contextlib.suppress(Exception):
            self.jc("supervisor", "stop", check=False, timeout=60)
        if pid:  # make sure: the supervisor, then any runner left behind under this home
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(10)
        for proc in psutil.process_iter(["environ"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if proc.pid != os.getpid() and (proc.info["environ"] or {}).get("JOBCTL_HOME") == str(self.path):
                    proc.kill()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if not Home.keep:
            shutil.rmtree(self.path, ignore_errors=True)


TRUE_JOB = 'name: {name}\nrun: "true"\n'
STAMP_JOB = "name: stamp\nrun: date +%s.%N\n"
SLEEP_JOB = "name: sleeper\nrun: sleep 600\nresources:\n  cpus: 1\n  memory: 64MiB\n"


def fill_history(home: Home, n: int) -> None:
    """Give `home` n finished jobs.

    Job 1 is a real `true` job run by jobctl; jobs 2..n are copies of its rows (1 jobs row, the
    shared specs row, 1 attempts row, 1 workers row, its 4 events CREATED/PENDING/ACTIVE/COMPLETED)
    inserted with plain SQL in one transaction, with their times spread over the past.
    """
    path = home.job_file("hist", TRUE_JOB.format(name="hist"))
    home.jc("launch", path, "--wait")
    conn = sqlite3.connect(home.db_path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    job = dict(conn.execute("SELECT * FROM jobs WHERE id = 1").fetchone())
    attempts = [dict(r) for r in conn.execute("SELECT * FROM attempts WHERE job_id = 1")]
    workers = [dict(r) for r in conn.execute("SELECT * FROM workers WHERE job_id = 1")]
    events = [dict(r) for r in conn.execute("SELECT * FROM events WHERE job_id = 1 ORDER BY id")]
    if job["state"] != "COMPLETED" or [e["to_state"] for e in events] != ["CREATED", "PENDING", "ACTIVE", "COMPLETED"]:
        raise RuntimeError(f"unexpected template job: {job['state']}, {[e['to_state'] for e in events]}")
    for e in events:
        del e["id"]

    def shifted(row: dict, offset: float, job_id: int, keys: tuple[str, ...]) -> tuple:
        out = dict(row)
        for key in keys:
            if out.get(key) is not None:
                out[key] = out[key] + offset
        if "job_id" in out:
            out["job_id"] = job_id
        else:
            out["id"] = job_id
        return tuple(out.values())

    def insert_sql(table: str, row: dict) -> str:
        return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"

    conn.execute("BEGIN IMMEDIATE")
    step = 5.0  # seconds between submissions in the made-up history
    chunk: dict[str, list[tuple]] = {"jobs": [], "attempts": [], "workers": [], "events": []}

    def flush() -> None:
        for table, rows in chunk.items():
            template = {"jobs": job, "attempts": attempts[0], "workers": workers[0], "events": events[0]}[table]
            if rows:
                conn.executemany(insert_sql(table, template), rows)
            rows.clear()

    for i in range(2, n + 1):
        offset = -(n - i + 1) * step
        j = shifted(job, offset, i, ("submitted_at", "started_at", "ended_at"))
        row = dict(zip(job, j))
        row["name"] = f"hist-{i}"
        chunk["jobs"].append(tuple(row.values()))
        chunk["attempts"] += [shifted(a, offset, i, ("started_at", "ended_at", "runner_start")) for a in attempts]
        chunk["workers"] += [shifted(w, offset, i, ()) for w in workers]
        chunk["events"] += [shifted(e, offset, i, ("at",)) for e in events]
        if len(chunk["jobs"]) >= 20_000:
            flush()
    flush()
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a long-lived database would be; no ANALYZE (jobctl runs none)
    conn.close()


def db_bytes(db: Path) -> int:
    """Bytes of the database after a checkpoint and VACUUM (page_count * page_size)."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, size = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA page_size").fetchone()[0]
        return pages * size
    finally:
        conn.close()


def dir_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes on disk) under a folder."""
    apparent = disk = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                apparent += st.st_size
                disk += st.st_blocks * 512
    return apparent, disk


# -- 6: a shared queue (SPEC section 12) --------------------------------------------------------
def bench_shared(report: Report, n: int, rounds: int, warmup: int) -> None:
    """`status` through a shared supervisor's socket vs single-user `status`, same history of n jobs.

    The shared home is root's (the command runs as root, through the socket like any user's: a
    shared home's CLI never opens the database). Needs root: the row says so otherwise."""
    if os.geteuid() != 0:
        report.add("6 Shared queue", "`status` through the socket", "skipped (needs root)", "", "", "≤ 1.3×", "n/a")
        return
    single, shared = Home("single"), Home("shared")
    for home in (single, shared):
        home.configure(supervisor__idle_exit='"30m"')
        fill_history(home, n)
    single.start_supervisor()
    os.chmod(shared.path, 0o755)
    shared.jc("supervisor", "start", "--shared")
    deadline = time.monotonic() + 20
    while not (shared.path / "run" / "supervisor.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    cases = [("single", single), ("shared", shared)]
    wall: dict[str, list[float]] = {"single": [], "shared": []}
    rng = random.Random(6)
    for r in range(warmup + rounds):
        order = cases[:]
        rng.shuffle(order)
        for label, home in order:
            w, _, proc = timed([*JOBCTL, "status"], home.env)
            if proc.returncode != 0:
                raise RuntimeError(f"status ({label}) exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
            if r >= warmup:
                wall[label].append(w)
    one, two = median(wall["single"]), median(wall["shared"])
    report.add(
        "6 Shared queue",
        f"`status` through the shared supervisor's socket, {n:,} jobs in history (wall)",
        ms(two),
        f"{ms(one)} (single-user `status`, same history)",
        f"{two / one:.2f}×",
        "≤ 1.3×",
        verdict(two / one <= 1.3),
    )


# -- results --------------------------------------------------------------------------------------
@dataclass
class Row:
    section: str
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    budget: str = ""
    result: str = ""


@dataclass
class Report:
    quick: bool
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, *args, **kw) -> None:
        self.rows.append(Row(*args, **kw))

    def detail(self, text: str) -> None:
        self.details.append(text)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**MISS**")


# -- 1 + 4: CLI latency and scale -----------------------------------------------------------------
def bench_cli(report: Report, sizes: list[int], rounds: int, warmup: int) -> None:
    log(f"CLI latency: filling histories of {', '.join(f'{n:,}' for n in sizes)} jobs")
    homes: dict[int, Home] = {}
    for n in sizes:
        home = Home(f"history-{n}")
        home.configure(supervisor__idle_exit='"30m"')
        t0 = time.perf_counter()
        fill_history(home, n)
        log(f"  {n:,} jobs in {time.perf_counter() - t0:.1f}s ({home.path})")
        home.start_supervisor()
        homes[n] = home
    small = {n: homes[n].job_file("small", STAMP_JOB) for n in sizes}  # prints its start time: see pick-up below

    cases: list[tuple[str, list[str], dict[str, str], Home | None]] = [("floor", FLOOR, dict(os.environ), None)]
    for n in sizes:
        cases.append((f"status@{n}", [*JOBCTL, "status"], homes[n].env, None))
        cases.append((f"launch@{n}", [*JOBCTL, "launch", small[n]], homes[n].env, homes[n]))
    mid = sizes[1] if len(sizes) > 2 else sizes[-1]
    cases.append(("floor-nocache", FLOOR, NOCACHE_ENV, None))
    cases.append(
        (f"status-nocache@{mid}", [*JOBCTL, "status"], dict(NOCACHE_ENV, JOBCTL_HOME=str(homes[mid].path)), None)
    )
    wall: dict[str, list[float]] = {c[0]: [] for c in cases}
    cpu: dict[str, list[float]] = {c[0]: [] for c in cases}
    log(f"CLI latency: {rounds} rounds (+{warmup} warm-up) of {len(cases)} commands, interleaved")
    pickup: dict[str, list[float]] = {}  # launch label -> seconds from the PENDING event to the job's first output
    rng = random.Random(1)
    for r in range(warmup + rounds):
        order = cases[:]
        rng.shuffle(order)
        for label, cmd, env, home in order:
            w, c, proc = timed(cmd, env)
            if home is not None:  # a launch: let the job finish (untimed) so it does not overlap the next run
                job_id = int(proc.stdout.split()[0])
                home.wait_job(job_id)
                at = dict(home.conn.execute("SELECT to_state, at FROM events WHERE job_id = ?", (job_id,)).fetchall())
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stamp = float(
                        (home.path / "state" / "logs" / str(job_id) / "1" / "rank0.log").read_text().split()[0]
                    )
                    if r >= warmup:
                        pickup.setdefault(label, []).append(stamp - at["PENDING"])
                time.sleep(0.05)
            if r >= warmup:
                wall[label].append(w)
                cpu[label].append(c)
    med = {k: median(v) for k, v in wall.items()}
    medc = {k: median(v) for k, v in cpu.items()}
    floor = med["floor"]
    rs = med[f"status@{mid}"] / floor
    rl = med[f"launch@{mid}"] / floor
    report.add(
        "1 CLI latency",
        f"`status`, {mid:,} jobs in history (wall)",
        ms(med[f"status@{mid}"]),
        f"{ms(floor)} (minimal Typer app)",
        f"{rs:.2f}×",
        "≤ 1.25×",
        verdict(rs <= 1.25),
    )
    report.add(
        "1 CLI latency",
        f"`launch` of a small file, {mid:,} jobs in history (wall)",
        ms(med[f"launch@{mid}"]),
        f"{ms(floor)} (minimal Typer app)",
        f"{rl:.2f}×",
        "≤ 1.4×",
        verdict(rl <= 1.4),
    )
    lo, hi = sizes[0], sizes[-1]
    rscale = med[f"status@{hi}"] / med[f"status@{lo}"]
    lscale = med[f"launch@{hi}"] / med[f"launch@{lo}"]
    rn = med[f"status-nocache@{mid}"] / med["floor-nocache"]
    report.add(
        "1 CLI latency",
        f"`status`, {mid:,} jobs, no bytecode cache (PYTHONDONTWRITEBYTECODE=1)",
        ms(med[f"status-nocache@{mid}"]),
        f"{ms(med['floor-nocache'])} (floor, same setting)",
        f"{rn:.2f}×",
        "(none)",
        "info",
    )
    report.add(
        "4 Scale",
        f"`status`, {hi:,} vs {lo:,} jobs in history",
        ms(med[f"status@{hi}"]),
        f"{ms(med[f'status@{lo}'])} ({lo:,} jobs)",
        f"{rscale:.2f}×",
        "≤ 1.3×",
        verdict(rscale <= 1.3),
    )
    report.add(
        "4 Scale",
        f"`launch`, {hi:,} vs {lo:,} jobs in history",
        ms(med[f"launch@{hi}"]),
        f"{ms(med[f'launch@{lo}'])} ({lo:,} jobs)",
        f"{lscale:.2f}×",
        "(none)",
        "info",
    )
    phi, plo = median(pickup[f"launch@{hi}"]), median(pickup[f"launch@{lo}"])
    report.add(
        "4 Scale",
        f"dispatch (job recorded → its first output line), {hi:,} vs {lo:,} jobs in history",
        ms(phi),
        f"{ms(plo)} ({lo:,} jobs)",
        f"{phi / plo:.1f}×" if plo > 0 else "",
        "(none)",
        "info",
    )
    lines = [
        f"### CLI latency and scale ({rounds} interleaved rounds after {warmup} warm-up; output to a pipe)",
        "",
        "| command | history | wall median | wall min | CPU median (user+sys) | wall / floor | CPU / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, *_ in cases:
        what, _, n = label.partition("@")
        name = {
            "floor": "minimal Typer app (floor)",
            "floor-nocache": "floor, no bytecode cache",
            "status-nocache": "`jobctl status`, no bytecode cache",
        }.get(what, f"`jobctl {what}`")
        lines.append(f"| {name} | {int(n):,} |" if n else f"| {name} | - |")
        ref = "floor-nocache" if "nocache" in label else "floor"
        lines[-1] += (
            f" {ms(med[label])} | {ms(min(wall[label]))} | {ms(medc[label])} | {med[label] / med[ref]:.2f}× |"
            f" {medc[label] / medc[ref]:.2f}× |"
        )
    lines += [
        "",
        "Dispatch of each launched job (`run: date +%s.%N`; from its PENDING event, written by `launch` "
        "just before its commit, to the timestamp it printed), median by history size: "
        + ", ".join(f"{int(k.partition('@')[2]):,} jobs {ms(median(v))}" for k, v in pickup.items())
        + ".",
    ]
    paired = [s / f for s, f in zip(wall[f"status@{mid}"], wall["floor"])]
    paired_l = [s / f for s, f in zip(wall[f"launch@{mid}"], wall["floor"])]
    lines += [
        "",
        f"Paired per-round ratios (median): status@{mid:,}/floor {median(paired):.2f}×, "
        f"launch@{mid:,}/floor {median(paired_l):.2f}×.",
    ]
    lines += [
        "",
        "Histories were made by running one real `true` job with jobctl and copying its rows with SQL "
        "(1 jobs row, the shared specs row, 1 attempts row, 1 workers row, 4 events rows per job). "
        "Each `launch` runs a one-line job (`date +%s.%N`); the harness waits (untimed) for it to finish before the next command. "
        "The supervisor is already running (idle_exit raised to 30m so it stays up). "
        "Python runs with its bytecode cache (a private PYTHONPYCACHEPREFIX), as an installed package does; "
        "the no-cache rows are compared with the floor run with the same setting.",
    ]
    report.detail("\n".join(lines))
    for home in homes.values():
        home.cleanup()


# -- 2: throughput --------------------------------------------------------------------------------
THROUGHPUT_RATE: float | None = None  # jobs/s of the last throughput run (the sweep compares its drain with it)
CPU_SPLIT: list[tuple[float, float]] = []  # (supervisor, runners + workers) CPU seconds per job, per batch


def run_jobctl_batch(n: int) -> tuple[float, Home]:
    home = Home(f"throughput-{n}")
    home.configure(capacity__cpus="2", supervisor__idle_exit='"30m"')
    sup = psutil.Process(home.start_supervisor())
    c0 = sup.cpu_times()
    path = home.job_file("t", TRUE_JOB.format(name="t"))
    t0 = time.perf_counter()
    home.jc("launch", path, "--array", str(n))
    home.wait_until(f"state IN {TERMINAL}", n, poll=0.02)
    elapsed = time.perf_counter() - t0
    with contextlib.suppress(psutil.Error):
        c1 = sup.cpu_times()
        # runners still alive (slot runners wait for more work a few seconds) count with what they reaped
        live = 0.0
        for child in sup.children():
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                live += t.user + t.system + t.children_user + t.children_system
        CPU_SPLIT.append(
            (
                (c1.user + c1.system - c0.user - c0.system) / n,
                (c1.children_user + c1.children_system - c0.children_user - c0.children_system + live) / n,
            )
        )
    bad = home.count("state != 'COMPLETED'")
    if bad:
        raise RuntimeError(f"{bad} of {n} jobs did not complete ({home.path})")
    return elapsed, home


def run_tsp(tsp: str, n: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="jb-ts-", dir="/tmp"))
    env = dict(os.environ, TS_SOCKET=str(folder / "sock"), TMPDIR=str(folder), TS_MAXFINISHED=str(n + 10))
    try:
        subprocess.run([tsp, "-S", "2"], env=env, check=True, capture_output=True)  # starts the server
        script = (
            f"for i in $(seq {n}); do {tsp} true >/dev/null; done; {tsp} -w >/dev/null 2>&1; "
            f"while {tsp} | grep -qE ' (running|queued) '; do sleep 0.01; done"
        )
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", script], env=env, check=True, capture_output=True)
        elapsed = time.perf_counter() - t0
        done = subprocess.run([tsp], env=env, capture_output=True, text=True).stdout.count(" finished ")
        if done != n:
            raise RuntimeError(f"task-spooler finished {done} of {n} jobs")
        return elapsed
    finally:
        subprocess.run([tsp, "-K"], env=env, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def run_shell(script: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)
    return time.perf_counter() - t0


def ensure_tools() -> dict[str, str | None]:
    tools = {
        "tsp": shutil.which("tsp") or (shutil.which("ts") and _is_tsp(shutil.which("ts"))),
        "parallel": shutil.which("parallel"),
    }
    missing = [pkg for tool, pkg in (("tsp", "task-spooler"), ("parallel", "parallel")) if not tools[tool]]
    if missing:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log(f"installing {' '.join(missing)} with apt-get")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", *missing],
                capture_output=True,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            )
            tools = {"tsp": shutil.which("tsp"), "parallel": shutil.which("parallel")}
        else:
            log(f"missing baselines; install them with: sudo apt-get install {' '.join(missing)}")
    return tools


def _is_tsp(path: str) -> str | None:
    out = subprocess.run([path, "-h"], capture_output=True, text=True)
    return (
        path if "task" in (out.stdout + out.stderr).lower() and "spool" in (out.stdout + out.stderr).lower() else None
    )


def bench_throughput(report: Report, n: int, reps: int, tools: dict[str, str | None]) -> None:
    log(f"throughput: {n} `true` jobs, 2 slots, {reps} interleaved repetition(s)")
    CPU_SPLIT.clear()
    times: dict[str, list[float]] = {"jobctl": [], "tsp": [], "parallel": [], "xargs": []}
    runners = {
        "jobctl": lambda: run_jobctl_batch(n),
        "tsp": (lambda: run_tsp(tools["tsp"], n)) if tools["tsp"] else None,
        "parallel": (lambda: run_shell(f"seq {n} | {tools['parallel']} --will-cite -j2 -N0 true"))
        if tools["parallel"]
        else None,
        "xargs": lambda: run_shell(f"seq {n} | xargs -P2 -n1 true"),
    }
    rng = random.Random(2)
    for _ in range(reps):
        order = [k for k, v in runners.items() if v is not None]
        rng.shuffle(order)
        for key in order:
            out = runners[key]()
            if key == "jobctl":
                out, home = out
                home.cleanup()
            times[key].append(out)
            log(f"  {key}: {out:.2f}s")
    med = {k: median(v) for k, v in times.items() if v}
    global THROUGHPUT_RATE
    THROUGHPUT_RATE = n / med["jobctl"]
    tsp_t, par_t = med.get("tsp"), med.get("parallel")
    report.add(
        "2 Throughput",
        f"{n} `true` jobs, `launch --array {n}`, 2 CPU slots, launch → all COMPLETED",
        secs(med["jobctl"]),
        f"{secs(tsp_t)} (task-spooler `tsp -S 2`)" if tsp_t else "tsp not installed",
        f"{med['jobctl'] / tsp_t:.2f}×" if tsp_t else "",
        "≤ 1.5× task-spooler",
        verdict(med["jobctl"] <= 1.5 * tsp_t) if tsp_t else "n/a",
    )
    if par_t:
        report.add(
            "2 Throughput",
            f"{n} `true` jobs on 2 slots, against GNU parallel",
            secs(med["jobctl"]),
            f"{secs(par_t)} (GNU parallel `-j2`)",
            f"{med['jobctl'] / par_t:.2f}×",
            "< 1.0× GNU parallel",
            verdict(med["jobctl"] < par_t),
        )
    lines = [
        f"### Throughput: {n} `true` jobs on 2 slots (median of {reps}; interleaved)",
        "",
        "| tool | median | jobs/s | runs | jobctl / tool |",
        "|---|---:|---:|---|---:|",
    ]
    labels = {
        "jobctl": "jobctl (`launch --array`, supervisor running)",
        "tsp": "task-spooler (`tsp -S 2`, one `tsp true` per job)",
        "parallel": "GNU parallel `-j2`",
        "xargs": "`xargs -P2` (floor)",
    }
    for key, values in times.items():
        if values:
            lines.append(
                f"| {labels[key]} | {secs(med[key])} | {n / med[key]:.0f} | "
                f"{', '.join(f'{v:.2f}' for v in values)} | {med['jobctl'] / med[key]:.2f}× |"
            )
    if CPU_SPLIT:
        lines += [
            "",
            f"jobctl CPU per job (median over the runs): supervisor {median([a for a, _ in CPU_SPLIT]) * 1000:.1f} ms, "
            f"runners and their bash workers {median([b for _, b in CPU_SPLIT]) * 1000:.1f} ms "
            f"(2 cores: the floor for the wall time per job is half their sum).",
        ]
    report.detail("\n".join(lines))


# -- bytes per finished job -----------------------------------------------------------------------
def bench_bytes(report: Report, n: int, synthetic_n: int) -> None:
    log(f"database size: {n} real `true` jobs")
    empty = Home("empty")
    empty.jc("status")
    empty_bytes = db_bytes(empty.db_path)
    empty.cleanup()
    elapsed, home = run_jobctl_batch(n)
    home.jc("supervisor", "stop")
    full = db_bytes(home.db_path)
    per_job = (full - empty_bytes) / n
    logs_apparent, logs_disk = dir_bytes(home.path / "state" / "logs")
    home.cleanup()
    synth = Home("synthetic")
    fill_history(synth, synthetic_n)
    synth_bytes = db_bytes(synth.db_path)
    synth.cleanup()
    report.add(
        "4 Scale",
        f"database bytes per finished job ({n:,} real `true` jobs, after VACUUM)",
        f"{per_job:,.0f} B",
        "",
        "",
        "≤ 2 KiB (2,048 B)",
        verdict(per_job <= 2048),
    )
    report.detail(
        "\n".join(
            [
                "### Database size",
                "",
                f"- Empty database (schema only): {empty_bytes:,} B.",
                f"- {n:,} real `true` jobs (ran in {elapsed:.1f}s): {full:,} B after checkpoint + VACUUM → "
                f"**{per_job:,.0f} B per finished job**.",
                f"- The synthetic history used for the scale runs ({synthetic_n:,} copied jobs): "
                f"{(synth_bytes - empty_bytes) / synthetic_n:,.0f} B per job (checks that the copies are realistic).",
                f"- For information, log folders (not in the database): {logs_apparent / n:,.0f} B apparent, "
                f"{logs_disk / n:,.0f} B on disk per job (plan.json, runner.json, run.sh, setup.sh, rank0.log, "
                "rank0.exit, result.json).",
            ]
        )
    )


# -- 3: dispatch latency --------------------------------------------------------------------------
def bench_dispatch(report: Report, launches: int, warmup: int) -> None:
    log(f"dispatch latency: {launches} launches (+{warmup} warm-up) on an idle supervisor")
    home = Home("dispatch")
    home.configure(supervisor__idle_exit='"30m"')
    home.start_supervisor()
    path = home.job_file("stamp", STAMP_JOB)
    from_return, from_start, launch_wall, from_commit, from_active = [], [], [], [], []
    for i in range(warmup + launches):
        time.sleep(0.3)  # idle machine: the previous job is done and the supervisor asleep
        t_start = time.time()
        w, _, proc = timed([*JOBCTL, "launch", path], home.env)
        t_ret = time.time()
        job_id = int(proc.stdout.split()[0])
        logfile = home.path / "state" / "logs" / str(job_id) / "1" / "rank0.log"
        deadline = time.monotonic() + 30
        stamp = None
        while stamp is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                stamp = float(logfile.read_text().splitlines()[0])
            if stamp is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} wrote nothing in 30s")
                time.sleep(0.002)
        home.wait_job(job_id)
        at = dict(home.conn.execute("SELECT to_state, at FROM events WHERE job_id = ?", (job_id,)).fetchall())
        if i >= warmup:
            from_commit.append(stamp - at["PENDING"])
            from_active.append(stamp - at["ACTIVE"])
            from_return.append(stamp - t_ret)
            from_start.append(stamp - t_start)
            launch_wall.append(w)
    home.cleanup()
    med = median(from_return)
    report.add(
        "3 Dispatch",
        f"`launch` returns → job's first output line (idle supervisor, median of {launches})",
        ms(med),
        "",
        "",
        "≤ 50 ms",
        verdict(med <= 0.050),
    )
    report.add(
        "3 Dispatch",
        "job recorded (PENDING event) → job's first output line",
        ms(median(from_commit)),
        "",
        "",
        "(none)",
        "info",
    )
    report.detail(
        "\n".join(
            [
                f"### Dispatch latency ({launches} launches of `run: date +%s.%N`, idle supervisor)",
                "",
                "| from | median | min | max |",
                "|---|---:|---:|---:|",
                f"| `launch` returned (budget) | {ms(med)} | {ms(min(from_return))} | {ms(max(from_return))} |",
                f"| `launch` invoked | {ms(median(from_start))} | {ms(min(from_start))} | {ms(max(from_start))} |",
                f"| `launch` recorded the job (its PENDING event) | {ms(median(from_commit))} | {ms(min(from_commit))} | "
                f"{ms(max(from_commit))} |",
                f"| the supervisor started it (its ACTIVE event) | {ms(median(from_active))} | {ms(min(from_active))} | "
                f"{ms(max(from_active))} |",
                f"| (the `launch` command itself, wall) | {ms(median(launch_wall))} | {ms(min(launch_wall))} | {ms(max(launch_wall))} |",
                "",
                "The job's first line is its own wall-clock timestamp, read from its log file; a negative value means "
                "the job had started before `launch` exited. Event times are taken by jobctl just before it commits.",
            ]
        )
    )


# -- 5: supervisor footprint ----------------------------------------------------------------------
def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def window(pid: int, seconds: float, runners: list[psutil.Process] | None = None) -> dict[str, float]:
    """CPU seconds used by the supervisor (and runners) over a window; RSS/PSS sampled at the end."""
    sup = psutil.Process(pid)
    start_sup = cpu_seconds(sup)
    start_run = {}
    for r in runners or []:
        with contextlib.suppress(psutil.Error):
            start_run[r.pid] = (r, cpu_seconds(r))
    peak = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        peak = max(peak, sup.memory_info().rss)
        time.sleep(min(0.5, max(0.0, seconds - (time.monotonic() - t0))))
    elapsed = time.monotonic() - t0
    out = {"cpu": cpu_seconds(sup) - start_sup, "elapsed": elapsed}
    mem = sup.memory_full_info()
    out.update(rss=mem.rss, pss=getattr(mem, "pss", 0), uss=mem.uss, peak=max(peak, mem.rss))
    if runners is not None:
        cpu = rss = pss = uss = 0.0
        for proc, c0 in start_run.values():
            with contextlib.suppress(psutil.Error):
                cpu += cpu_seconds(proc) - c0
                m = proc.memory_full_info()
                rss += m.rss
                pss += getattr(m, "pss", 0)
                uss += m.uss
        out.update(run_cpu=cpu, run_rss=rss, run_pss=pss, run_uss=uss, runners=len(start_run))
    return out


def bench_footprint(report: Report, jobs: int, seconds: float) -> None:
    log(f"supervisor footprint: idle, then {jobs} sleeping jobs; {seconds:g}s windows")
    home = Home("footprint")
    home.configure(capacity__cpus="256", capacity__memory='"1TiB"', supervisor__idle_exit='"30m"')
    pid = home.start_supervisor()
    time.sleep(1.0)
    idle = window(pid, seconds)
    path = home.job_file("sleeper", SLEEP_JOB)
    home.jc("launch", path, "--array", str(jobs))
    try:
        home.wait_until("state = 'ACTIVE'", jobs, timeout=60)
    except RuntimeError:
        rows = home.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        raise RuntimeError(
            f"{jobs} jobs launched on a machine with room for all, but after 60 s: "
            f"{', '.join(f'{n} {st}' for st, n in rows)}"
        ) from None
    deadline = time.monotonic() + 60
    while len(list((home.path / "state" / "logs").glob("*/1/runner.json"))) < jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # let start-up settle
    sup = psutil.Process(pid)
    runners = sup.children()
    busy = window(pid, seconds, runners)
    if home.count("state = 'ACTIVE'") != jobs:
        raise RuntimeError("jobs ended during the footprint window")
    home.cleanup()
    mib = 1024 * 1024
    idle_pct = idle["cpu"] / idle["elapsed"] * 100
    busy_pct = busy["cpu"] / busy["elapsed"] * 100
    report.add(
        "5 Supervisor",
        f"idle CPU (0 jobs, {seconds:g} s window)",
        f"{idle['cpu']:.3f} CPU-s ({idle_pct:.2f}% of a core)",
        "",
        "",
        "≈ 0 (≤ 0.5% of a core)",
        verdict(idle_pct <= 0.5),
    )
    report.add(
        "5 Supervisor",
        f"RSS with {jobs} running `sleep` jobs",
        f"{busy['rss'] / mib:.1f} MiB",
        f"{idle['rss'] / mib:.1f} MiB idle",
        "",
        "≤ 80 MB",
        verdict(busy["rss"] <= 80e6),
    )
    report.add(
        "5 Supervisor",
        f"CPU with {jobs} running `sleep` jobs ({seconds:g} s window)",
        f"{busy['cpu']:.2f} CPU-s ({busy_pct:.1f}% of a core)",
        "",
        "",
        "(none)",
        "info",
    )
    report.detail(
        "\n".join(
            [
                f"### Supervisor footprint ({seconds:g} s windows; capacity 256 CPUs / 1 TiB; each job 1 CPU, 64 MiB, `sleep 600`)",
                "",
                "| | supervisor CPU | supervisor RSS | PSS | USS | runners (sum) CPU | runners RSS (sum) | runners PSS (sum) "
                "| runners USS (sum) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| idle, 0 jobs | {idle['cpu']:.3f} s ({idle_pct:.2f}%) | {idle['rss'] / mib:.1f} MiB | "
                f"{idle['pss'] / mib:.1f} MiB | {idle['uss'] / mib:.1f} MiB | - | - | - | - |",
                f"| {jobs} running | {busy['cpu']:.2f} s ({busy_pct:.1f}%) | {busy['rss'] / mib:.1f} MiB (peak "
                f"{busy['peak'] / mib:.1f}) | {busy['pss'] / mib:.1f} MiB | {busy['uss'] / mib:.1f} MiB | "
                f"{busy['run_cpu']:.2f} s | {busy['run_rss'] / mib:.0f} MiB | {busy['run_pss'] / mib:.0f} MiB | "
                f"{busy['run_uss'] / mib:.0f} MiB |",
                "",
                f"Runners: {int(busy['runners'])} forked runner processes (children of the supervisor); "
                "their RSS counts pages shared with the supervisor through fork once per runner, PSS splits them.",
            ]
        )
    )


# -- 6: accounting overhead ---------------------------------------------------------------------------
ACCOUNTED_JOB = "name: acct\nrun: sleep 1.5\nresources:\n  cpus: 1\n  memory: 64MiB\n"


def run_accounting_batch(n: int, accounting: bool) -> dict[str, float]:
    """N jobs of `sleep 1.5` at once; CPU per job of the supervisor itself and of its children (the
    runners, with the jobs they reaped), with usage accounting on or off (JOBCTL_ACCOUNTING=0)."""
    home = Home(f"accounting-{'on' if accounting else 'off'}")
    if not accounting:
        home.env["JOBCTL_ACCOUNTING"] = "0"
    home.configure(capacity__cpus=str(n + 8), capacity__memory='"1TiB"', supervisor__idle_exit='"30m"')
    sup = psutil.Process(home.start_supervisor())
    c0 = sup.cpu_times()
    home.jc("launch", home.job_file("acct", ACCOUNTED_JOB), "--array", str(n))
    home.wait_until(f"state IN {TERMINAL}", n, timeout=300, poll=0.1)
    c1 = sup.cpu_times()
    measured = home.count("id IN (SELECT job_id FROM attempts WHERE usage IS NOT NULL)")
    home.cleanup()
    return {
        "supervisor": (c1.user + c1.system - c0.user - c0.system) / n,
        "children": (c1.children_user + c1.children_system - c0.children_user - c0.children_system) / n,
        "measured": measured,
    }


def bench_accounting(report: Report, n: int, reps: int) -> None:
    log(f"accounting overhead: {n} `sleep 1.5` jobs at once, accounting off then on, {reps} rounds")
    off, on = [], []
    for _ in range(reps):
        off.append(run_accounting_batch(n, accounting=False))
        on.append(run_accounting_batch(n, accounting=True))
    if any(r["measured"] != n for r in on) or any(r["measured"] for r in off):
        raise RuntimeError("accounting on/off did not take effect as expected")
    sup_off, sup_on = median([r["supervisor"] for r in off]), median([r["supervisor"] for r in on])
    kid_off, kid_on = median([r["children"] for r in off]), median([r["children"] for r in on])
    extra = (sup_on - sup_off) / sup_off * 100 if sup_off else 0.0
    report.add(
        "6 Accounting",
        f"supervisor CPU per job, accounting on ({n} jobs, median of {reps})",
        f"{sup_on * 1000:.1f} ms",
        f"{sup_off * 1000:.1f} ms off",
        f"{extra:+.1f}%",
        "≤ +5%",
        verdict(extra <= 5.0),
    )
    report.add(
        "6 Accounting",
        "runners' CPU per job (runner + reaped job processes), accounting on",
        f"{kid_on * 1000:.1f} ms",
        f"{kid_off * 1000:.1f} ms off",
        f"{(kid_on - kid_off) / kid_off * 100 if kid_off else 0.0:+.1f}%",
        "(none)",
        "info",
    )


# -- the report -----------------------------------------------------------------------------------
def machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 1024**3

    def version(cmd: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        return "not installed"

    import importlib.metadata as md

    def pkg(name: str) -> str:
        with contextlib.suppress(md.PackageNotFoundError):
            return md.version(name)
        return "?"

    return [
        f"- CPU: {model}, nproc {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}); memory {mem:.1f} GiB",
        f"- Python {platform.python_version()} ({PY}); Linux {platform.release()}; SQLite {sqlite3.sqlite_version}",
        f"- jobctl {pkg('jobctl')}, typer {pkg('typer')}, rich {pkg('rich')}, click {pkg('click')}, psutil {pkg('psutil')}",
        f"- task-spooler: {version([shutil.which('tsp') or 'tsp', '-V'])}; GNU parallel: "
        f"{version([shutil.which('parallel') or 'parallel', '--version'])}",
        f"- jobctl invoked as: `{' '.join(JOBCTL)}`; jobctl sources sha256 {START_DIGEST} "
        "(of jobctl/**/*.py, to tell which code was measured)"
        + (
            ""
            if source_digest() == START_DIGEST
            else f" — **the sources changed during the run** (now {source_digest()})"
        ),
    ]


START_DIGEST = ""


def source_digest() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "jobctl").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def render(report: Report, started: float, load_before: tuple, load_after: tuple, argv: list[str]) -> str:
    mode = "quick (smoke pass, smaller N)" if report.quick else "full"
    out = [
        f"# jobctl benchmarks ({mode})",
        "",
        f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} in {time.time() - started:.0f} s "
        f"with `{' '.join(['python benchmarks/run.py', *argv])}`.",
        "",
        *machine(),
        f"- Load average before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
        f"{' '.join(f'{x:.2f}' for x in load_after)}",
        "",
        "| area | measure | jobctl | baseline | ratio | budget | result |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for r in report.rows:
        out.append(f"| {r.section} | {r.measure} | {r.value} | {r.baseline} | {r.ratio} | {r.budget} | {r.result} |")
    out += ["", "Medians throughout; every ratio's two sides were measured interleaved in this same run.", ""]
    for d in report.details:
        out += [d, ""]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke pass with smaller N (< 2 minutes)")
    parser.add_argument("--out", default=str(HERE / "results" / "latest.md"), help="Markdown file to write")
    parser.add_argument(
        "--only",
        default="cli,throughput,sweep,bytes,dispatch,footprint,accounting,shared",
        help="comma-separated sections to run (default: all)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary JOBCTL_HOMEs (for profiling)")
    args = parser.parse_args()
    global START_DIGEST
    START_DIGEST = source_digest()
    only = set(args.only.split(","))
    Home.keep = args.keep
    quick = args.quick
    started = time.time()
    load_before = os.getloadavg()
    report = Report(quick)
    tools = ensure_tools() if "throughput" in only else {}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    sections = [
        (
            "cli",
            "1 CLI latency / 4 Scale",
            lambda: (
                bench_cli(report, [100, 1_000, 10_000], rounds=5, warmup=1)
                if quick
                else bench_cli(report, [100, 10_000, 100_000], rounds=25, warmup=2)
            ),
        ),
        (
            "throughput",
            "2 Throughput",
            lambda: bench_throughput(report, 100 if quick else 500, 1 if quick else 3, tools),
        ),
        (
            "sweep",
            "2 Throughput",
            lambda: __import__("sweep").bench_sweep(
                sys.modules[__name__], report, 2_000 if quick else 10_000, 5 if quick else 15
            ),
        ),
        ("bytes", "4 Scale", lambda: bench_bytes(report, 200 if quick else 1_000, 1_000 if quick else 10_000)),
        ("dispatch", "3 Dispatch", lambda: bench_dispatch(report, 5 if quick else 20, 1 if quick else 2)),
        ("footprint", "5 Supervisor", lambda: bench_footprint(report, 50 if quick else 200, 3.0 if quick else 10.0)),
        ("accounting", "6 Accounting", lambda: bench_accounting(report, 20 if quick else 50, 1 if quick else 3)),
        (
            "shared",
            "7 Shared queue",
            lambda: bench_shared(report, 1_000 if quick else 10_000, 5 if quick else 25, 1 if quick else 2),
        ),
    ]
    try:
        for key, area, bench in sections:
            if key not in only:
                continue
            try:
                bench()
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' results
                log(f"{key}: failed: {exc}")
                report.add(area, f"`{key}` scenario", "did not complete", "", "", "", "**ERROR**")
                report.detail(f"### `{key}` scenario failed\n\n{type(exc).__name__}: {exc}")
            finally:
                for home in Home.all:
                    home.cleanup()
    finally:
        for home in Home.all:
            home.cleanup()
        if args.keep:
            log("kept: " + ", ".join(f"{h.label}={h.path}" for h in Home.all))
    text = render(report, started, load_before, os.getloadavg(), sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    log(f"wrote {out}")
    missed = [r for r in report.rows if "MISS" in r.result or "ERROR" in r.result]
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
