"""Issue: the Slurm backend, against a real Slurm cluster (real sbatch/squeue/sacct/scontrol/scancel).

Every test runs the real CLI with `--backend slurm` and checks what jobctl shows and what Slurm
did. The dev cluster (scripts/slurm-dev-cluster.sh) is a single node with 2 CPUs and 4 fake H100s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import count_jobs, wait_until, write_job


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not _cluster_up(),
        reason="no Slurm cluster reachable (sinfo failed); start one with: sudo bash scripts/slurm-dev-cluster.sh",
    ),
]


@pytest.fixture
def slurm(jobctl):
    """The CLI with jobs on Slurm by default; whatever a test leaves running is cancelled after it."""
    jobctl.config("backend", '"slurm"')
    yield jobctl
    jobctl("kill", "--all")


def slurm_state(job: dict) -> tuple[str, str]:
    """(state, reason) as squeue shows the job's Slurm job."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-o", "%T|%r", "-j", job["backend_id"]],
        capture_output=True,
        text=True,
        timeout=15,
    ).stdout.strip()
    return tuple(out.split("|", 1)) if out else ("", "")


def logs(jobctl, job_id: int, *args: str) -> str:
    return jobctl("logs", str(job_id), *args).stdout


def test_launch_wait_completes_and_logs_show_the_output(slurm, home):
    path = write_job(
        home,
        "hello",
        """setup: echo setting up on $JOBCTL_NODE_RANK
run: |
  echo "job=$JOBCTL_JOB_ID name=$JOBCTL_JOB_NAME attempt=$JOBCTL_ATTEMPT rank=$JOBCTL_NODE_RANK/$JOBCTL_NUM_NODES"
  echo "greeting=$GREETING secret=$TOKEN cvd=${CUDA_VISIBLE_DEVICES:-none}"
envs: {GREETING: "hello world", TOKEN: null}
labels: {team: vision}
""",
    )
    started = time.monotonic()
    proc = slurm("launch", str(path), "--wait", "--env", "TOKEN=s3cret")
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)
    assert time.monotonic() - started < 20
    assert logs(slurm, job_id) == (
        f"setting up on 0\njob={job_id} name=hello attempt=1 rank=0/1\ngreeting=hello world secret=s3cret cvd=none\n"
    )
    job = slurm.job(job_id)
    assert (job["status"], job["backend"], job["exit_code"]) == ("COMPLETED", "slurm", 0)
    assert re.fullmatch(r"\d+", job["backend_id"]) and job["started_at"] and job["ended_at"]
    assert [w["state"] for w in job["workers"]] == ["exited"]
    comment = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%k", "-j", job["backend_id"]], capture_output=True, text=True
    ).stdout.strip()
    assert comment in ("team=vision", "")  # the labels, while Slurm still remembers the job


def test_a_failing_job_shows_its_exit_code_and_wait_exits_with_it(slurm, home):
    proc = slurm("launch", str(write_job(home, "fail", "run: echo oops; exit 3\n")), "--wait")
    assert proc.returncode == 3
    job = slurm.job(int(proc.stdout))
    assert (job["status"], job["reason"], job["exit_code"]) == ("FAILED (exit 3)", "exit_code", 3)
    assert logs(slurm, job["id"]) == "oops\n"
    assert slurm("wait", str(job["id"])).returncode == 3


def test_a_failing_setup_is_setup_failed(slurm, home):
    proc = slurm("launch", str(write_job(home, "badsetup", "setup: exit 4\nrun: echo never\n")), "--wait")
    job = slurm.job(int(proc.stdout))
    assert job["status"] == "FAILED (setup failed)" and "never" not in logs(slurm, job["id"])


