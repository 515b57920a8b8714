"""Issue: crash safety and concurrency. The damage is done for real: SIGKILL, parallel processes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
from helpers import wait_until, write_job


def supervisor_pid(home) -> int | None:
    try:
        info = json.loads((home / "run" / "supervisor.lock").read_text() or "{}")
        proc = psutil.Process(info["pid"])
        if abs(proc.create_time() - info["started"]) < 2 and proc.status() != psutil.STATUS_ZOMBIE:
            return info["pid"]
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None


def kill_supervisor(home) -> bool:
    pid = supervisor_pid(home)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: supervisor_pid(home) != pid, what="supervisor gone")
    return True


def all_jobs(jobctl) -> list[dict]:
    return json.loads(jobctl("status", "--all", "--json", check=True).stdout)


def integrity(home) -> str:
    with sqlite3.connect(home / "data" / "jobctl.db") as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_sigkill_of_the_supervisor_loses_nothing_and_runs_nothing_twice(jobctl, home):
    jobctl.config("capacity.cpus", "2")
    ledger = home / "ledger"
    rng = random.Random(7)
    expected = {}
    files = []
    for i in range(50):
        duration = rng.choice([0, 0.2, 0.5, 1.0, 1.5])
        code = rng.choice([0, 0, 0, 3, 7])
        path = write_job(
            home,
            f"w{i}",
            f"resources: {{cpus: 1}}\nrun: |\n  echo $JOBCTL_JOB_ID >> {ledger}\n  sleep {duration}\n  exit {code}\n",
        )
        files.append((path, code))
    out = jobctl("launch", *(str(p) for p, _ in files), check=True).stdout  # one call, one transaction
    ids = [int(x) for x in out.split()]
    expected = {job_id: code for job_id, (_, code) in zip(ids, files)}
    kills = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 0.8))  # let the workload move on between two crashes
        if kill_supervisor(home):
            kills += 1
        jobctl("status", check=True)  # the next CLI call starts the next supervisor
        if all(j["state"] in ("COMPLETED", "FAILED") for j in all_jobs(jobctl)):
            break
    assert kills >= 3
    jobs = {j["id"]: j for j in all_jobs(jobctl)}
    assert sorted(jobs) == sorted(ids)
    crashes = "".join(p.read_text() for p in (home / "state" / "logs").rglob("runner-error.log"))
    assert not crashes, crashes
    for job_id, code in expected.items():
        job = jobs[job_id]
        if code == 0:
            assert job["state"] == "COMPLETED", job
        else:
            assert job["status"] == f"FAILED (exit {code})", job
            assert job["exit_code"] == code
        assert job["attempt"] == 1, job
    runs = ledger.read_text().split()
    assert sorted(map(int, runs)) == sorted(ids), "every job ran exactly once"
    assert integrity(home) == "ok"


def test_jobs_that_end_while_no_supervisor_lives_are_accounted_for(jobctl, home):
    job_id = jobctl.launch(
        write_job(home, "short", f"run: while [ ! -e {home / 'go'} ]; do sleep 0.05; done; exit 4\n")
    )
    jobctl.wait_state(job_id, "ACTIVE")
    kill_supervisor(home)
    runner = json.loads((home / "state" / "logs" / str(job_id) / "1" / "runner.json").read_text())
    (home / "go").touch()
    wait_until(
        lambda: not psutil.pid_exists(runner["pid"]) or psutil.Process(runner["pid"]).status() == psutil.STATUS_ZOMBIE,
        what="the job to end alone",
    )
    assert jobctl("wait", str(job_id)).returncode == 4  # recorded: by a supervisor its runner started, or by wait
    assert jobctl.job(job_id)["status"] == "FAILED (exit 4)"


def test_a_live_job_is_adopted_by_the_next_supervisor(jobctl, home):
    job_id = jobctl.launch(write_job(home, "long", "run: sleep 3; echo survived\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    kill_supervisor(home)
    jobctl("status", check=True)
    wait_until(lambda: supervisor_pid(home), what="a new supervisor")
    job = jobctl.wait_state(job_id, "COMPLETED", timeout=20)
    assert jobctl("logs", str(job_id)).stdout == "survived\n"
    assert job["attempt"] == 1


def test_machine_restart_marks_running_jobs_lost_or_requeued_and_runs_pending_ones(jobctl, home):
    jobctl.config("capacity.cpus", "2")
    lost = jobctl.launch(write_job(home, "lost", "resources: {cpus: 1}\nrun: sleep 60\n"))
    again = jobctl.launch(
        write_job(home, "again", "retries: 1\nresources: {cpus: 1}\nrun: '[ $JOBCTL_ATTEMPT = 2 ] || sleep 60'\n")
    )
    waiting = jobctl.launch(write_job(home, "waiting", "resources: {cpus: 1}\nrun: echo ran\n"))
    jobctl.wait_state(lost, "ACTIVE")
    jobctl.wait_state(again, "ACTIVE")
    assert jobctl.state(waiting) == "PENDING"
    # the "reboot": the supervisor and every process of every job die at once
    victims = [psutil.Process(supervisor_pid(home))]
    for job_id in (lost, again):
        info = json.loads((home / "state" / "logs" / str(job_id) / "1" / "runner.json").read_text())
        runner = psutil.Process(info["pid"])
        victims += [runner, *runner.children(recursive=True)]
    for proc in victims:
        proc.kill()
    psutil.wait_procs(victims, timeout=5)
    jobctl("status", check=True)
    assert jobctl.wait_state(lost, "FAILED")["status"] == "FAILED (worker lost)"
    assert jobctl.wait_state(again, "COMPLETED", timeout=20)["attempt"] == 2
    assert jobctl.wait_state(waiting, "COMPLETED", timeout=20)["state"] == "COMPLETED"
    assert integrity(home) == "ok"


def test_parallel_launches_status_and_kills(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    path = write_job(home, "p", "resources: {cpus: 1}\nrun: sleep 0.1\n")
    procs = []
    for i in range(32):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobctl", "launch", str(path), "--array", "10"],
                env=jobctl.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if i % 4 == 0:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jobctl", "status", "--json"],
                    env=jobctl.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        if i % 8 == 0:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jobctl", "kill", "p-3", "--grace", "0"],
                    env=jobctl.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    launched = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert "locked" not in err and "Traceback" not in err, err
        if proc.args[3] == "launch":
            assert proc.returncode == 0, err
            launched += [int(x) for x in out.split()]
        elif proc.args[3] == "status":
            assert proc.returncode == 0, err
            json.loads(out)
    assert len(launched) == 320 and len(set(launched)) == 320
    jobs = all_jobs(jobctl)
    assert sorted(j["id"] for j in jobs) == sorted(launched)
    jobctl("kill", "--all", "--grace", "0")
    assert integrity(home) == "ok"


def test_secrets_are_never_printed(jobctl, jobctl_inproc, home):
    path = write_job(home, "s", "envs:\n  TOKEN: null\n  PLAIN: visible\nrun: '[ ${#TOKEN} = 7 ]'\n")
    proc = jobctl_inproc("launch", str(path))
    assert proc.returncode == 2 and "TOKEN" in proc.stderr
    job_id = int(jobctl("launch", str(path), "--env", "TOKEN", "--wait", env={"TOKEN": "hunter2"}, check=True).stdout)
    for args in (("describe", str(job_id)), ("describe", str(job_id), "--json"), ("status", "--json"), ("status",)):
        out = jobctl_inproc(*args, check=True)
        assert "hunter2" not in out.stdout + out.stderr
    described = jobctl_inproc.job(job_id)
    assert described["spec"]["envs"] == {"TOKEN": "***", "PLAIN": "visible"}
    assert "hunter2" not in (home / "state" / "supervisor.log").read_text()


def test_a_killed_runner_leaves_no_worker_running_and_a_retry_runs_alone(jobctl, home):
    """kill -9 of an attempt's runner alone: the job is `worker lost`, and its workers, orphaned
    but alive, must not go on running (the message says they vanished), least of all beside the
    retry's attempt 2 (nothing runs twice)."""
    ledger = home / "ledger"
    job_id = jobctl.launch(write_job(home, "orphan", f"retries: 1\nrun: echo $JOBCTL_ATTEMPT >> {ledger}; sleep 60\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    runner_json = home / "state" / "logs" / str(job_id) / "1" / "runner.json"
    info = wait_until(
        lambda: (
            json.loads(runner_json.read_text())
            if runner_json.exists() and "workers" in json.loads(runner_json.read_text() or "{}")
            else None
        ),
        what="the workers",
    )
    worker = psutil.Process(info["workers"]["0"])
    wait_until(lambda: ledger.exists() and ledger.read_text().split() == ["1"], what="attempt 1 to run")
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: jobctl.job(job_id)["attempt"] == 2, timeout=30, what="attempt 2")
    wait_until(
        lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE,
        timeout=15,
        what="attempt 1's orphaned worker to be ended",
    )
    jobctl("kill", str(job_id))
