"""Slot runners (jobctl/backends/local/slots.py): one long-lived runner runs short attempts in turn.

What a runner of one attempt guaranteed must hold attempt by attempt: a signal meant for an attempt
that ended changes nothing in the next one; usage and memory limits are per attempt; a runner killed
with -9 loses only the attempt it ran, and its processes; a runner whose supervisor dies leaves.
Real supervisors, real runners, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from helpers import wait_until, write_job
from test_crash_safety import kill_supervisor

MIB = 1024 * 1024


def runner_of(home: Path, job_id: int, attempt: int = 1) -> dict:
    path = home / "state" / "logs" / str(job_id) / str(attempt) / "runner.json"
    wait_until(path.exists, 30, f"the runner of job {job_id}")
    return json.loads(path.read_text())


def gate(home: Path, name: str = "go") -> str:
    return f"while [ ! -e {home / name} ]; do sleep 0.05; done"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def one_after_another(jobctl, home: Path, first: str, second: str) -> tuple[int, int]:
    """Two jobs on one CPU slot: the second starts when the first ended, in the same runner."""
    jobctl.config("capacity.cpus", "1")
    a = jobctl.launch(write_job(home, "first", f"resources: {{cpus: 1}}\nrun: {first}\n"))
    jobctl("wait", str(a), timeout=60)
    b = jobctl.launch(write_job(home, "second", f"resources: {{cpus: 1}}\nrun: {second}\n"))
    jobctl.wait_state(b, "ACTIVE")
    return a, b


def test_short_jobs_run_in_turn_in_one_runner(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    ids = [int(x) for x in jobctl("launch", str(write_job(home, "t", "run: 'true'\n")), "--array", "5").stdout.split()]
    for job_id in ids:
        assert jobctl("wait", str(job_id), timeout=60).returncode == 0
    pids = {runner_of(home, job_id)["pid"] for job_id in ids}
    assert len(pids) == 1, f"five short attempts in a row used {len(pids)} runners"
    # each attempt still has its own identity, result and log
    for job_id in ids:
        result = json.loads((home / "state" / "logs" / str(job_id) / "1" / "result.json").read_text())
        assert result["outcome"] == "completed"


def test_a_late_kill_signal_does_not_end_the_next_attempt(jobctl, home):
    a, b = one_after_another(jobctl, home, "'true'", gate(home))
    runner = runner_of(home, b)
    assert runner["pid"] == runner_of(home, a)["pid"]  # the same runner: the signal below reaches b's attempt
    # what a `kill` of job a that raced its end does: its kill.json, then SIGTERM to the runner it names
    folder_a = home / "state" / "logs" / str(a) / "1"
    (folder_a / "kill.json").write_text(json.dumps({"reason": "killed", "grace": 0, "message": None}))
    os.kill(runner["pid"], signal.SIGTERM)
    os.kill(runner["pid"], signal.SIGUSR1)  # and a late freeze
    jobctl("status", check=True)
    (home / "go").touch()
    assert jobctl.wait_state(b, "COMPLETED", timeout=30)["state"] == "COMPLETED"
    assert alive(runner["pid"])


def test_a_kill_of_the_next_attempt_still_works(jobctl, home):
    a, b = one_after_another(jobctl, home, "'true'", "sleep 600")
    assert runner_of(home, b)["pid"] == runner_of(home, a)["pid"]
    jobctl("kill", str(b), "--grace", "1", check=True)
    assert jobctl.wait_state(b, "KILLED", timeout=30)["state"] == "KILLED"
    result = json.loads((home / "state" / "logs" / str(b) / "1" / "result.json").read_text())
    assert result["outcome"] == "killed"


def test_stop_and_start_freeze_and_thaw_an_attempt_in_a_reused_runner(jobctl, home):
    a, b = one_after_another(jobctl, home, "'true'", "sleep 600")
    runner = runner_of(home, b)
    assert runner["pid"] == runner_of(home, a)["pid"]
    wait_until(lambda: psutil.Process(runner["pid"]).children(), 15, "the worker")
    jobctl("stop", str(b), check=True)
    wait_until(lambda: jobctl.job(b)["state"] == "SUSPENDED", 30, "stopped")
    workers = psutil.Process(runner["pid"]).children(recursive=True)
    wait_until(lambda: all(p.status() == psutil.STATUS_STOPPED for p in workers), 15, "the workers to be frozen")
    jobctl("start", str(b), check=True)
    wait_until(lambda: all(p.status() != psutil.STATUS_STOPPED for p in workers), 15, "the workers to be thawed")
    jobctl("kill", str(b), "--grace", "0", check=True)
    jobctl.wait_state(b, "KILLED", timeout=30)


def test_usage_is_per_attempt_in_a_reused_runner(jobctl, home):
    (home / "hog.py").write_text("b = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n")
    jobctl.config("capacity.cpus", "1")
    hog = jobctl.launch(write_job(home, "hog", f"resources: {{cpus: 1, memory: 1GiB}}\nrun: {sys.executable} hog.py\n"))
    jobctl("wait", str(hog), timeout=60, check=True)
    calm = jobctl.launch(write_job(home, "calm", "resources: {cpus: 1, memory: 1GiB}\nrun: 'true'\n"))
    jobctl("wait", str(calm), timeout=60, check=True)
    assert runner_of(home, hog)["pid"] == runner_of(home, calm)["pid"]
    hog_usage, calm_usage = jobctl.job(hog)["usage"], jobctl.job(calm)["usage"]
    assert hog_usage["max_rss_bytes"] >= 190 * MIB, hog_usage
    assert calm_usage["max_rss_bytes"] < 100 * MIB, calm_usage  # not the earlier attempt's peak
    assert calm_usage["cpu_seconds"] < hog_usage["cpu_seconds"], (hog_usage, calm_usage)


def test_each_attempt_gets_its_own_memory_limit_in_a_reused_runner(jobctl, home):
    from jobctl.backends.local.cgroups import MemoryCgroup

    if not MemoryCgroup.available():
        pytest.skip("no writable memory cgroup here: only sampling guards memory")
    hog = f"{sys.executable} -c \"b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])\""
    jobctl.config("capacity.cpus", "1")
    roomy = jobctl.launch(write_job(home, "roomy", f"resources: {{cpus: 1, memory: 1GiB}}\nrun: {hog}\n"))
    assert jobctl("wait", str(roomy), timeout=60).returncode == 0
    tight = jobctl.launch(write_job(home, "tight", f"resources: {{cpus: 1, memory: 128MiB}}\nrun: {hog}\n"))
    assert jobctl("wait", str(tight), timeout=60).returncode == 137
    assert jobctl.job(tight)["status"] == "FAILED (out of memory)"
    again = jobctl.launch(write_job(home, "again", f"resources: {{cpus: 1, memory: 1GiB}}\nrun: {hog}\n"))
    assert jobctl("wait", str(again), timeout=60).returncode == 0
    assert len({runner_of(home, j)["pid"] for j in (roomy, tight, again)}) == 1


def test_a_slot_runner_killed_mid_attempt_loses_that_attempt_alone(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    doomed = jobctl.launch(write_job(home, "doomed", f"resources: {{cpus: 1}}\nrun: sleep 600 # {home.name}\n"))
    jobctl.wait_state(doomed, "ACTIVE")
    runner = runner_of(home, doomed)
    wait_until(lambda: psutil.Process(runner["pid"]).children(), 15, "the worker")
    worker = psutil.Process(runner["pid"]).children()[0]
    after = jobctl.launch(write_job(home, "after", "resources: {cpus: 1}\nrun: echo next\n"))
    os.kill(runner["pid"], signal.SIGKILL)
    job = jobctl.wait_state(doomed, "FAILED", timeout=30)
    assert job["status"] == "FAILED (worker lost)"
    wait_until(lambda: not alive(worker.pid), 15, "the lost attempt's worker to be killed")
    assert jobctl.wait_state(after, "COMPLETED", timeout=30)["state"] == "COMPLETED"
    assert jobctl("logs", str(after)).stdout == "next\n"
    assert runner_of(home, after)["pid"] != runner["pid"]


def test_an_idle_slot_runner_leaves_with_its_supervisor(jobctl, home):
    job_id = jobctl.launch(write_job(home, "t", "run: 'true'\n"))
    jobctl("wait", str(job_id), timeout=60, check=True)
    runner = runner_of(home, job_id)
    assert alive(runner["pid"])  # kept a few seconds for the next attempt
    kill_supervisor(home)
    wait_until(lambda: not alive(runner["pid"]), 15, "the idle runner to leave")


def test_an_idle_slot_runner_leaves_after_a_few_seconds(jobctl, home):
    from jobctl.backends.local.slots import KEEP_IDLE

    job_id = jobctl.launch(write_job(home, "t", "run: 'true'\n"))
    jobctl("wait", str(job_id), timeout=60, check=True)
    runner = runner_of(home, job_id)
    wait_until(lambda: not alive(runner["pid"]), KEEP_IDLE + 15, "the idle runner to be let go")
