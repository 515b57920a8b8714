"""Everyday queueing through the real CLI (SPEC section 9): ad-hoc commands, queues, hold and start
times, update, array throttles and summary rows, kill signals and warnings, retention.

Real processes throughout: `python -m jobctl`, its supervisor, runners and bash jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import count_jobs, wait_until, write_job


def run_cli(jobctl, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 60):
    """The CLI with a chosen working directory and environment (the fixture runs from the repository)."""
    return subprocess.run(
        [sys.executable, "-m", "jobctl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**jobctl.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})},
        timeout=timeout,
    )


def status_json(jobctl, *args: str) -> list[dict]:
    return json.loads(jobctl("status", "--json", *args, check=True).stdout)


def log_of(jobctl, job_id: int) -> str:
    return jobctl("logs", str(job_id), check=True).stdout


# -- ad-hoc commands --------------------------------------------------------------------------------
def test_adhoc_command_runs_with_the_callers_virtualenv(jobctl, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    plain = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": "", "CONDA_PREFIX": ""}
    # a supervisor started from a shell without the virtualenv ...
    first = run_cli(jobctl, "launch", "--wait", "--", "true", env=plain)
    assert first.returncode == 0, first.stderr
    pid = json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)["pid"]
    # ... runs a command launched from a shell where it is active with that shell's `python`
    active = {"PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
    proc = run_cli(
        jobctl, "launch", "--wait", "--", "python", "-c", "import sys; print(sys.prefix)", env=active, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.split()[0])
    assert json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)["pid"] == pid
    assert log_of(jobctl, job_id).strip() == str(venv)
    assert jobctl.job(job_id)["name"] == "python"


def test_adhoc_command_keeps_quoting_directory_and_exit_code(jobctl, tmp_path):
    here = tmp_path / "work dir"
    here.mkdir()
    proc = run_cli(jobctl, "launch", "--wait", "--", sys.executable, "-c", 'print("a b");print("$HOME")', cwd=here)
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.split()[0])
    assert log_of(jobctl, job_id).splitlines() == ["a b", "$HOME"]  # quoting as typed: no expansion
    proc = run_cli(
        jobctl,
        "launch",
        "--wait",
        "--name",
        "three",
        "--env",
        "X=42",
        "--",
        "bash",
        "-c",
        'pwd; echo "$X"; exit 3',
        cwd=here,
    )
    assert proc.returncode == 3, proc.stderr
    job = jobctl.job(int(proc.stdout.split()[0]))
    assert job["name"] == "three" and job["status"] == "FAILED (exit 3)"
    assert log_of(jobctl, job["id"]).splitlines() == [str(here), "42"]


def test_adhoc_bad_usage(jobctl):
    for args in (["launch", "--"], ["launch"], ["launch", "job.yaml", "--", "echo"]):
        proc = jobctl(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert count_jobs(jobctl.home) == 0


# -- queues -----------------------------------------------------------------------------------------
def test_queue_caps_and_pause(jobctl):
    jobctl.config("capacity.cpus", "4")
    jobctl("queue", "set", "gpu", "--max-running", "1", check=True)
    gpu = [int(jobctl("launch", "--queue", "gpu", "--", "sleep", "300", check=True).stdout) for _ in range(3)]
    default = [int(jobctl("launch", "--", "sleep", "1.5", check=True).stdout) for _ in range(2)]

    def settled():
        jobs = {j["id"]: j for j in status_json(jobctl)}
        ok = sum(jobs[i]["state"] == "ACTIVE" for i in gpu) == 1 and all(
            jobs[i]["state"] in ("ACTIVE", "COMPLETED") for i in default
        )
        full = [jobs[i]["status"] for i in gpu if jobs[i]["state"] == "PENDING"]
        return ok and full == ["PENDING (queue gpu full)"] * 2 and jobs

    jobs = wait_until(settled, 30, "one gpu job and both default jobs running")
    assert all(jobs[i]["queue"] == "gpu" for i in gpu) and all(jobs[i]["queue"] == "default" for i in default)
    assert {j["id"] for j in status_json(jobctl, "--queue", "gpu")} == set(gpu)
    listed = {q["queue"]: q for q in json.loads(jobctl("queue", "list", "--json", check=True).stdout)}
    assert listed["gpu"]["running"] == 1 and listed["gpu"]["waiting"] == 2 and listed["gpu"]["max_running"] == 1
    table = jobctl("queue", "list", check=True).stdout.splitlines()
    assert table[0].split() == ["QUEUE", "RUNNING", "WAITING", "MAX", "RUNNING", "PAUSED"]

    # pause default: the running ones finish, nothing new starts there
    jobctl("queue", "pause", "default", check=True)
    later = int(jobctl("launch", "--", "true", check=True).stdout)
    for i in default:
        jobctl.wait_state(i, "COMPLETED", timeout=30)
    wait_until(lambda: jobctl.job(later)["status"] == "PENDING (queue default paused)", 20, "paused status")
    time.sleep(1.0)  # a supervisor pass or two: still not started
    assert jobctl.job(later)["state"] == "PENDING"
    assert json.loads(jobctl("queue", "list", "--json", check=True).stdout)[0]["paused"] is True
    jobctl("queue", "resume", "default", check=True)
    jobctl.wait_state(later, "COMPLETED", timeout=30)
    jobctl("kill", *map(str, gpu))


def test_queue_bad_input_changes_nothing(jobctl):
    jobctl("queue", "set", "gpu", "--max-running", "2", check=True)
    for args in (
        ["queue", "set", "gpu", "--max-running", "-1"],
        ["queue", "set", "gpu", "--max-running", "0"],
        ["queue", "set", "gpu", "--cpus", "-2"],
        ["queue", "set", "bad/name", "--max-running", "1"],
        ["queue", "set", "gpu"],
        ["launch", "--queue", "a b", "--", "true"],
        ["launch", "--queue", "gpu;rm", "--", "true"],
        ["status", "--queue", "x y"],
    ):
        proc = jobctl(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    listed = json.loads(jobctl("queue", "list", "--json", check=True).stdout)
    assert [q for q in listed if q["queue"] == "gpu"][0]["max_running"] == 2
    assert count_jobs(jobctl.home) == 0


def test_queue_key_in_a_job_file(jobctl, tmp_path):
    path = write_job(tmp_path, "q", "queue: nightly\nrun: echo hi\n")
    job_id = jobctl.launch(path)
    assert jobctl.job(job_id)["queue"] == "nightly"
    bad = write_job(tmp_path, "bad", "queue: 'no way'\nrun: echo hi\n")
    proc = jobctl("launch", str(bad))
    assert proc.returncode == 2 and "queue" in proc.stderr and "bad.yaml" in proc.stderr


# -- hold and start time ---------------------------------------------------------------------------
def test_hold_then_start(jobctl):
    job_id = int(jobctl("launch", "--hold", "--", "echo", "ran", check=True).stdout)
    assert jobctl.job(job_id)["status"] == "SUSPENDED (held)"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # held for 5 s: it stays so, with nothing run
        job = jobctl.job(job_id)
        assert job["status"] == "SUSPENDED (held)" and job["attempt"] == 0
        time.sleep(0.5)
    jobctl("start", str(job_id), check=True)
    jobctl.wait_state(job_id, "COMPLETED", timeout=20)
    assert log_of(jobctl, job_id).strip() == "ran"


def test_start_at_in_three_seconds(jobctl):
    import sqlite3

    jobctl("supervisor", "start", check=True)
    job_id = int(jobctl("launch", "--at", "3s", "--", "true", check=True).stdout)
    jobctl.wait_state(job_id, "COMPLETED", timeout=30)
    # the exact times from the database, not the seconds `describe` shows (a loaded machine may take
    # longer than 3 s to run `describe` after `launch`, so the PENDING state is read from the timeline)
    with sqlite3.connect(jobctl.home / "data" / "jobctl.db") as db:
        start_at = db.execute("SELECT start_at FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        events = db.execute("SELECT to_state, at, reason FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        timeline = [(state, reason) for state, _, reason in events.fetchall()]
        times = dict(db.execute("SELECT to_state, at FROM events WHERE job_id = ?", (job_id,)).fetchall())
    assert timeline == [("CREATED", None), ("PENDING", "scheduled"), ("ACTIVE", None), ("COMPLETED", None)]
    assert 2.5 <= start_at - times["CREATED"] <= 3.0  # 3 s from the launch (its own parsing comes first)
    assert start_at - 0.01 <= times["ACTIVE"] <= start_at + 1.0, times["ACTIVE"] - start_at  # not before, ± 1 s


def test_start_at_formats_and_bad_times(jobctl, tmp_path):
    job_id = int(jobctl("launch", "--at", "23:59", "--", "true", check=True).stdout)
    job = jobctl.job(job_id)
    assert job["reason"] == "scheduled" and job["status"].endswith("11:59PM)"), job["status"]
    path = write_job(tmp_path, "later", "start_at: 2h\nrun: 'true'\n")
    later = jobctl.job(jobctl.launch(path))
    assert later["reason"] == "scheduled"
    for bad in ("yesterday", "25:00", "12:61", "2001-01-01T00:00", "soon"):
        proc = jobctl("launch", "--at", bad, "--", "true")
        assert proc.returncode == 2, (bad, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "--at" in proc.stderr
    bad = write_job(tmp_path, "bad", "start_at: 25:00\nrun: 'true'\n")
    proc = jobctl("launch", str(bad))
    assert proc.returncode == 2 and "start_at" in proc.stderr
    assert count_jobs(jobctl.home) == 2


# -- update --------------------------------------------------------------------------------------
def test_update_priority_makes_a_waiting_job_start_first(jobctl):
    jobctl.config("capacity.cpus", "1")
    blocker = int(jobctl("launch", "--", "sleep", "60", check=True).stdout)
    jobctl.wait_state(blocker, "ACTIVE", timeout=20)
    older = [int(jobctl("launch", "--", "true", check=True).stdout) for _ in range(2)]
    newest = int(jobctl("launch", "--name", "urgent", "--", "true", check=True).stdout)
    proc = jobctl("update", str(newest), "--priority", "10", "--label", "why=urgent")
    assert proc.returncode == 0, proc.stderr
    job = jobctl.job(newest)
    assert job["labels"] == {"why": "urgent"}
    assert any(e["reason"] == "updated" and "priority 0 -> 10" in (e["message"] or "") for e in job["events"])
    jobctl("kill", str(blocker), check=True)
    for i in older + [newest]:
        jobctl.wait_state(i, "COMPLETED", timeout=30)
    starts = {i: jobctl.job(i)["started_at"] for i in older + [newest]}
    assert starts[newest] <= min(starts[i] for i in older), starts


def test_update_of_a_finished_job_fails_with_one_line(jobctl):
    done = int(jobctl("launch", "--wait", "--", "true", check=True).stdout)
    proc = jobctl("update", str(done), "--priority", "5")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: job {done} is COMPLETED; only unfinished jobs can be updated"]
    assert jobctl.job(done)["events"][-1]["reason"] != "updated"


def test_update_queue_timeout_and_retries_of_a_waiting_job(jobctl):
    job_id = int(jobctl("launch", "--hold", "--", "sleep", "5", check=True).stdout)
    jobctl("update", str(job_id), "--queue", "slow", "--timeout", "1s", "--retries", "0", check=True)
    job = jobctl.job(job_id)
    assert job["queue"] == "slow" and job["max_attempts"] == 1
    jobctl("start", str(job_id), check=True)
    job = jobctl.wait_state(job_id, "FAILED", timeout=30)
    assert job["status"] == "FAILED (timed out)"
    proc = jobctl("update", str(job_id), "--queue", "x y")
    assert proc.returncode == 2


# -- arrays ------------------------------------------------------------------------------------------
def test_array_throttle_summary_and_expand(jobctl):
    jobctl.config("capacity.cpus", "8")
    proc = jobctl("launch", "--name", "sweep", "--array", "0-19%3", "--", "sleep", "0.4", check=True)
    ids = [int(x) for x in proc.stdout.split()]
    assert len(ids) == 20
    peak = 0
    deadline = time.monotonic() + 90
    while True:
        jobs = status_json(jobctl)
        tasks = [j for j in jobs if j["array_id"] == ids[0]]
        running = sum(j["state"] in ("ACTIVE", "FAILING") for j in tasks)
        peak = max(peak, running)
        assert running <= 3, running
        if len(tasks) == 20 and all(j["state"] == "COMPLETED" for j in tasks):
            break
        assert time.monotonic() < deadline, "array did not finish"
        time.sleep(0.1)
    assert peak >= 2  # it did run several at once
    assert sorted(j["array_index"] for j in tasks) == list(range(20))
    assert {j["attempt"] for j in tasks} == {1}  # each completed once
    table = jobctl("status", check=True).stdout.splitlines()
    rows = [line for line in table if "sweep" in line]
    assert len(rows) == 1 and rows[0].split()[:3] == [str(ids[0]), "sweep[0-19]", "COMPLETED"], rows
    assert "(20 completed)" in rows[0]
    expanded = [line for line in jobctl("status", "--expand", check=True).stdout.splitlines() if "sweep-" in line]
    assert len(expanded) == 20


def test_array_summary_while_it_runs(jobctl):
    jobctl.config("capacity.cpus", "8")
    ids = [int(x) for x in jobctl("launch", "--name", "sw", "--array", "0-5%2", "--", "sleep", "30").stdout.split()]

    def summary():
        rows = [line for line in jobctl("status", check=True).stdout.splitlines() if "sw[" in line]
        return rows and "ACTIVE (2 running, 4 pending)" in rows[0] and rows

    rows = wait_until(summary, 20, "the summary row")
    assert rows[0].split()[:2] == [str(ids[0]), "sw[0-5]"]
    waiting = [j for j in status_json(jobctl) if j["state"] == "PENDING"]
    wait_until(
        lambda: all(
            j["status"] == "PENDING (array throttle 2)" for j in status_json(jobctl) if j["state"] == "PENDING"
        ),
        10,
        "throttle status",
    )
    assert len(waiting) == 4
    jobctl("kill", "sw-*", check=True)


def test_array_throttle_zero_is_refused(jobctl):
    for bad in ("0-99%0", "0-9%x", "10%-1"):
        proc = jobctl("launch", "--array", bad, "--", "true")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert count_jobs(jobctl.home) == 0


# -- signals -----------------------------------------------------------------------------------------
TRAP = """
trap 'date +%s.%N > {out}' USR1
while true; do sleep 0.1; done
"""


def test_warning_signal_before_the_timeout(jobctl, tmp_path):
    out = tmp_path / "warned"
    path = write_job(
        tmp_path,
        "warn",
        "signal: USR1@2s\ntimeout: 4s\nrun: |\n"
        + "".join(f"  {line}\n" for line in TRAP.format(out=out).strip().splitlines()),
    )
    job_id = jobctl.launch(path)
    job = jobctl.wait_state(job_id, "FAILED", timeout=30)
    assert job["status"] == "FAILED (timed out)"
    warned = float(out.read_text())
    import sqlite3

    with sqlite3.connect(jobctl.home / "data" / "jobctl.db") as db:  # exact times, not the shown seconds
        started, ended = db.execute("SELECT started_at, ended_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
    # SIGUSR1 about 2 s after the start, i.e. about 2 s before the 4 s timeout kills it
    assert 1.2 <= warned - started <= 2.8, warned - started
    assert 1.2 <= ended - warned <= 2.8, ended - warned


RECORDER = """
import signal, sys, time
out = open(sys.argv[1], "a", buffering=1)
def record(number, frame):
    out.write(signal.Signals(number).name + "\\n")
