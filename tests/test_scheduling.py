"""Issue: scheduling. Capacity, accelerators, priority, preemption, memory limits, arrays; real processes."""

from __future__ import annotations

import json

import pytest
from helpers import wait_until, write_job


def statuses(jobctl, ids):
    rows = {j["id"]: j for j in json.loads(jobctl("status", "--all", "--json", check=True).stdout)}
    return [rows[i] for i in ids]


def test_two_cpus_three_jobs_two_run_one_waits_for_resources(jobctl, home):
    jobctl.config("capacity.cpus", "2")
    path = write_job(home, "one", "resources: {cpus: 1}\nrun: sleep 30\n")
    ids = [jobctl.launch(path) for _ in range(3)]
    wait_until(
        lambda: [j["state"] for j in statuses(jobctl, ids)] == ["ACTIVE", "ACTIVE", "PENDING"],
        what="two ACTIVE and one PENDING",
    )
    pending = wait_until(lambda: (j := statuses(jobctl, ids)[2])["reason"] == "resources" and j, what="pending reason")
    assert pending["status"] == "PENDING (resources)"
    assert "PENDING (resources)" in jobctl("status").stdout
    jobctl("kill", str(ids[0]), "--grace", "0", check=True)
    jobctl.wait_state(ids[2], "ACTIVE")
    jobctl("kill", *map(str, ids), "--grace", "0")


def test_declared_gpus_are_split_between_jobs(jobctl, home):
    jobctl.config("capacity.accelerators", "{H100 = 4}")
    path = write_job(
        home,
        "gpu",
        "resources:\n  accelerators: H100:2\nrun: echo $CUDA_VISIBLE_DEVICES $JOBCTL_ACCELERATORS; sleep 2\n",
    )
    ids = [jobctl.launch(path) for _ in range(2)]
    seen = []
    for job_id in ids:
        jobctl.wait_state(job_id, "COMPLETED", timeout=20)
        cuda, acc = jobctl("logs", str(job_id), check=True).stdout.split()
        assert acc == f"H100:{cuda}"
        seen.append(set(cuda.split(",")))
    assert all(len(s) == 2 for s in seen)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {"0", "1", "2", "3"}


def test_alternatives_take_the_first_that_fits(jobctl, home):
    jobctl.config("capacity.accelerators", "{A100 = 2}")
    path = write_job(home, "alt", "resources:\n  accelerators: {H100:8, A100:2}\nrun: echo $JOBCTL_ACCELERATORS\n")
    job_id = jobctl.launch(path, "--wait")
    assert jobctl("logs", str(job_id)).stdout.strip() == "A100:0,1"


def test_each_worker_sees_its_own_devices(jobctl, home):
    jobctl.config("capacity.accelerators", "{H100 = 4}")
    path = write_job(
        home, "multi", "num_nodes: 2\nresources: {accelerators: H100:2}\nrun: echo $CUDA_VISIBLE_DEVICES\n"
    )
    job_id = jobctl.launch(path, "--wait")
    r0 = jobctl("logs", str(job_id), "--rank", "0").stdout.strip()
    r1 = jobctl("logs", str(job_id), "--rank", "1").stdout.strip()
    assert {r0, r1} == {"0,1", "2,3"}


def test_a_request_that_can_never_fit_is_refused(jobctl_inproc, home):
    jobctl_inproc.config("capacity.cpus", "2")
    path = write_job(home, "huge", "resources: {cpus: 64}\nrun: 'true'\n")
    proc = jobctl_inproc("launch", str(path))
    assert proc.returncode == 2
    assert "64" in proc.stderr and "2" in proc.stderr and "CPU" in proc.stderr
    assert jobctl_inproc("launch", "--dry-run", str(path)).returncode == 0