def test_stop_suspends_a_running_job_and_start_resumes_it(slurm, home):
    path = write_job(home, "ticker", "run: |\n  for i in $(seq 1 150); do echo $i; sleep 0.1; done\n")
    job_id = slurm.launch(path)
    wait_until(lambda: len(logs(slurm, job_id).split()) >= 3, timeout=30, what="some output")
    assert slurm("stop", str(job_id)).returncode == 0
    job = slurm.job(job_id)
    assert job["status"] == f"SUSPENDED (by {job['user']})"
    assert slurm_state(job)[0] == "SUSPENDED"

    def frozen():  # Slurm stops the processes within a couple of seconds
        before = logs(slurm, job_id)
        time.sleep(1.0)
        return logs(slurm, job_id) == before

    wait_until(frozen, timeout=15, what="no progress while suspended")
    assert slurm.job(job_id)["state"] == "SUSPENDED"  # still, after several refreshes
    assert slurm("start", str(job_id)).returncode == 0
    assert slurm_state(slurm.job(job_id))[0] == "RUNNING"
    proc = slurm("wait", str(job_id), timeout=60)
    assert proc.returncode == 0
    assert logs(slurm, job_id).split() == [str(i) for i in range(1, 151)]
    moves = [(e["from_state"], e["to_state"]) for e in slurm.job(job_id)["events"]]
    assert ("ACTIVE", "SUSPENDED") in moves and ("SUSPENDED", "ACTIVE") in moves


def test_kill_cancels_the_slurm_job(slurm, home):
    job_id = slurm.launch(write_job(home, "sleeper", "run: sleep 300\n"))
    job = slurm.wait_state(job_id, "ACTIVE", timeout=30)
    proc = slurm("kill", str(job_id))
    assert proc.returncode == 0 and f"job {job_id} killed" in proc.stderr
    assert slurm.job(job_id)["status"] == f"KILLED (by {job['user']})"
    wait_until(lambda: slurm_state(job)[0] in ("CANCELLED", ""), timeout=15, what="Slurm to cancel it")
    assert slurm("wait", str(job_id)).returncode == 137


def test_a_job_cancelled_outside_jobctl_is_killed(slurm, home):
    job_id = slurm.launch(write_job(home, "victim", "run: sleep 300\n"))
    job = slurm.wait_state(job_id, "ACTIVE", timeout=30)
    subprocess.run(["scancel", job["backend_id"]], check=True, timeout=15)
    job = slurm.wait_state(job_id, "KILLED", timeout=15)
    assert job["status"] == "KILLED (in Slurm)" and "cancelled in Slurm" in job["message"]


def test_a_dependency_chain_fails_downstream_when_upstream_fails(slurm, home):
    path = write_job(
        home, "chain", "name: chain\n---\nname: a\nrun: exit 1\n---\nname: b\nrun: echo b\n---\nname: c\nrun: echo c\n"
    )
    proc = slurm("launch", str(path), "--wait")
    assert proc.returncode == 1
    a, b, c = (slurm.job(int(i)) for i in proc.stdout.split())
    assert a["status"] == "FAILED (exit 1)"
    assert b["status"] == c["status"] == "FAILED (upstream failed)"
    assert f"dependency {a['id']} (a) ended FAILED" in b["message"]


def test_a_dependency_chain_runs_in_order_and_conditions_map(slurm, home):
    order = home / "order"
    path = write_job(
        home,
        "pipe",
        f"""name: pipe
---
name: first
run: sleep 4; echo first >> {order}
---
name: second
run: echo second >> {order}; exit 2
""",
    )
    proc = slurm("launch", str(path))
    first, second = (int(i) for i in proc.stdout.split())
    after = write_job(
        home,
        "after",
        f"name: cleanup\ndepends_on: [{{job: {second}, condition: failed}}]\nrun: echo cleanup >> {order}\n",
    )
    cleanup = slurm.launch(after)
    script = (home / "state" / "logs" / str(cleanup) / "1" / "sbatch.sh").read_text()
    assert f"--dependency=afternotok:{slurm.job(second)['backend_id']}" in script
    assert slurm("wait", str(cleanup), timeout=60).returncode == 0
    assert order.read_text() == "first\nsecond\ncleanup\n"
    assert slurm.job(second)["status"] == "FAILED (exit 2)" and slurm.job(first)["status"] == "COMPLETED"


def test_a_dependency_on_a_local_job_is_refused(slurm, home):
    local = slurm.launch(write_job(home, "local", "run: 'true'\n"), "--backend", "local", "--wait")
    proc = slurm("launch", str(write_job(home, "needs", f"depends_on: [{local}]\nrun: echo\n")))
    assert proc.returncode == 2
    assert f"depends on job {local} (local), which runs on the local backend" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert count_jobs(home) == 1  # refused before anything was recorded