for sig in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, record)
open(sys.argv[2], "w").close()
while True:
    time.sleep(0.05)
"""


def recorder_job(tmp_path: Path, name: str, extra: str) -> tuple[Path, Path, Path]:
    """A job whose one worker (python, exec'ed by bash) writes down each signal it gets and goes on."""
    script, got, ready = tmp_path / f"{name}.py", tmp_path / f"{name}.got", tmp_path / f"{name}.ready"
    script.write_text(RECORDER)
    path = write_job(tmp_path, name, f"{extra}run: exec {sys.executable} {script} {got} {ready}\n")
    return path, got, ready


def test_kill_with_a_signal_and_the_warning_at_the_start_of_the_grace(jobctl, tmp_path):
    path, got, ready = recorder_job(tmp_path, "k", "signal: USR1@30s\n")
    job_id = jobctl.launch(path)
    wait_until(ready.exists, 30, "the job's handlers")
    proc = jobctl("kill", str(job_id), "--signal", "INT", "--grace", "2s")
    assert proc.returncode == 0, proc.stderr
    jobctl.wait_state(job_id, "KILLED", timeout=30)
    wait_until(lambda: len(got.read_text().split()) >= 2, 10, "both signals")
    assert sorted(got.read_text().split()) == ["SIGINT", "SIGUSR1"]  # INT instead of TERM; SIGKILL after 2 s


def test_preemption_sends_the_warning_at_the_start_of_the_grace(jobctl, tmp_path):
    jobctl.config("capacity.cpus", "1")
    jobctl.config("kill.grace", "2s")
    path, got, ready = recorder_job(tmp_path, "low", "signal: USR1@60s\nresources: {cpus: 1}\n")
    low = jobctl.launch(path)
    wait_until(ready.exists, 30, "the job's handlers")
    high = int(jobctl("launch", "--priority", "10", "--cpus", "1", "--", "true", check=True).stdout)
    jobctl.wait_state(high, "COMPLETED", timeout=60)
    assert sorted(got.read_text().split()[:2]) == ["SIGTERM", "SIGUSR1"]
    jobctl.wait_state(low, "ACTIVE", timeout=30)  # it runs again once the room is free
    jobctl("kill", str(low), "--grace", "0")


def test_kill_signal_bad_name(jobctl):
    job_id = int(jobctl("launch", "--hold", "--", "true", check=True).stdout)
    proc = jobctl("kill", str(job_id), "--signal", "NOPE")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "NOPE" in proc.stderr
    assert jobctl.job(job_id)["status"] == "SUSPENDED (held)"


# -- retention ---------------------------------------------------------------------------------------
def test_retention_keeps_the_newest_finished_jobs(jobctl):
    jobctl.config("retention.max_finished", "5")
    jobctl.config("capacity.cpus", "2")
    ids = [int(jobctl("launch", "--", "echo", str(i), check=True).stdout) for i in range(8)]
    logs = jobctl.home / "state" / "logs"
    wait_until(lambda: count_jobs(jobctl.home) == 5, 60, "retention to leave 5 jobs")
    kept = sorted(j["id"] for j in status_json(jobctl, "--all"))
    assert kept == ids[-5:]
    wait_until(lambda: sorted(int(p.name) for p in logs.iterdir()) == ids[-5:], 10, "their logs alone left")
    assert log_of(jobctl, ids[-1]).strip() == "7"


def test_retention_setting_is_checked(jobctl):
    for key, value in (("retention.max_finished", "-3"), ("retention.max_age", "soon")):
        proc = jobctl("config", "set", key, value)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("value", ["30d", "1h"])
def test_retention_max_age_is_accepted(jobctl, value):
    jobctl("config", "set", "retention.max_age", value, check=True)
    assert jobctl("config", "get", "retention.max_age", check=True).stdout.strip() == value
    assert os.path.exists(jobctl.home)


# -- Slurm: what maps (the sbatch options; a real cluster is exercised by tests/test_slurm.py) -------
def test_sbatch_options_for_hold_begin_throttle_and_signal():
    import datetime as dt

    from jobctl.backends.slurm.client import Submission, sbatch_options

    base = dict(job_id=1, job_name="sweep", attempt=1, logs="/shared/logs", workdir="/shared/w", run="true")
    at = dt.datetime(2026, 11, 30, 22, 0).timestamp()
    opts = sbatch_options(
        Submission(
            **base, array=list(range(100)), throttle=4, hold=True, begin=at, warn_signal=("USR1", 60.0), timeout=3600
        )
    )
    assert "--array=0-99%4" in opts and "--hold" in opts
    assert "--begin=2026-11-30T22:00:00" in opts
    assert "--signal=USR1@90" in opts  # Slurm counts from its own limit: the timeout + 30 s
    plain = sbatch_options(Submission(**base))
    assert not [o for o in plain if o.startswith(("--begin", "--signal", "--hold"))]


def test_retention_forgets_jobs_older_than_max_age(jobctl):
    jobctl.config("retention.max_age", "3s")
    old = int(jobctl("launch", "--wait", "--", "echo", "old", check=True).stdout)
    ended = time.monotonic()
    keeper = int(jobctl("launch", "--", "sleep", "60", check=True).stdout)  # keeps the supervisor busy
    wait_until(lambda: count_jobs(jobctl.home) == 1, 30, "the old job to be forgotten")
    assert time.monotonic() - ended >= 2.0  # not before it was old enough (3 s, less the launch's own time)
    # the row goes first (committed), the folder right after it: wait for that, not for the row alone
    wait_until(lambda: not (jobctl.home / "state" / "logs" / str(old)).exists(), 15, "its log folder to go")
    assert jobctl.job(keeper)["state"] in ("PENDING", "ACTIVE")
    jobctl("kill", str(keeper))


def test_a_long_full_queue_does_not_starve_other_queues(jobctl):
    """100 high-priority jobs held back by their queue's cap fill more than the supervisor's queue
    window (64 jobs): a low-priority job of another queue still starts at once."""
    jobctl.config("capacity.cpus", "4")
    jobctl("queue", "set", "gpu", "--max-running", "1", check=True)
    jobctl("launch", "--queue", "gpu", "--priority", "10", "--array", "100", "--", "sleep", "300", check=True)
    other = int(jobctl("launch", "--", "true", check=True).stdout)
    jobctl.wait_state(other, "COMPLETED", timeout=60)
    tasks = [j for j in status_json(jobctl) if j["queue"] == "gpu"]
    assert sum(j["state"] == "ACTIVE" for j in tasks) == 1
    jobctl("kill", "--all")
