"""Attempt numbering across automatic and manual retries, and dependencies after `retry` and `rm`.

One numbering everywhere (see `jobctl.states.attempt_text`): attempts are numbered 1, 2, 3 ... over
the job's life; `max_attempts` is the number of the last attempt automatic retries may reach;
`RETRYING (attempt k/n)` names the next attempt. All through the real CLI, with real processes.
"""

from __future__ import annotations

import json
import re

from helpers import wait_until, write_job

from jobctl.core.states import attempt_text

FAILED_EVENT = re.compile(r"attempt (\d+) failed \(exit 1\); attempt (\d+) of at most (\d+) in ")


def check_views(jobctl, job_id: int) -> dict:
    """attempt, max_attempts, STATUS, `describe`, `status`, events, attempts and logs all agree."""

    def key(j: dict) -> tuple:
        return j["state"], j["attempt"], j["max_attempts"], j["status"], len(j["events"])

    for _ in range(50):  # the views are read by separate commands: take them while the job stands still
        job = jobctl.job(job_id)
        text = jobctl("describe", str(job_id), check=True).stdout
        row = next(r for r in json.loads(jobctl("status", str(job_id), "--json", check=True).stdout))
        if key(jobctl.job(job_id)) == key(job):
            break
    n, last = job["attempt"], job["max_attempts"]
    assert 0 <= n <= last, job
    assert re.search(rf"^Attempt: +{re.escape(attempt_text(n, last))}$", text, re.M), text
    assert re.search(rf"^Status: +{re.escape(job['status'])}$", text, re.M), text
    assert (row["attempt"], row["max_attempts"], row["status"]) == (n, last, job["status"])
    assert [a["n"] for a in job["attempts"]] == list(range(1, n + 1))
    if job["state"] == "RETRYING":
        assert job["status"] == f"RETRYING (attempt {n + 1}/{last})"
    if job["state"] == "FAILED" and job["reason"] == "exit_code":
        assert n == last, "a job fails for good only when its last allowed attempt failed"
    failed = []  # every "attempt k failed" event names the attempt that just ended and the next one
    for event in job["events"]:
        if event["to_state"] == "RETRYING":
            k, nxt, cap = map(int, FAILED_EVENT.search(event["message"]).groups())
            assert nxt == k + 1 and k < cap and k <= n
            failed.append(k)
    assert failed == sorted(set(failed))
    for k in range(1, n + 1):  # JOBCTL_ATTEMPT is the same number
        if job["attempts"][k - 1]["started_at"] is not None:
            assert jobctl("logs", str(job_id), "--attempt", str(k)).stdout.startswith(f"attempt {k}\n")
    return job


def test_attempt_numbers_agree_after_automatic_and_manual_retries(jobctl, home):
    path = write_job(home, "flaky", "retries: 1\nrun: |\n  echo attempt $JOBCTL_ATTEMPT\n  exit 1\n")
    proc = jobctl("launch", str(path), "--wait", timeout=60)
    assert proc.returncode == 1
    job_id = int(proc.stdout)
    job = check_views(jobctl, job_id)
    assert (job["state"], job["attempt"], job["max_attempts"]) == ("FAILED", 2, 2)
    for expected in (4, 6):  # each manual retry: a new attempt and a fresh retries budget
        proc = jobctl("retry", str(job_id))
        assert proc.returncode == 0, proc.stderr
        assert f"queued again as attempt {expected - 1} of at most {expected}" in proc.stderr
        job = check_views(jobctl, job_id)  # just queued: nothing run yet in this round
        seen = wait_until(
            lambda: (
                (j := jobctl.job(job_id))["state"] in ("RETRYING", "FAILED")
                and j
                and j["attempt"] >= expected - 1
                and j
            ),
            30,
            "the retried attempt to fail",
        )
        if seen["state"] == "RETRYING":
            check_views(jobctl, job_id)
        job = jobctl.wait_state(job_id, "FAILED", timeout=30)
        job = check_views(jobctl, job_id)
        assert (job["attempt"], job["max_attempts"]) == (expected, expected)
        assert job["status"] == "FAILED (exit 1)"


def test_a_kill_then_retry_gives_a_fresh_budget(jobctl, home):
    job_id = jobctl.launch(write_job(home, "k", "retries: 1\nrun: |\n  echo attempt $JOBCTL_ATTEMPT\n  sleep 30\n"))
    jobctl.wait_state(job_id, "ACTIVE", timeout=20)
    jobctl("kill", str(job_id), "--grace", "0", check=True)
    job = check_views(jobctl, job_id)
    assert (job["state"], job["attempt"], job["max_attempts"]) == ("KILLED", 1, 2)
    assert jobctl("retry", str(job_id)).returncode == 0
    wait_until(lambda: jobctl.job(job_id)["attempt"] == 2, 20, "attempt 2 to start")
    job = check_views(jobctl, job_id)
    assert job["max_attempts"] == 3
    jobctl("kill", str(job_id), "--grace", "0", check=True)