def test_priority_preempts_and_the_displaced_job_completes_later(jobctl, home):
    jobctl.config("capacity.cpus", "1")
    low = jobctl.launch(
        write_job(
            home,
            "low",
            # attempt 1 outlasts any slow machine (it is preempted long before); attempt 2 is short
            "resources: {cpus: 1}\nrun: |\n  echo start $JOBCTL_ATTEMPT\n"
            "  if [ $JOBCTL_ATTEMPT = 1 ]; then sleep 60; else sleep 1; fi\n  echo low done\n",
        )
    )
    jobctl.wait_state(low, "ACTIVE")
    high = jobctl.launch(write_job(home, "high", "priority: 10\nresources: {cpus: 1}\nrun: sleep 2; echo high done\n"))
    job = jobctl.wait_state(low, "SUSPENDED", timeout=30)
    assert job["status"] == "SUSPENDED (by system)"
    jobctl.wait_state(high, "ACTIVE", "COMPLETED", timeout=15)
    high_job = jobctl.wait_state(high, "COMPLETED", timeout=15)
    low_job = jobctl.wait_state(low, "COMPLETED", timeout=30)
    assert low_job["started_at"] >= high_job["ended_at"]
    assert low_job["attempt"] == 2
    # attempt 1 was preempted: it did not use up the (zero) retries, so attempt 2 may still run
    assert low_job["max_attempts"] == 2


def test_out_of_memory_is_killed_and_the_neighbour_completes(jobctl, home):
    hog = write_job(
        home,
        "hog",
        "resources: {memory: 256MiB}\nrun: |\n"
        "  python3 -c \"import time; b = bytearray(1 << 30); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)\"\n",
    )
    calm = write_job(home, "calm", "resources: {memory: 256MiB}\nrun: sleep 2; echo fine\n")
    hog_id = jobctl.launch(hog)
    calm_id = jobctl.launch(calm)
    proc = jobctl("wait", str(hog_id), timeout=60)
    assert proc.returncode == 137
    job = jobctl.job(hog_id)
    assert job["status"] == "FAILED (out of memory)"
    assert "resources.memory" in job["message"] and "GiB" in job["message"]
    assert jobctl.wait_state(calm_id, "COMPLETED", timeout=20)["state"] == "COMPLETED"


def test_a_short_memory_spike_is_caught_where_cgroups_exist(jobctl, home):
    from jobctl.backends.local.cgroups import MemoryCgroup

    if not MemoryCgroup.available():
        pytest.skip("no writable memory cgroup here: only sampling guards memory")
    path = write_job(
        home,
        "spike",
        "resources: {memory: 256MiB}\nrun: |\n"
        "  python3 -c \"b = bytearray(1 << 30); b[::4096] = b'x' * len(b[::4096])\"\n  echo went on\n",
    )
    proc = jobctl("launch", str(path), "--wait")
    assert proc.returncode == 137
    job = jobctl.job(int(proc.stdout))
    assert job["status"] == "FAILED (out of memory)" and "resources.memory" in job["message"]


def test_array_of_500_true_jobs_with_two_slots(jobctl, home):
    jobctl.config("capacity.cpus", "2")
    path = write_job(home, "t", "run: echo $JOBCTL_ARRAY_INDEX\n")
    proc = jobctl("launch", str(path), "--array", "500", check=True)
    ids = [int(x) for x in proc.stdout.split()]
    assert len(ids) == 500 and len(set(ids)) == 500
    assert jobctl("wait", *map(str, ids[-5:]), timeout=300).returncode == 0
    jobctl("wait", *map(str, ids), timeout=300, check=True)
    rows = json.loads(jobctl("status", "--all", "--json", check=True).stdout)
    assert len(rows) == 500 and all(r["state"] == "COMPLETED" and r["attempt"] == 1 for r in rows)
    sample = ids[123]
    assert jobctl("logs", str(sample)).stdout.strip() == "123"


def test_array_range_and_several_files(jobctl, home):
    a = write_job(home, "a", "run: echo a$JOBCTL_ARRAY_INDEX\n")
    proc = jobctl("launch", str(a), "--array", "3-5", check=True)
    ids = proc.stdout.split()
    assert len(ids) == 3
    names = [jobctl.job(i)["name"] for i in ids]
    assert names == ["a-3", "a-4", "a-5"]
    b = write_job(home, "b", "run: 'true'\n")
    assert len(jobctl("launch", str(a), str(b), check=True).stdout.split()) == 2


