"""Issue: lifecycle. stop/start/kill/retry, automatic retries, timeouts, dependencies, with real processes."""

from __future__ import annotations

import json
import time

import psutil
from helpers import wait_until, write_job


def job_processes(jobctl, job_id: int) -> list[psutil.Process]:
    """Every live process of the job: the runner's descendants."""
    job = jobctl.job(job_id)
    runner = jobctl.home / "state" / "logs" / str(job_id) / str(job["attempt"]) / "runner.json"
    info = json.loads(runner.read_text())
    try:
        return psutil.Process(info["pid"]).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_stop_freezes_the_tree_and_start_resumes_it(jobctl, home):
    path = write_job(home, "counter", "run: |\n  for i in $(seq 1 30); do echo $i; sleep 0.3; done\n")
    job_id = jobctl.launch(path)
    jobctl.wait_state(job_id, "ACTIVE")
    wait_until(lambda: "3" in jobctl("logs", str(job_id)).stdout.split(), what="some output")
    proc = jobctl("stop", str(job_id))
    assert proc.returncode == 0, proc.stderr
    job = jobctl.job(job_id)
    user = job["user"]
    assert job["status"] == f"SUSPENDED (by {user})"
    wait_until(
        lambda: (
            all(p.status() == psutil.STATUS_STOPPED for p in job_processes(jobctl, job_id))
            and job_processes(jobctl, job_id)
        ),
        what="every process stopped (state T)",
    )
    frozen_at = jobctl("logs", str(job_id)).stdout
    time.sleep(0.5)  # the job must make no progress while frozen
    assert jobctl("logs", str(job_id)).stdout == frozen_at
    assert jobctl("start", str(job_id)).returncode == 0
    job = jobctl.wait_state(job_id, "COMPLETED", timeout=20)
    assert jobctl("logs", str(job_id)).stdout.split() == [str(i) for i in range(1, 31)]
    moves = [(e["from_state"], e["to_state"], e["actor"]) for e in job["events"]]
    assert ("ACTIVE", "SUSPENDED", user) in moves and ("SUSPENDED", "ACTIVE", user) in moves


def test_stop_release_requeues_and_frees(jobctl, home):
    path = write_job(home, "long", "run: echo attempt $JOBCTL_ATTEMPT; sleep 30\n")
    job_id = jobctl.launch(path)
    jobctl.wait_state(job_id, "ACTIVE")
    pids = [p.pid for p in wait_until(lambda: job_processes(jobctl, job_id))]
    assert jobctl("stop", "--release", str(job_id)).returncode == 0
    wait_until(
        lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
        what="released processes gone",
    )
    assert jobctl.job(job_id)["state"] == "SUSPENDED"
    assert jobctl("start", str(job_id)).returncode == 0
    job = jobctl.wait_state(job_id, "ACTIVE")
    assert job["attempt"] == 2
    jobctl("kill", str(job_id), "--grace", "0")


def test_held_pending_job_does_not_start_until_start(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    blocker = jobctl.launch(write_job(home, "blocker", "run: sleep 30\n"))
    jobctl.wait_state(blocker, "ACTIVE")
    waiting = jobctl.launch(write_job(home, "waiting", "run: echo ran\n"))
    assert jobctl.state(waiting) == "PENDING"
    assert jobctl("stop", str(waiting)).returncode == 0
    jobctl("kill", str(blocker), "--grace", "0", check=True)
    jobctl.wait_state(blocker, "KILLED")
    time.sleep(0.5)  # resources are free now, and yet the held job must stay put
    assert jobctl.state(waiting) == "SUSPENDED"
    assert jobctl("start", str(waiting)).returncode == 0
    jobctl.wait_state(waiting, "COMPLETED")


def test_kill_leaves_no_process_behind_even_setsid_and_nohup(jobctl, home):
    marker = home / "escaped"
    path = write_job(
        home,
        "sneaky",
        f"""run: |
  setsid bash -c 'sleep 300; touch {marker}' &
  nohup bash -c 'sleep 300; touch {marker}' > /dev/null 2>&1 &
  ( ( sleep 300 & ) & )
  trap '' TERM
  sleep 300
""",
    )
    job_id = jobctl.launch(path)
    jobctl.wait_state(job_id, "ACTIVE")
    procs = wait_until(
        lambda: (ps := job_processes(jobctl, job_id)) and sum(1 for p in ps if p.name() == "sleep") >= 4 and ps,
        what="all sleepers",
    )
    proc = jobctl("kill", str(job_id), "--grace", "1")
    assert proc.returncode == 0
    job = jobctl.job(job_id)
    assert job["status"] == f"KILLED (by {job['user']})"

    def gone():
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs)

    wait_until(gone, timeout=10, what="every descendant killed")
    assert not marker.exists()
    assert jobctl("wait", str(job_id)).returncode == 137