def test_a_preempted_attempt_does_not_use_up_the_retries(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    low = jobctl.launch(
        write_job(
            home,
            "low",
            "retries: 1\nrun: |\n  echo attempt $JOBCTL_ATTEMPT\n"
            "  if [ $JOBCTL_ATTEMPT = 1 ]; then sleep 60; fi\n  exit 1\n",
        )
    )
    jobctl.wait_state(low, "ACTIVE", timeout=20)
    high = jobctl.launch(write_job(home, "high", "priority: 5\nrun: echo attempt $JOBCTL_ATTEMPT\n"))
    jobctl.wait_state(high, "COMPLETED", timeout=30)
    job = jobctl.wait_state(low, "FAILED", timeout=40)
    job = check_views(jobctl, low)
    # attempt 1 preempted, attempt 2 failed, attempt 3 (its one retry) failed
    assert (job["attempt"], job["max_attempts"]) == (3, 3)
    assert [a["outcome"] for a in job["attempts"]] == ["preempted", "exit_code", "exit_code"]


# -- dependencies after retry and rm ------------------------------------------------------------


def test_retrying_a_failed_upstream_requeues_the_chain_it_failed(jobctl, home):
    flag = home / "fixed"
    up = jobctl.launch(write_job(home, "up", f"run: '[ -e {flag} ]'\n"))
    mid = jobctl.launch(write_job(home, "mid", "depends_on: up\nrun: 'true'\n"))
    down = jobctl.launch(write_job(home, "down", f"depends_on: [{mid}]\nrun: 'true'\n"))
    for job_id in (mid, down):
        assert jobctl.wait_state(job_id, "FAILED", timeout=30)["status"] == "FAILED (upstream failed)"
    flag.write_text("")
    proc = jobctl("retry", str(up))
    assert proc.returncode == 0 and f"dependents {mid}, {down} wait for it again" in proc.stderr, proc.stderr
    for job_id in (up, mid, down):
        job = jobctl.wait_state(job_id, "COMPLETED", timeout=30)
    assert job["attempt"] == 1 and any("was retried" in (e["message"] or "") for e in job["events"])


def test_retry_of_a_dependent_whose_upstream_still_failed_is_refused(jobctl, home):
    up = jobctl.launch(write_job(home, "up", "run: exit 1\n"))
    down = jobctl.launch(write_job(home, "down", "depends_on: up\nrun: 'true'\n"))
    jobctl.wait_state(down, "FAILED", timeout=30)
    proc = jobctl("retry", "down")
    assert proc.returncode == 1
    assert f"job {down} (down) depends on job {up} (up), which is FAILED; retry {up} first" in proc.stderr
    assert "queued again" not in proc.stderr and "Traceback" not in proc.stderr
    job = jobctl.job(down)
    assert (job["state"], job["reason"]) == ("FAILED", "upstream_failed")
    # Both at once, upstream first: the upstream's retry requeues the dependent; both say so.
    proc = jobctl("retry", "up", "down")
    assert proc.returncode == 0, proc.stderr
    assert jobctl.job(down)["state"] in ("BLOCKED", "FAILED")  # up fails again, and down with it
    jobctl.wait_state(down, "FAILED", timeout=30)


def test_condition_failed_on_a_completed_upstream_says_so(jobctl, home):
    up = jobctl.launch(write_job(home, "up", "run: 'true'\n"))
    cleanup = jobctl.launch(write_job(home, "cleanup", "depends_on: [{job: up, condition: failed}]\nrun: 'true'\n"))
    job = jobctl.wait_state(cleanup, "FAILED", timeout=30)
    assert job["status"] == "FAILED (upstream completed)" and job["reason"] == "upstream_completed"
    assert f"dependency {up} (up) completed, but this job runs only after a failure" in job["message"]
    assert job["attempt"] == 0 and not job["attempts"]
    proc = jobctl("retry", str(cleanup))
    assert proc.returncode == 1 and "(condition: failed), and it COMPLETED; it cannot run" in proc.stderr


def test_rm_keeps_an_upstream_that_an_unfinished_job_needs(jobctl, home):
    up = jobctl.launch(write_job(home, "up", "run: 'true'\n"), "--wait")
    slow = jobctl.launch(write_job(home, "slow", "run: sleep 30\n"))
    down = jobctl.launch(
        write_job(home, "down", f"depends_on: [{up}, {slow}]\nrun: echo attempt $JOBCTL_ATTEMPT; exit 3\n")
    )
    assert jobctl.job(down)["state"] == "BLOCKED"
    proc = jobctl("rm", str(up))
    assert proc.returncode == 1
    assert (
        f"job {up} is a dependency of job {down} (down), which is BLOCKED; kill or remove that job first" in proc.stderr
    )
    assert jobctl.job(up)["state"] == "COMPLETED"
    # Once the dependent has run, the upstream may go; a retry then no longer waits for it.
    assert jobctl("rm", str(slow)).returncode == 1  # still running
    jobctl("kill", str(slow), "--grace", "0", check=True)
    assert jobctl.wait_state(down, "FAILED", timeout=30)["reason"] == "upstream_failed"
    assert jobctl("rm", str(up)).returncode == 0
    proc = jobctl("retry", str(down))
    assert proc.returncode == 1 and f"depends on job {up}, which was removed; it can never run" in proc.stderr


def test_a_removed_upstream_no_longer_holds_back_a_job_that_ran(jobctl, home):
    up = jobctl.launch(write_job(home, "up", "run: 'true'\n"), "--wait")
    down = jobctl.launch(write_job(home, "down", f"depends_on: [{up}]\nrun: echo attempt $JOBCTL_ATTEMPT; exit 3\n"))
    assert jobctl.wait_state(down, "FAILED", timeout=30)["status"] == "FAILED (exit 3)"
    assert jobctl("rm", str(up)).returncode == 0
    proc = jobctl("retry", str(down))
    assert proc.returncode == 0, proc.stderr
    job = wait_until(
        lambda: (j := jobctl.job(down))["attempt"] == 2 and j["state"] == "FAILED" and j, 30, "the retried job to run"
    )
    assert job["status"] == "FAILED (exit 3)" and job["depends_on"] == []