def test_a_local_job_starts_when_its_slurm_upstream_ends_without_any_command(slurm, home):
    flag = home / "ran"
    upstream = slurm.launch(write_job(home, "up", "run: sleep 2\n"))
    slurm.launch(write_job(home, "down", f"depends_on: [{upstream}]\nrun: touch {flag}\n"), "--backend", "local")
    wait_until(flag.exists, timeout=40, what="the local job to start after its Slurm upstream (no CLI polling)")


def test_an_array_is_one_sbatch_with_one_jobctl_job_per_index(slurm, home):
    path = write_job(
        home, "sweep", "run: echo index=$JOBCTL_ARRAY_INDEX job=$JOBCTL_JOB_ID; [ $JOBCTL_ARRAY_INDEX -ne 2 ]\n"
    )
    proc = slurm("launch", str(path), "--array", "1-3", "--wait")
    assert proc.returncode == 1
    jobs = [slurm.job(int(i)) for i in proc.stdout.split()]
    array_id = jobs[0]["backend_id"].split("_")[0]
    assert [j["backend_id"] for j in jobs] == [f"{array_id}_{i}" for i in (1, 2, 3)]
    assert [j["status"] for j in jobs] == ["COMPLETED", "FAILED (exit 1)", "COMPLETED"]
    assert [j["name"] for j in jobs] == ["sweep-1", "sweep-2", "sweep-3"]
    for job, index in zip(jobs, (1, 2, 3)):
        assert logs(slurm, job["id"]) == f"index={index} job={job['id']}\n"


def test_a_gpu_job_sees_its_own_devices(slurm, home):
    path = write_job(
        home,
        "gpus",
        "resources: {accelerators: H100:2}\nrun: echo cvd=$CUDA_VISIBLE_DEVICES acc=$JOBCTL_ACCELERATORS\n",
    )
    proc = slurm("launch", str(path), "--wait")
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)
    out = logs(slurm, job_id)
    devices = re.fullmatch(r"cvd=(\S+) acc=H100:(\S+)\n", out)
    assert devices and len(devices.group(1).split(",")) == 2 and devices.group(1) == devices.group(2), out
    offer = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout
    gres = "--gres=gpu:h100:2" if "gpu:h100" in offer else "--gres=gpu:2"
    assert gres in (home / "state" / "logs" / str(job_id) / "1" / "sbatch.sh").read_text()
    if "gpu:h100" in offer:  # a type the partition does not offer: a warning, and any GPU
        proc = slurm(
            "launch", str(write_job(home, "a100", "resources: {accelerators: A100:1}\nrun: echo\n")), "--dry-run"
        )
        assert proc.returncode == 0 and "warning: accelerators: the Slurm partition offers no A100" in proc.stderr