def test_kill_refuses_finished_jobs_and_bulk_reports_each(jobctl, home):
    done = jobctl.launch(write_job(home, "done", "run: 'true'\n"), "--wait")
    live = jobctl.launch(write_job(home, "live", "run: sleep 30\n"))
    proc = jobctl("kill", str(done), str(live), "--grace", "0")
    assert proc.returncode == 1
    assert f"job {done} is COMPLETED; only unfinished jobs can be killed" in proc.stderr
    assert f"job {live} killed" in proc.stderr
    proc = jobctl("start", str(done))
    assert proc.returncode == 1 and f"job {done} is COMPLETED; only SUSPENDED jobs can be started" in proc.stderr


def test_retry_runs_a_new_attempt_and_keeps_old_logs(jobctl, home):
    flag = home / "flag"
    path = write_job(home, "once", f"run: |\n  echo attempt $JOBCTL_ATTEMPT\n  [ -e {flag} ] || exit 9\n")
    proc = jobctl("launch", str(path), "--wait")
    assert proc.returncode == 9
    job_id = int(proc.stdout)
    flag.write_text("")
    assert jobctl("retry", str(job_id)).returncode == 0
    job = jobctl.wait_state(job_id, "COMPLETED")
    assert job["attempt"] == 2
    assert jobctl("logs", str(job_id), "--attempt", "1").stdout == "attempt 1\n"
    assert jobctl("logs", str(job_id)).stdout == "attempt 2\n"
    assert [a["n"] for a in job["attempts"]] == [1, 2]


def test_automatic_retries_make_a_flaky_job_complete(jobctl, home):
    flag = home / "tried"
    path = write_job(
        home,
        "flaky",
        f"retries: 2\nrun: |\n  if [ ! -e {flag} ]; then touch {flag}; exit 1; fi\n  echo second time lucky\n",
    )
    job_id = jobctl.launch(path)
    job = jobctl.wait_state(job_id, "RETRYING", "COMPLETED", timeout=15)
    if job["state"] == "RETRYING":
        assert job["status"] == "RETRYING (attempt 2/3)"
    job = jobctl.wait_state(job_id, "COMPLETED", timeout=15)
    assert job["attempt"] == 2
    assert any(e["to_state"] == "RETRYING" for e in job["events"])


def test_max_restarts_alias_and_exhausted_retries(jobctl, home):
    path = write_job(home, "hopeless", "resources:\n  job_config: {max_restarts: 1}\nrun: exit 2\n")
    proc = jobctl("launch", str(path), "--wait", timeout=60)
    assert proc.returncode == 2
    job = jobctl.job(int(proc.stdout))
    assert job["state"] == "FAILED" and job["attempt"] == 2 and job["max_attempts"] == 2