def test_more_jobs_than_the_scheduler_window_all_start_when_there_is_room(jobctl, home):
    from jobctl.engine.local import QUEUE_WINDOW

    jobctl.config("capacity.cpus", "1000")
    jobctl.config("capacity.memory", '"1TiB"')
    count = QUEUE_WINDOW * 2 + 5
    path = write_job(home, "wide", "resources: {cpus: 1, memory: 16MiB}\nrun: sleep 20\n")
    ids = jobctl("launch", str(path), "--array", str(count), check=True).stdout.split()
    wait_until(
        lambda: all(j["state"] == "ACTIVE" for j in statuses(jobctl, [int(i) for i in ids])),
        timeout=60,
        what=f"all {count} jobs ACTIVE",
    )
    jobctl("kill", "--all", "--grace", "0")


def test_a_capacity_change_reaches_a_running_supervisor(jobctl, home):
    jobctl("supervisor", "start", check=True)
    jobctl.config("capacity.accelerators", "{H100 = 2}")
    path = write_job(home, "late", "resources: {accelerators: H100:2}\nrun: echo $CUDA_VISIBLE_DEVICES\n")
    proc = jobctl("launch", str(path), "--wait", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert jobctl("logs", proc.stdout.strip()).stdout.strip() == "0,1"
    capacity = json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)["capacity"]
    assert capacity["accelerators"] == {"H100": 2}


def test_backfill_starts_a_short_job_that_cannot_delay_the_blocked_one(jobctl, home):
    """A (1 CPU, timeout) runs, B (2 CPUs) waits; C (0.5 CPU) ends before A's timeout: it starts
    now; D (0.5 CPU) would still run when B is due to start: it waits, and says behind which job."""
    jobctl.config("capacity.cpus", "2")
    a = jobctl.launch(write_job(home, "a", "timeout: 10m\nresources: {cpus: 1}\nrun: sleep 120\n"))
    jobctl.wait_state(a, "ACTIVE", timeout=30)
    b = jobctl.launch(write_job(home, "b", "resources: {cpus: 2}\nrun: 'true'\n"))
    c = jobctl.launch(write_job(home, "c", "timeout: 30s\nresources: {cpus: 0.5}\nrun: echo backfilled\n"))
    d = jobctl.launch(write_job(home, "d", "timeout: 1h\nresources: {cpus: 0.5}\nrun: 'true'\n"))
    e = jobctl.launch(write_job(home, "e", "resources: {cpus: 0.5}\nrun: 'true'\n"))  # no timeout
    job = jobctl.wait_state(c, "COMPLETED", timeout=30)
    assert jobctl("logs", str(c)).stdout == "backfilled\n"
    for waiting in (d, e):
        job = wait_until(
            lambda: (j := jobctl.job(waiting))["status"] == f"PENDING (behind {b})" and j,
            30,
            f"job {waiting} to wait behind job {b}",
        )
        assert job["reason"] == "priority" and f"waits behind job {b} (b)" in job["message"]
    assert "due to start by" in jobctl.job(d)["message"]
    row = next(j for j in json.loads(jobctl("status", "--json", check=True).stdout) if j["id"] == d)
    assert row["status"] == f"PENDING (behind {b})"
    assert (jobctl.state(a), jobctl.state(b)) == ("ACTIVE", "PENDING")
    jobctl("kill", str(a), "--grace", "0", check=True)
    for job_id in (b, d, e):  # B first, then the others
        jobctl.wait_state(job_id, "COMPLETED", timeout=30)
    assert jobctl.job(b)["started_at"] <= jobctl.job(d)["started_at"]


def test_without_time_limits_backfill_stays_conservative(jobctl, home):
    jobctl.config("capacity.cpus", "2")
    a = jobctl.launch(write_job(home, "a", "resources: {cpus: 1}\nrun: sleep 120\n"))  # no timeout
    jobctl.wait_state(a, "ACTIVE", timeout=30)
    b = jobctl.launch(write_job(home, "b", "resources: {cpus: 2}\nrun: 'true'\n"))
    c = jobctl.launch(write_job(home, "c", "timeout: 5s\nresources: {cpus: 0.5}\nrun: 'true'\n"))
    job = wait_until(
        lambda: (j := jobctl.job(c))["status"] == f"PENDING (behind {b})" and j, 30, f"job {c} to wait behind job {b}"
    )
    assert job["attempt"] == 0 and "due to start" not in job["message"]
    jobctl("kill", str(a), "--grace", "0", check=True)
    jobctl.wait_state(c, "COMPLETED", timeout=30)