def test_submission_errors_are_one_line_and_mark_the_job(slurm, home):
    path = write_job(home, "job", "run: echo hi\n")
    slurm.config("slurm.partition", '"nosuch"')
    proc = slurm("launch", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: slurm.partition: invalid partition specified")
    (job,) = json.loads(slurm("status", "--all", "--json").stdout)
    assert job["status"] == "FAILED (submit error)" and "nosuch" in job["message"]
    (home / "config.toml").write_text('backend = "slurm"\n')
    proc = slurm("launch", str(path), "--memory", "100000GiB")  # refused by sbatch --test-only, not recorded
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "can never start in Slurm: Requested node configuration is not available" in proc.stderr
    assert count_jobs(home) == 1


def test_retry_resubmits_as_a_new_attempt(slurm, home):
    flag = home / "flag"
    path = write_job(home, "once", f"run: |\n  echo attempt $JOBCTL_ATTEMPT\n  [ -e {flag} ] || exit 9\n")
    proc = slurm("launch", str(path), "--wait")
    assert proc.returncode == 9
    job_id = int(proc.stdout)
    first = slurm.job(job_id)["backend_id"]
    flag.write_text("")
    assert slurm("retry", str(job_id)).returncode == 0
    assert slurm("wait", str(job_id), timeout=60).returncode == 0
    job = slurm.job(job_id)
    assert job["attempt"] == 2 and job["backend_id"] != first
    assert logs(slurm, job_id, "--attempt", "1") == "attempt 1\n" and logs(slurm, job_id) == "attempt 2\n"


def test_automatic_retries_resubmit_a_flaky_job(slurm, home):
    flag = home / "tried"
    path = write_job(home, "flaky", f"retries: 1\nrun: |\n  if [ ! -e {flag} ]; then touch {flag}; exit 1; fi\n")
    proc = slurm("launch", str(path), "--wait", timeout=90)
    assert proc.returncode == 0, proc.stderr
    job = slurm.job(int(proc.stdout))
    assert (job["status"], job["attempt"]) == ("COMPLETED", 2)
    assert "RETRYING" in [e["to_state"] for e in job["events"]]


def test_a_held_pending_job_waits_for_start(slurm, home):
    blocker = slurm.launch(write_job(home, "blocker", "resources: {cpus: 2}\nrun: sleep 300\n"))
    slurm.wait_state(blocker, "ACTIVE", timeout=30)
    waiting = slurm.launch(write_job(home, "waiting", "resources: {cpus: 2}\nrun: echo ran\n"))
    assert slurm.state(waiting) == "PENDING"
    assert slurm("stop", str(waiting)).returncode == 0
    assert slurm_state(slurm.job(waiting))[1].startswith("JobHeld")
    slurm("kill", str(blocker), check=True)
    time.sleep(2)  # the node is free now, and yet the held job must stay put
    assert slurm.state(waiting) == "SUSPENDED"
    assert slurm("start", str(waiting)).returncode == 0
    assert slurm("wait", str(waiting), timeout=60).returncode == 0


def test_stop_release_requeues_held_and_start_runs_a_new_attempt(slurm, home):
    job_id = slurm.launch(write_job(home, "long", "run: echo attempt $JOBCTL_ATTEMPT; sleep 300\n"))
    slurm.wait_state(job_id, "ACTIVE", timeout=30)
    assert slurm("stop", "--release", str(job_id)).returncode == 0
    job = slurm.job(job_id)
    assert job["state"] == "SUSPENDED"
    wait_until(
        lambda: slurm_state(job) == ("PENDING", "job requeued in held state"),
        timeout=15,
        what="Slurm to requeue it held",
    )
    assert slurm.job(job_id)["state"] == "SUSPENDED"
    assert slurm("start", str(job_id)).returncode == 0
    job = slurm.wait_state(job_id, "ACTIVE", timeout=45)  # Slurm waits ~10 s before running a requeued job
    assert job["attempt"] == 2
    wait_until(lambda: logs(slurm, job_id) == "attempt 2\n", timeout=15, what="the second attempt's output")
    assert logs(slurm, job_id, "--attempt", "1") == "attempt 1\n"


def test_an_unreachable_controller_shows_the_last_known_state(slurm, home):
    job_id = slurm.launch(write_job(home, "steady", "run: sleep 300\n"))
    slurm.wait_state(job_id, "ACTIVE", timeout=30)
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    conf = Path(re.search(r"^SLURM_CONF\s*=\s*(\S+)", config, re.M).group(1))
    broken = home / "slurm.conf"  # the same cluster, asked on a port nobody listens on
    broken.write_text(re.sub(r"^SlurmctldPort=.*$", "", conf.read_text(), flags=re.M) + "\nSlurmctldPort=1\n")
    started = time.monotonic()
    proc = slurm("status", "--json", env={"SLURM_CONF": str(broken)})
    assert proc.returncode == 0 and time.monotonic() - started < 15
    (job,) = json.loads(proc.stdout)
    assert job["state"] == "ACTIVE" and job["message"] == "slurm controller unreachable; showing the last known state"
    table = slurm("status", env={"SLURM_CONF": str(broken)}).stdout
    assert "ACTIVE (stale)" in table and "Slurm did not answer" in table
    (job,) = json.loads(slurm("status", "--json").stdout)
    assert job["state"] == "ACTIVE" and job["message"] is None  # reachable again: no longer stale
    proc = slurm("kill", str(job_id), env={"SLURM_CONF": str(broken)})
    assert proc.returncode == 1 and "slurm controller unreachable" in proc.stderr
    job = slurm.job(job_id)
    assert job["state"] == "ACTIVE" and "unchanged: slurm controller unreachable" in job["message"]


def test_queue_timeout_fails_a_job_still_waiting_and_cancels_it(slurm, home):
    upstream = slurm.launch(write_job(home, "upstream", "run: sleep 300\n"))
    waiting = slurm.launch(write_job(home, "impatient", f"depends_on: [{upstream}]\nqueue_timeout: 8s\nrun: echo\n"))
    assert slurm.state(waiting) == "BLOCKED"
    job = slurm.wait_state(waiting, "FAILED", timeout=20)
    assert job["status"] == "FAILED (queue timeout)" and "queue_timeout of 8s" in job["message"]
    wait_until(lambda: slurm_state(job)[0] in ("CANCELLED", ""), timeout=15, what="Slurm to cancel it")


# -- the Slurm backend under real cluster conditions -----------------------------------------------
TRAPPING = """run: |
  trap 'echo got-term > {flag}; exit 0' TERM
  echo ready
  sleep 300 & wait
"""


def test_kill_and_stop_release_run_the_jobs_term_trap(slurm, home):
    killed, released = home / "killed", home / "released"
    a = slurm.launch(write_job(home, "a", TRAPPING.format(flag=killed)))
    b = slurm.launch(write_job(home, "b", TRAPPING.format(flag=released)))
    for job_id in (a, b):  # the two CPUs of the dev cluster may be busy with other jobs for a while
        wait_until(lambda: logs(slurm, job_id) == "ready\n", timeout=90, what=f"job {job_id} to start")
    assert slurm("kill", str(a)).returncode == 0
    assert slurm("stop", "--release", str(b)).returncode == 0
    # the file exists as soon as the trap's redirection opened it: wait for what it wrote
    wait_until(lambda: text(killed) == "got-term\n", timeout=60, what="the TERM trap to run on kill")
    wait_until(lambda: text(released) == "got-term\n", timeout=60, what="the TERM trap to run on stop --release")


def text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def test_a_timeout_runs_the_jobs_term_trap_and_ends_timed_out(slurm, home):
    flag = home / "timed-out"
    path = write_job(home, "slow", "timeout: 5s\n" + TRAPPING.format(flag=flag))
    started = time.monotonic()
    proc = slurm("launch", str(path), "--wait", timeout=60)
    took = time.monotonic() - started
    job = slurm.job(int(proc.stdout))
    assert (proc.returncode, job["status"]) == (124, "FAILED (timed out)"), (job["message"], proc.stderr)
    assert flag.read_text() == "got-term\n"
    assert "timeout of 5s" in job["message"], job["message"]
    assert took < 45, f"a 5 s timeout took {took:.0f} s"  # not Slurm's minute-granular limit
    assert slurm("wait", str(job["id"])).returncode == 124


def test_a_timeout_kills_a_job_ignoring_term_after_the_grace(slurm, home):
    path = write_job(home, "stubborn", "timeout: 3s\nrun: |\n  trap '' TERM\n  echo ready\n  sleep 300\n")
    proc = slurm("launch", str(path), "--wait", timeout=60)
    job = slurm.job(int(proc.stdout))
    assert (proc.returncode, job["status"]) == (124, "FAILED (timed out)"), (job["message"], proc.stderr)


def test_foreign_squeue_settings_or_an_empty_answer_never_end_a_running_job(slurm, home):
    job_id = slurm.launch(write_job(home, "steady", "run: sleep 300\n"))
    job = slurm.wait_state(job_id, "ACTIVE", timeout=30)
    foreign = {
        "SQUEUE_PARTITION": "other",
        "SQUEUE_USERS": "nobody",
        "SQUEUE_ACCOUNT": "x",
        "SQUEUE_NAMES": "x",
        "SACCT_FORMAT": "JobID",
        "SQUEUE_FORMAT": "%i",
        "SLURM_TIME_FORMAT": "relative",
    }
    (row,) = json.loads(slurm("status", "--json", env=foreign).stdout)
    assert row["state"] == "ACTIVE"
    fake = home / "bin"  # a squeue that answers rc 0 and no rows (a controller that just restarted, a filter)
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (fake / "squeue").chmod(0o755)
    path = {"PATH": f"{fake}:{os.environ['PATH']}"}
    for _ in range(3):
        (row,) = json.loads(slurm("status", "--json", env=path).stdout)
        assert row["state"] == "ACTIVE"
    assert slurm.job(job_id)["state"] == "ACTIVE"
    # taken for lost by an older jobctl while Slurm still runs it: kill cancels it there all the same,
    # and retry never leaves a second copy beside it
    other = slurm.launch(write_job(home, "twin", "run: sleep 300\n"))
    twin = slurm.job(other)
    with sqlite3.connect(home / "data" / "jobctl.db") as conn:
        conn.execute("UPDATE jobs SET state = 'FAILED', reason = 'worker_lost' WHERE id IN (?, ?)", (job_id, other))
    proc = slurm("kill", str(job_id))
    assert proc.returncode == 0 and "cancelled it there" in proc.stderr, proc.stderr
    assert slurm("retry", str(other)).returncode == 0
    wait_until(
        lambda: slurm_state(job)[0] in ("CANCELLED", "") and slurm_state(twin)[0] in ("CANCELLED", ""),
        timeout=15,
        what="Slurm to cancel both",
    )
    assert slurm.job(other)["backend_id"] != twin["backend_id"]


def test_out_of_memory_in_the_step_is_out_of_memory(slurm, home):
    path = write_job(
        home, "hog", "resources: {memory: 100MiB}\nrun: python3 -c 'b = bytearray(600 * 1024 * 1024); print(len(b))'\n"
    )
    proc = slurm("launch", str(path), "--wait")
    job = slurm.job(int(proc.stdout))
    assert (proc.returncode, job["status"]) == (137, "FAILED (out of memory)"), (job["message"], proc.stderr)
    assert slurm("wait", str(job["id"])).returncode == 137


def test_a_missing_workdir_fails_the_job_and_names_it(slurm, home):
    workdir = home / "gone later"
    workdir.mkdir()
    upstream = slurm.launch(write_job(home, "first", "run: sleep 300\n"))
    job_id = slurm.launch(
        write_job(home, "there", f"workdir: {workdir}\ndepends_on: [{{job: {upstream}, condition: any}}]\nrun: pwd\n")
    )
    workdir.rmdir()  # as on a node that does not share it
    slurm("kill", str(upstream), check=True)
    assert slurm("wait", str(job_id), timeout=60).returncode != 0
    job = slurm.job(job_id)
    assert job["status"] == "FAILED (start error)" and str(workdir) in job["message"], job["message"]
    assert "/tmp" not in logs(slurm, job_id).splitlines()  # it never ran anywhere else
    assert str(workdir) in logs(slurm, job_id)


def test_slurm_out_is_shown_by_logs_batch_and_describe(slurm, home):
    proc = slurm("launch", str(write_job(home, "noisy", "run: exit 5\n")), "--wait")
    job_id = int(proc.stdout)
    batch = logs(slurm, job_id, "--batch")
    assert "task 0: Exited with exit code 5" in batch  # srun's own line, only in slurm.out
    job = slurm.job(job_id)
    assert job["slurm_out"]["path"].endswith(f"/{job_id}/1/slurm.out")
    assert any("exit code 5" in line for line in job["slurm_out"]["tail"])
    text = slurm("describe", str(job_id)).stdout
    assert "Slurm out:" in text and "exit code 5" in text


def test_a_job_that_can_never_start_is_refused_or_failed_with_slurms_reason(slurm, home):
    path = write_job(home, "wide", "run: echo\n")
    started = time.monotonic()
    proc = slurm("launch", str(path), "--num-nodes", "2")
    assert proc.returncode == 2 and "Requested node configuration is not available" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and count_jobs(home) == 0
    assert time.monotonic() - started < 20
    dry = slurm("launch", str(path), "--num-nodes", "2", "--dry-run")
    assert "not available" in dry.stdout + dry.stderr
    # later: Slurm finds it can never start it (here: the job was changed behind jobctl's back)
    upstream = slurm.launch(write_job(home, "before", "run: sleep 300\n"))
    job_id = slurm.launch(write_job(home, "later", f"depends_on: [{{job: {upstream}, condition: any}}]\nrun: echo\n"))
    bid = slurm.job(job_id)["backend_id"]
    subprocess.run(["scontrol", "update", f"JobId={bid}", "NumNodes=2-2"], check=True, timeout=15)
    slurm("kill", str(upstream), check=True)
    job = slurm.wait_state(job_id, "FAILED", timeout=40)
    assert job["status"] == "FAILED (start error)" and "Slurm can never start it" in job["message"], job["message"]
    assert re.search(r"Partition(NodeLimit|Config)", job["message"])
    wait_until(lambda: slurm_state(job)[0] in ("CANCELLED", ""), timeout=15, what="Slurm to cancel it")


def test_a_plain_jobs_events_are_created_pending_active_completed(slurm, home):
    proc = slurm("launch", str(write_job(home, "plain", "run: echo $SKYPILOT_NODE_IPS; sleep 3\n")), "--wait")
    assert proc.returncode == 0
    events = slurm.job(int(proc.stdout))["events"]
    assert [e["to_state"] for e in events] == ["CREATED", "PENDING", "ACTIVE", "COMPLETED"], events
    assert logs(slurm, int(proc.stdout)) == "127.0.0.1\n"  # addresses, as on the local backend


def test_without_accounting_exit_codes_come_from_the_jobs_files(slurm, home):
    fake = home / "bin"
    fake.mkdir()
    (fake / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    (fake / "sacct").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    proc = slurm("launch", str(write_job(home, "three", "run: exit 3\n")), "--wait", env=env)
    assert proc.returncode == 3, proc.stderr
    assert slurm.job(int(proc.stdout))["status"] == "FAILED (exit 3)"


def test_a_job_slurm_forgot_is_stamped_with_its_own_times(slurm, home):
    job_id = slurm.launch(write_job(home, "brief", "run: sleep 1\n"))
    exit_file = home / "state" / "logs" / str(job_id) / "1" / "rank0.exit"
    wait_until(exit_file.exists, timeout=30, what="the job to end (nobody asking jobctl)")
    ended = exit_file.stat().st_mtime
    wait_until(lambda: time.time() > ended + 4, timeout=10, what="a few seconds to pass")
    fake = home / "bin"  # Slurm no longer knows it: purged, and no accounting
    fake.mkdir()
    for tool in ("squeue", "sacct"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake / tool).chmod(0o755)
    proc = slurm("describe", str(job_id), "--json", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    job = json.loads(proc.stdout)
    assert job["status"] == "COMPLETED"
    stamps = {e["to_state"]: datetime.fromisoformat(e["at"]).timestamp() for e in job["events"]}
    assert abs(stamps["COMPLETED"] - ended) < 1.5 and stamps["ACTIVE"] <= stamps["COMPLETED"], job["events"]


def test_injected_commands_in_values_never_run(slurm, home):
    marker = home / "pwned"
    evil = f"x\ntouch {marker}\n"
    path = write_job(home, "evil", f"labels: {{team: {json.dumps(evil)}}}\nrun: echo fine\n")
    proc = slurm("launch", str(path))
    assert proc.returncode == 2 and "labels" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    slurm.config("slurm.account", json.dumps(evil))
    assert slurm("launch", str(write_job(home, "ok", "run: echo fine\n"))).returncode == 2
    assert count_jobs(home) == 0
    (home / "config.toml").write_text('backend = "slurm"\n')
    dest = f"/proc/jobctl $(touch {marker})"  # cannot be linked: its error message once pasted it unquoted
    path = write_job(home, "mount", f"file_mounts: {{'{dest}': {home}}}\nrun: echo fine\n")
    proc = slurm("launch", str(path), "--wait")
    job_id = int(proc.stdout)
    assert proc.returncode == 1 and not marker.exists()
    assert f"jobctl: file_mounts: cannot link {dest}" in logs(slurm, job_id)