def test_a_user_kill_is_not_retried(jobctl, home):
    job_id = jobctl.launch(write_job(home, "k", "retries: 3\nrun: sleep 30\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    jobctl("kill", str(job_id), "--grace", "0", check=True)
    time.sleep(1.5)  # longer than the first retry back-off: it must not come back
    job = jobctl.job(job_id)
    assert job["state"] == "KILLED" and job["attempt"] == 1


def test_timeout_fails_a_long_job_quickly(jobctl, home):
    path = write_job(home, "slow", "timeout: 2s\nrun: sleep 60\n")
    started = time.monotonic()
    proc = jobctl("launch", str(path), "--wait")
    elapsed = time.monotonic() - started
    assert proc.returncode == 124
    job = jobctl.job(int(proc.stdout))
    assert job["status"] == "FAILED (timed out)" and job["reason"] == "timed_out"
    assert elapsed < 4.0, elapsed


def test_frozen_time_does_not_count_against_timeout(jobctl, home):
    path = write_job(home, "pausable", "timeout: 3s\nrun: sleep 2\n")
    job_id = jobctl.launch(path)
    jobctl.wait_state(job_id, "ACTIVE")
    jobctl("stop", str(job_id), check=True)
    time.sleep(2.5)  # frozen for longer than the remaining time
    jobctl("start", str(job_id), check=True)
    assert jobctl.wait_state(job_id, "COMPLETED", "FAILED", timeout=10)["state"] == "COMPLETED"


def test_queue_timeout(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    blocker = jobctl.launch(write_job(home, "hog", "run: sleep 30\n"))
    jobctl.wait_state(blocker, "ACTIVE")
    job_id = jobctl.launch(write_job(home, "impatient", "queue_timeout: 1s\nrun: echo never\n"))
    job = jobctl.wait_state(job_id, "FAILED", timeout=10)
    assert job["status"] == "FAILED (queue timeout)"
    jobctl("kill", str(blocker), "--grace", "0")


def test_chain_with_a_failed_head_fails_downstream_without_running(jobctl, home):
    a = jobctl.launch(write_job(home, "a", "run: sleep 4; exit 1\n"))
    b = jobctl.launch(write_job(home, "b", "depends_on: a\nrun: touch ran-b\n"))
    c = jobctl.launch(write_job(home, "c", f"depends_on: [{b}]\nrun: touch ran-c\n"))
    assert jobctl.job(b)["status"] == f"BLOCKED (after {a})"
    assert jobctl.job(c)["status"] == f"BLOCKED (after {b})"
    jobctl.wait_state(a, "FAILED")
    for job_id in (b, c):
        job = jobctl.wait_state(job_id, "FAILED", timeout=5)
        assert job["status"] == "FAILED (upstream failed)" and job["attempt"] == 0
    assert not (home / "ran-b").exists() and not (home / "ran-c").exists()


def test_dependency_conditions(jobctl, home):
    bad = jobctl.launch(write_job(home, "bad", "run: exit 1\n"))
    on_fail = jobctl.launch(write_job(home, "cleanup", "depends_on: [{job: bad, condition: failed}]\nrun: 'true'\n"))
    on_any = jobctl.launch(write_job(home, "report", f"depends_on: [{{job: {bad}, condition: any}}]\nrun: 'true'\n"))
    on_ok = jobctl.launch(write_job(home, "deploy", "depends_on: bad\nrun: 'true'\n"))
    assert jobctl.wait_state(on_fail, "COMPLETED")["state"] == "COMPLETED"
    assert jobctl.wait_state(on_any, "COMPLETED")["state"] == "COMPLETED"
    assert jobctl.wait_state(on_ok, "FAILED")["reason"] == "upstream_failed"


def test_unknown_dependency_and_cycles_are_refused(jobctl_inproc, home):
    proc = jobctl_inproc("launch", str(write_job(home, "orphan", "depends_on: ghost\nrun: 'true'\n")))
    assert proc.returncode == 2 and "ghost" in proc.stderr
    x = write_job(home, "x", "name: x\ndepends_on: y\nrun: 'true'\n")
    y = write_job(home, "y", "name: y\ndepends_on: x\nrun: 'true'\n")
    proc = jobctl_inproc("launch", str(x), str(y))
    assert proc.returncode == 2 and "cycle" in proc.stderr
    assert json.loads(jobctl_inproc("status", "--json").stdout) == []


def test_describe_shows_the_timeline(jobctl, home):
    job_id = jobctl.launch(write_job(home, "t", "run: 'true'\n"), "--wait")
    text = jobctl("describe", str(job_id), check=True).stdout
    for move in ("- -> CREATED", "CREATED -> PENDING", "PENDING -> ACTIVE", "ACTIVE -> COMPLETED"):
        assert move in text
