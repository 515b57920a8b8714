"""The supervisor comes back by itself (SPEC section 7), and kills, waits and `ended_at` survive its crashes.

Everything is real: the supervisor is killed with SIGKILL, its lock is held by the test to keep
any supervisor away, jobs end when the test creates a file, and the database is read straight
from the SQLite file when a jobctl command would change what is looked at.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from helpers import Jobctl, stop_everything, wait_until, write_job
from test_crash_safety import kill_supervisor, supervisor_pid


def gate(home: Path, name: str = "go") -> str:
    """A shell loop that ends when the test creates `name` in the home."""
    return f"while [ ! -e {home / name} ]; do sleep 0.05; done"


def db_row(home: Path, job_id: int) -> dict:
    """The job's row read straight from the SQLite file: no jobctl command runs (none may record anything)."""
    with contextlib.closing(sqlite3.connect(home / "data" / "jobctl.db", timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def runner_info(home: Path, job_id: int, attempt: int = 1) -> dict:
    path = home / "state" / "logs" / str(job_id) / str(attempt) / "runner.json"
    return wait_until(lambda: path.exists() and json.loads(path.read_text()), 20, f"runner.json of job {job_id}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def no_supervisor_can_start(home: Path):
    """Hold the supervisor's flock: a supervisor started meanwhile finds it taken and leaves."""
    fd = os.open(home / "run" / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        wait_until(lambda: _try_lock(fd), 20, "the supervisor's lock")
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- (a) nobody types anything ------------------------------------------------------------------
def test_a_blocked_job_starts_after_a_crash_with_no_command_at_all(jobctl, home):
    up = jobctl.launch(write_job(home, "up", f"run: {gate(home)}\n"))
    down = jobctl.launch(write_job(home, "down", f"depends_on: [{up}]\nrun: date +%s.%N > {home / 'down_ran'}\n"))
    jobctl.wait_state(up, "ACTIVE")
    assert jobctl.state(down) == "BLOCKED"
    assert kill_supervisor(home)
    # from here on no jobctl command runs until the downstream job has run
    ended = time.time()
    (home / "go").touch()
    stamp = wait_until(
        lambda: (home / "down_ran").exists() and (home / "down_ran").read_text().strip(),
        30,
        "the blocked job to run with nobody typing",
    )
    assert float(stamp) - ended < 5.0, f"it started {float(stamp) - ended:.1f}s after its upstream ended"
    assert jobctl.wait_state(down, "COMPLETED")["state"] == "COMPLETED"
    assert jobctl.job(up)["state"] == "COMPLETED"


def test_a_runner_ending_after_a_crash_records_itself_through_a_new_supervisor(jobctl, home):
    job_id = jobctl.launch(write_job(home, "short", f"run: {gate(home)}; exit 4\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    assert kill_supervisor(home)
    (home / "go").touch()
    row = wait_until(
        lambda: (r := db_row(home, job_id))["state"] == "FAILED" and r,
        30,
        "the job's end to be recorded with nobody typing",
    )
    assert row["exit_code"] == 4 and row["alloc"] is None
    assert supervisor_pid(home) is not None  # a runner started it


# -- (b) every command that shows or waits on local jobs ------------------------------------------
SHOWING = {
    "status --all --json": lambda j, i: next(
        x for x in json.loads(j("status", "--all", "--json", check=True).stdout) if x["id"] == i
    )["status"],
    "status ID --json": lambda j, i: json.loads(j("status", str(i), "--json", check=True).stdout)[0]["status"],
    "status ID": lambda j, i: j("status", str(i), check=True).stdout,
    "status": lambda j, i: j("status", check=True).stdout,
    "describe ID --json": lambda j, i: j.job(i)["status"],
    "describe ID": lambda j, i: j("describe", str(i), check=True).stdout,
    "wait ID": lambda j, i: (p := j("wait", str(i), timeout=60)).stderr + f"exit={p.returncode}",
    "logs -f ID": lambda j, i: (p := j("logs", "-f", str(i), timeout=60)).stdout + f"exit={p.returncode}",
}


@pytest.mark.parametrize("command", list(SHOWING))
def test_the_first_command_after_a_crash_shows_the_true_end(jobctl, home, command):
    job_id = jobctl.launch(write_job(home, "short", f"run: {gate(home)}; echo bye; exit 3\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    runner = runner_info(home, job_id)
    assert kill_supervisor(home)
    with no_supervisor_can_start(home):  # nothing but the command itself may record the end
        (home / "go").touch()
        wait_until(lambda: gone(runner["pid"]), 30, "the job to end alone")
        assert db_row(home, job_id)["state"] == "ACTIVE"  # nobody has recorded it yet
        shown = SHOWING[command](jobctl, job_id)
    if command == "describe ID":
        shown = "\n".join(line for line in shown.splitlines() if line.startswith(("Status:", "Exit code:")))
    assert "ACTIVE" not in shown
    if command == "wait ID":
        assert "FAILED (exit 3)" in shown and shown.endswith("exit=3")
    elif command == "logs -f ID":
        assert shown == "bye\nexit=0"
    elif command == "describe ID":
        assert "FAILED (exit 3)" in shown and re.search(r"^Exit code: +3$", shown, re.M)
    else:
        assert "FAILED (exit 3)" in shown
    row = db_row(home, job_id)
    assert (row["state"], row["exit_code"], row["alloc"]) == ("FAILED", 3, None)


def test_a_command_after_a_crash_starts_a_supervisor_when_live_jobs_wait(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    first = jobctl.launch(write_job(home, "first", f"resources: {{cpus: 1}}\nrun: {gate(home)}\n"))
    second = jobctl.launch(write_job(home, "second", "resources: {cpus: 1}\nrun: 'true'\n"))
    jobctl.wait_state(first, "ACTIVE")
    for command in (("status", "--all", "--json"), ("status", str(second)), ("describe", str(second))):
        assert kill_supervisor(home)
        jobctl(*command, check=True)
        wait_until(lambda: supervisor_pid(home), 20, f"`{' '.join(command)}` to start a supervisor")
    (home / "go").touch()
    assert jobctl.wait_state(second, "COMPLETED", timeout=30)["state"] == "COMPLETED"


# -- 18.11: ended_at is the job's real end ------------------------------------------------------------
@pytest.mark.parametrize("recorder", ["supervisor", "status"])
def test_ended_at_is_the_real_end_when_the_end_is_noticed_late(jobctl, home, recorder):
    job_id = jobctl.launch(write_job(home, "short", f"run: {gate(home)}; date +%s.%N > {home / 'end'}\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    runner = runner_info(home, job_id)
    assert kill_supervisor(home)
    with no_supervisor_can_start(home):
        (home / "go").touch()
        wait_until(lambda: gone(runner["pid"]), 30, "the job to end alone")
        real_end = float((home / "end").read_text())
        time.sleep(3)  # the scenario itself: the end is noticed seconds later
    if recorder == "status":
        out = jobctl("status", check=True).stdout  # the first command after the crash
        assert "ACTIVE" not in out and "COMPLETED" in out
    else:
        jobctl("supervisor", "start", check=True)  # the supervisor alone records it
        wait_until(lambda: db_row(home, job_id)["state"] == "COMPLETED", 30, "the supervisor to record the end")
    job = jobctl.job(job_id)
    assert job["state"] == "COMPLETED"
    assert abs(epoch(job["ended_at"]) - real_end) < 1.0, (job["ended_at"], real_end)
    assert abs(epoch(job["attempts"][0]["ended_at"]) - real_end) < 1.0
    assert abs(epoch(job["events"][-1]["at"]) - real_end) < 1.0


# -- 18.3: a waiter never hangs, whatever happens to the supervisor -------------------------------------
@pytest.mark.parametrize("how", ["wait", "launch --wait"])
def test_a_waiter_brings_the_supervisor_back_every_time(jobctl, home, how):
    jobctl.config("capacity.cpus", "1")
    first = jobctl.launch(write_job(home, "first", f"resources: {{cpus: 1}}\nrun: {gate(home)}\n"))
    jobctl.wait_state(first, "ACTIVE")
    second_file = write_job(home, "second", "resources: {cpus: 1}\nrun: exit 6\n")
    if how == "wait":
        second = jobctl.launch(second_file)
        args = ["wait", str(second)]
    else:
        args = ["launch", str(second_file), "--wait"]
    waiter = subprocess.Popen(
        [sys.executable, "-m", "jobctl", *args],
        env=jobctl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the waiter waits on a PENDING job: no runner will end to bring a supervisor back, only the waiter
        for round_ in range(3):
            wait_until(lambda: supervisor_pid(home), 20, f"a supervisor (round {round_})")
            if round_ == 1:
                assert jobctl("supervisor", "stop").returncode == 0
            else:
                assert kill_supervisor(home)
            wait_until(lambda: supervisor_pid(home), 20, f"the waiter to bring the supervisor back (round {round_})")
        (home / "go").touch()
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 6, err
    assert "FAILED (exit 6)" in err


# -- 18.5: `supervisor stop` when a `launch --wait` started the supervisor ------------------------------
def test_supervisor_stop_works_when_launch_wait_started_it(jobctl, home):
    path = write_job(home, "w", f"run: {gate(home)}\n")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "jobctl", "launch", str(path), "--wait"],
        env=jobctl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = wait_until(lambda: supervisor_pid(home), 20, "the supervisor that launch --wait starts")
        assert psutil.Process(pid).ppid() != waiter.pid  # fully detached: nobody's child to reap
        stop = jobctl("supervisor", "stop")
        assert stop.returncode == 0, stop.stderr
        assert "stopped" in stop.stderr and "did not stop" not in stop.stderr
        assert supervisor_pid(home) != pid
        (home / "go").touch()
        _, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
    finally:
        if waiter.poll() is None:
            waiter.kill()


def test_supervisor_stop_treats_a_zombie_as_stopped(jobctl, home):
    """A supervisor that is someone's unreaped child has stopped: `stop` says so at once."""
    parent = subprocess.Popen(  # a parent that never reaps: it starts a supervisor and sleeps
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-m', 'jobctl', 'supervisor', 'run']); time.sleep(120)",
        ],
        env=jobctl.env,
    )
    try:
        pid = wait_until(lambda: supervisor_pid(home), 20, "the supervisor")
        started = time.monotonic()
        stop = jobctl("supervisor", "stop")
        assert stop.returncode == 0, stop.stderr
        assert "stopped" in stop.stderr
        assert time.monotonic() - started < 9
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # still unreaped, and yet stopped
    finally:
        parent.kill()
        parent.wait()


# -- 18.4 + 19.2: kill --all racing the scheduler ------------------------------------------------------
def test_kill_all_racing_the_scheduler_leaves_nothing_running():
    rounds = int(os.environ.get("JOBCTL_RACE_ROUNDS", "3"))
    rng = random.Random()
    for round_ in range(rounds):
        home = Path(tempfile.mkdtemp(prefix="jc-", dir="/tmp"))
        try:
            _kill_all_round(Jobctl(home), home, rng.uniform(0.0, 1.0), round_)
        finally:
            stop_everything(home)
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def _kill_all_round(jobctl: Jobctl, home: Path, delay: float, round_: int) -> None:
    token = f"{random.randint(100, 999)}.{uuid.uuid4().int % 10**9}"  # `sleep` takes fractions: a unique argv
    jobctl.config("capacity.cpus", "2")
    path = write_job(home, "k", f"resources: {{cpus: 0.1}}\nrun: sleep {token}\n")
    ids = [int(x) for x in jobctl("launch", str(path), "--array", "30", check=True).stdout.split()]
    time.sleep(delay)  # land the kill at a different moment of the scheduler's work in each round
    proc = jobctl("kill", "--all", "--grace", "1")
    what = f"round {round_} (kill after {delay:.2f}s)"
    assert proc.returncode == 0, f"{what}: {proc.stderr}"
    assert "error" not in proc.stderr.lower() and "Traceback" not in proc.stderr, f"{what}: {proc.stderr}"

    def settled():
        rows = [db_row(home, i) for i in ids]
        return all(r["state"] == "KILLED" and r["alloc"] is None for r in rows)

    wait_until(settled, 60, f"{what}: every job KILLED and its resources freed")

    def sleepers():
        found = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if token in " ".join(p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p.pid)
        return found

    with contextlib.suppress(AssertionError):
        wait_until(lambda: not sleepers(), 15, "the job processes to end")
    assert not sleepers(), f"{what}: job processes still running after kill --all"
    for runner in (home / "state" / "logs").glob("*/*/runner.json"):
        info = json.loads(runner.read_text())
        # a runner of one attempt exits; a slot runner lives on for the next attempt, this one ended
        ended = (runner.parent / "result.json").exists()
        assert gone(info["pid"]) or ended, f"{what}: runner {runner} still runs its attempt"
    errors = list((home / "state" / "logs").rglob("runner-error.log"))
    assert not errors, errors[0].read_text()


def test_the_supervisor_resends_a_kill_that_was_lost(jobctl, home):
    """A job recorded KILLED whose attempt still runs (the kill's signal never arrived) is killed."""
    job_id = jobctl.launch(write_job(home, "lost", f"run: {gate(home)}\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    runner = runner_info(home, job_id)
    assert kill_supervisor(home)
    with contextlib.closing(sqlite3.connect(home / "data" / "jobctl.db", timeout=30)) as conn:
        with conn:  # the kill was recorded, its signal lost (as when it raced the runner's start)
            conn.execute("UPDATE jobs SET state = 'KILLED', reason = 'user' WHERE id = ?", (job_id,))
    jobctl("supervisor", "start", check=True)
    wait_until(lambda: gone(runner["pid"]), 30, "the supervisor to kill the attempt")
    wait_until(lambda: db_row(home, job_id)["alloc"] is None, 30, "the resources to be freed")
    result = json.loads((home / "state" / "logs" / str(job_id) / "1" / "result.json").read_text())
    assert result["outcome"] == "killed"


def test_a_kill_written_before_the_runner_starts_is_honoured(jobctl, home):
    """kill.json in place before the runner looks: it starts no worker at all."""
    jobctl.config("capacity.cpus", "1")
    first = jobctl.launch(write_job(home, "first", f"resources: {{cpus: 1}}\nrun: {gate(home)}\n"))
    jobctl.wait_state(first, "ACTIVE")
    second = jobctl.launch(write_job(home, "second", f"resources: {{cpus: 1}}\nrun: touch {home / 'ran'}\n"))
    folder = home / "state" / "logs" / str(second) / "1"
    folder.mkdir(parents=True)
    (folder / "kill.json").write_text(json.dumps({"reason": "killed", "grace": 0, "message": None}))
    (home / "go").touch()
    wait_until(lambda: (folder / "result.json").exists(), 30, "the second attempt to end")
    assert json.loads((folder / "result.json").read_text())["outcome"] == "killed"
    assert not (home / "ran").exists()


# -- 16: runners are told apart from the supervisor in ps ---------------------------------------------
def test_a_runner_has_its_own_process_title(jobctl, home):
    job_id = jobctl.launch(write_job(home, "titled", f"run: {gate(home)}\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    runner = psutil.Process(runner_info(home, job_id)["pid"])
    assert runner.name() == "jobctl-runner"
    assert " ".join(runner.cmdline()) == f"jobctl-runner job {job_id} attempt 1"
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(runner.pid)], capture_output=True, text=True).stdout
    assert ps.strip() == f"jobctl-runner job {job_id} attempt 1"
    sup = psutil.Process(supervisor_pid(home))
    assert "jobctl-runner" not in " ".join(sup.cmdline()) and sup.name() != "jobctl-runner"
    (home / "go").touch()
    assert jobctl.wait_state(job_id, "COMPLETED", timeout=30)["state"] == "COMPLETED"
