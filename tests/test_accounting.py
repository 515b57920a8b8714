"""Usage accounting (SPEC section 11): what real jobs used, in `describe` and `describe --json`;
the sampling path measured against a real process; nvidia-smi and sacct outputs as they are
printed; and `jobctl stats` over a history."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import wait_until, write_job

from jobctl.backends.local.usage import UsageMeter, parse_nvidia_smi
from jobctl.backends.slurm.client import Result, SlurmBackend, parse_sacct_usage

MIB = 1024 * 1024

# Allocates 300 MiB (every page touched), then burns CPU until the process has used 2 s of it.
BURN = (
    "import time\n"
    "b = bytearray(300 * 1024 * 1024)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
    "while time.process_time() < 2.0: pass\n"
)


def test_a_job_that_allocates_300_mib_and_burns_2_cpu_seconds_shows_both(jobctl, tmp_path):
    (tmp_path / "burn.py").write_text(BURN)
    job = write_job(tmp_path, "burn", f"resources: {{memory: 1}}\nrun: {sys.executable} burn.py\n")
    job_id = jobctl.launch(job)
    jobctl("wait", str(job_id), check=True, timeout=120)
    doc = jobctl.job(job_id)
    usage = doc["usage"]
    assert usage == doc["attempts"][0]["usage"]  # the latest attempt's, and per attempt
    assert abs(usage["max_rss_bytes"] - 300 * MIB) <= 0.15 * 300 * MIB, usage
    assert abs(usage["cpu_seconds"] - 2.0) <= 0.25 * 2.0, usage
    assert usage["cpu_seconds"] <= usage["wall_seconds"] + 0.5
    assert usage["gpu_seconds"] == 0
    line = next(li for li in jobctl("describe", str(job_id), check=True).stdout.splitlines() if li.startswith("Usage:"))
    assert "CPU 2." in line and "peak memory 3" in line and "MiB" in line


def test_every_attempt_has_its_own_usage(jobctl, tmp_path):
    job = write_job(tmp_path, "twice", "retries: 1\nrun: 'sleep 0.3; exit 4'\n")
    job_id = jobctl.launch(job)
    assert jobctl("wait", str(job_id), timeout=60).returncode == 4
    attempts = jobctl.job(job_id)["attempts"]
    assert len(attempts) == 2
    for a in attempts:
        assert a["usage"]["wall_seconds"] >= 0.3 and a["usage"]["max_rss_bytes"] > 0


def test_a_job_that_never_ran_has_no_usage(jobctl, tmp_path):
    up = jobctl.launch(write_job(tmp_path, "up", "run: sleep 60\n"))
    job_id = jobctl.launch(write_job(tmp_path, "held", f"depends_on: [{up}]\nrun: 'true'\n"))
    doc = jobctl.job(job_id)
    assert doc["usage"] is None
    assert "Usage:         -" in jobctl("describe", str(job_id), check=True).stdout
    jobctl("kill", str(up), check=True)


def test_sampling_without_a_cgroup_measures_a_real_process_tree():
    """The runner's path where the machine offers no memory cgroup: psutil samples of the tree plus
    getrusage of reaped children, against a real child that allocates 200 MiB and burns 1 CPU-second.

    The meter runs in a fresh interpreter, as in a runner: getrusage(RUSAGE_CHILDREN) keeps the
    largest child a process ever reaped, so this test process (which has reaped others) would not do."""
    code = BURN.replace("300", "200").replace("2.0", "1.0") + "time.sleep(1.5)\n"
    meter = f"""
import json, subprocess, sys, time
import psutil
from jobctl.backends.local.usage import UsageMeter
meter = UsageMeter([], cgroup=None)
child = subprocess.Popen([sys.executable, "-c", {code!r}])
proc = psutil.Process(child.pid)
while child.poll() is None:
    meter.sample([proc])
    time.sleep(0.05)
print(json.dumps(meter.result()))
"""
    out = subprocess.run([sys.executable, "-c", meter], capture_output=True, text=True, timeout=120, check=True)
    usage = json.loads(out.stdout)
    assert abs(usage["max_rss_bytes"] - 200 * MIB) <= 0.15 * 200 * MIB, usage
    assert abs(usage["cpu_seconds"] - 1.0) <= 0.25, usage
    assert usage["wall_seconds"] >= 1.5


def test_gpu_seconds_are_devices_held_times_wall_time():
    meter = UsageMeter(["0", "3"], cgroup=None)
    meter.nvidia_smi = None  # no GPU on this machine: the figures it would add are tested below
    usage = meter.result(wall_seconds=10.0)
    assert usage["gpu_seconds"] == 20.0 and "gpu_util_avg" not in usage


# Printed by nvidia-smi 535 (driver 535.104, 2x A100 80GB) for
# --query-gpu=index,utilization.gpu,memory.used with --format=csv,noheader,nounits / csv,noheader / csv
NVIDIA_NOUNITS = "0, 87, 40536\n1, 12, 1024\n"
NVIDIA_UNITS = "0, 87 %, 40536 MiB\n1, 12 %, 1024 MiB\n"
NVIDIA_HEADER = "index, utilization.gpu [%], memory.used [MiB]\n0, 87 %, 40536 MiB\n"
NVIDIA_NA = "0, [N/A], [N/A]\n1, [Not Supported], 512\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NVIDIA_NOUNITS, {0: (87.0, 40536 * MIB), 1: (12.0, 1024 * MIB)}),
        (NVIDIA_UNITS, {0: (87.0, 40536 * MIB), 1: (12.0, 1024 * MIB)}),
        (NVIDIA_HEADER, {0: (87.0, 40536 * MIB)}),
        (NVIDIA_NA, {0: (None, None), 1: (None, 512 * MIB)}),
        ("", {}),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", {}),
    ],
)
def test_nvidia_smi_output_is_parsed_as_printed(text, expected):
    assert parse_nvidia_smi(text) == expected


def test_gpu_samples_average_utilisation_and_keep_the_peak_memory(tmp_path):
    """A stand-in nvidia-smi (a script printing recorded answers) in place of the real one."""
    answers = tmp_path / "answers"
    answers.write_text("0, 80, 1000\n1, 40, 3000\n")
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\ncat {answers}\n")
    fake.chmod(0o755)
    meter = UsageMeter(["0", "1"], cgroup=None)
    meter.nvidia_smi = str(fake)
    meter.sample_gpus()
    answers.write_text("0, 20, 500\n1, 20, 500\n")
    meter.sample_gpus()
    usage = meter.result(wall_seconds=2.0)
    assert usage["gpu_util_avg"] == 40.0  # (60 + 20) / 2
    assert usage["gpu_memory_max_bytes"] == 4000 * MIB
    meter.nvidia_smi = str(tmp_path / "missing")
    meter.sample_gpus()  # does not answer: no more asking, no error
    assert meter.nvidia_smi is None


# sacct -P -n -j 5,7,9 -o JobID,Elapsed,TotalCPU,MaxRSS,AllocTRES on Slurm 22.05 with slurmdbd
SACCT = """\
5|00:00:12|00:02.114||billing=1,cpu=1,mem=500M,node=1
5.batch|00:00:12|00:02.113|303420K|cpu=1,mem=500M,node=1
5.extern|00:00:12|00:00:00|0|billing=1,cpu=1,mem=500M,node=1
7_2|1-02:03:04|2-01:00:00||billing=8,cpu=8,gres/gpu=2,gres/gpu:a100=2,mem=64G,node=1
7_2.batch|1-02:03:04|01:02:03|1.50G|cpu=8,gres/gpu=2,gres/gpu:a100=2,mem=64G,node=1
7_2.0|1-02:03:04|2-00:00:00|60.25G|cpu=8,gres/gpu=2,mem=64G,node=1
9|00:00:00|00:00:00||
"""


def test_sacct_usage_is_parsed_as_printed():
    found = parse_sacct_usage(SACCT)
    assert found["5"] == {
        "wall_seconds": 12.0,
        "cpu_seconds": 2.114,
        "max_rss_bytes": 303420 * 1024,
        "gpu_seconds": 0.0,
    }
    wall = 86400 + 2 * 3600 + 3 * 60 + 4
    assert found["7_2"] == {
        "wall_seconds": float(wall),
        "cpu_seconds": 2 * 86400 + 3600.0,
        "max_rss_bytes": int(60.25 * 1024**3),
        "gpu_seconds": 2.0 * wall,
    }
    assert found["9"] == {"wall_seconds": 0.0, "cpu_seconds": 0.0, "gpu_seconds": 0.0}
    assert parse_sacct_usage("Slurm accounting storage is disabled\n") == {}


def test_slurm_usage_asks_sacct_with_steps_and_survives_its_failure():
    calls = []

    def run(argv, timeout):
        calls.append(argv)
        return Result(argv, 0, SACCT, "")

    assert SlurmBackend(run).usage(["5", "404"]) == {"5": parse_sacct_usage(SACCT)["5"]}
    assert "-X" not in calls[0] and calls[0][-1] == "JobID,Elapsed,TotalCPU,MaxRSS,AllocTRES"
    assert SlurmBackend(lambda argv, timeout: Result(argv, 1, "", "error")).usage(["5"]) == {}


# -- jobctl stats ---------------------------------------------------------------------------------


def _history(home) -> None:
    """A known history written through the store into the home's real database: jobs of three users
    and two teams, with usage per attempt (one job retried, one never started)."""
    from jobctl.store.database import Store

    store = Store(home / "data" / "jobctl.db")
    now = time.time()
    jobs = [
        # id, user, team, state, submitted ago, waited, [(cpu s, rss MiB, gpu s)]
        (1, "alice", "vision", "COMPLETED", 3600, 10.0, [(3600.0, 100, 0.0)]),
        (2, "alice", "vision", "FAILED", 3000, 20.0, [(1800.0, 300, 7200.0), (1800.0, 200, 0.0)]),
        (3, "bob", "vision", "COMPLETED", 2000, 30.0, [(7200.0, 50, 3600.0)]),
        (4, "bob", "nlp", "KILLED", 1000, None, []),
        (5, "carol", None, "COMPLETED", 500, 5.0, [(360.0, 1024, 0.0)]),
        (6, "carol", "nlp", "COMPLETED", 30 * 86400, 1.0, [(99999.0, 4096, 0.0)]),  # a month ago
    ]
    with store.write() as conn:
        conn.execute("INSERT INTO specs (id, hash, body) VALUES (1, 'h', '{}')")
        for job_id, user, team, state, ago, waited, attempts in jobs:
            submitted = now - ago
            conn.execute(
                "INSERT INTO jobs (id, name, state, spec_id, cpus, memory_mib, labels, user, submitted_at, attempt)"
                " VALUES (?, ?, ?, 1, 1, 1024, ?, ?, ?, ?)",
                (job_id, f"job{job_id}", state, json.dumps({"team": team}) if team else None, user, submitted, 0),
            )
            for n, (cpu, rss, gpu) in enumerate(attempts, start=1):
                started = submitted + (waited or 0) + (n - 1) * 100
                usage = {"wall_seconds": 50.0, "cpu_seconds": cpu, "max_rss_bytes": rss * MIB, "gpu_seconds": gpu}
                conn.execute(
                    "INSERT INTO attempts (job_id, n, started_at, ended_at, usage) VALUES (?, ?, ?, ?, ?)",
                    (job_id, n, started, started + 50, json.dumps(usage)),
                )
    store.close()


def _stats(jobctl, *args: str) -> dict:
    return json.loads(jobctl("stats", "--json", *args, check=True).stdout)


def test_stats_by_user_sums_the_history(jobctl):
    _history(jobctl.home)
    doc = _stats(jobctl, "--since", "7d", "--by", "user")
    by = {g["user"]: g for g in doc["groups"]}
    assert set(by) == {"alice", "bob", "carol"}
    assert by["alice"] == {
        "user": "alice",
        "jobs": 2,
        "completed": 1,
        "failed": 1,
        "killed": 0,
        "cpu_hours": 2.0,
        "gpu_hours": 2.0,
        "peak_memory_bytes": 300 * MIB,
        "mean_wait_seconds": 15.0,
    }
    assert (by["bob"]["jobs"], by["bob"]["completed"], by["bob"]["killed"]) == (2, 1, 1)
    assert (by["bob"]["cpu_hours"], by["bob"]["gpu_hours"], by["bob"]["mean_wait_seconds"]) == (2.0, 1.0, 30.0)
    assert (by["carol"]["jobs"], by["carol"]["cpu_hours"], by["carol"]["peak_memory_bytes"]) == (1, 0.1, 1024 * MIB)
    assert doc["total"]["jobs"] == 5 and doc["total"]["cpu_hours"] == 4.1 and doc["total"]["gpu_hours"] == 3.0
    everything = _stats(jobctl, "--by", "user")  # no --since: the whole history
    assert everything["total"]["jobs"] == 6


def test_stats_by_label_and_by_name_and_queue(jobctl):
    _history(jobctl.home)
    by = {g["label:team"]: g for g in _stats(jobctl, "--since", "7d", "--by", "label:team")["groups"]}
    assert {k: (g["jobs"], g["cpu_hours"], g["gpu_hours"]) for k, g in by.items()} == {
        "vision": (3, 4.0, 3.0),
        "nlp": (1, 0.0, 0.0),
        "-": (1, 0.1, 0.0),  # no team label
    }
    names = _stats(jobctl, "--since", "7d", "--by", "name")["groups"]
    assert sorted(g["name"] for g in names) == ["job1", "job2", "job3", "job4", "job5"]
    queues = _stats(jobctl, "--since", "7d", "--by", "queue")["groups"]
    assert [(g["queue"], g["jobs"]) for g in queues] == [("default", 5)]


def test_stats_table_fits_80_columns(jobctl):
    _history(jobctl.home)
    proc = jobctl("stats", "--since", "7d", env={"COLUMNS": "80"}, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Usage of jobs submitted since ") and lines[0].endswith("by user")
    assert lines[1].split() == ["USER", "JOBS", "DONE", "FAILED", "CPU-HRS", "GPU-HRS", "PEAK", "MEM", "MEAN", "WAIT"]
    assert lines[2].split() == ["alice", "2", "1", "1", "2.00", "2.00", "300.0", "MiB", "15.0s"]
    assert lines[-1].split()[:2] == ["TOTAL", "5"]
    assert max(len(line) for line in lines) <= 80


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--by", "team"], "--by: expected user, queue, name or label:KEY, got 'team'"),
        (["--by", "label:"], "--by: expected user, queue, name or label:KEY"),
        (["--since", "yesterday"], "--since: expected a span such as 7d or 12h"),
    ],
)
def test_stats_refuses_bad_options(jobctl, args, expected):
    proc = jobctl("stats", *args)
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_stats_counts_real_jobs(jobctl, tmp_path):
    ok = write_job(tmp_path, "ok", "labels: {team: a}\nrun: 'true'\n")
    bad = write_job(tmp_path, "bad", "labels: {team: b}\nrun: exit 1\n")
    ids = [jobctl.launch(ok), jobctl.launch(ok), jobctl.launch(bad)]
    jobctl("wait", *map(str, ids), timeout=60)
    wait_until(lambda: _stats(jobctl)["total"]["jobs"] == 3, 15, "three jobs")
    by = {g["label:team"]: g for g in _stats(jobctl, "--by", "label:team")["groups"]}
    assert (by["a"]["jobs"], by["a"]["completed"], by["a"]["failed"]) == (2, 2, 0)
    assert (by["b"]["jobs"], by["b"]["completed"], by["b"]["failed"]) == (1, 0, 1)
    assert by["a"]["peak_memory_bytes"] > 0 and by["a"]["mean_wait_seconds"] is not None


def test_an_ended_slurm_attempt_records_sacct_figures(home):
    """The step of the Slurm mirror that records usage, against a real store (sacct's answer recorded)."""
    from jobctl.app.session import Service
    from jobctl.engine.slurm_sync import record_usage
    from jobctl.home.paths import resolve

    service = Service(resolve({"JOBCTL_HOME": str(home)}))
    with service.store.write() as conn:
        conn.execute("INSERT INTO specs (id, hash, body) VALUES (1, 'h', '{}')")
        conn.execute(
            "INSERT INTO jobs (id, name, state, spec_id, cpus, memory_mib, user, submitted_at, backend, backend_id,"
            " attempt) VALUES (1, 's', 'COMPLETED', 1, 1, 1024, 'u', 0, 'slurm', '5', 1)"
        )
        conn.execute("INSERT INTO attempts (job_id, n) VALUES (1, 1)")
    record_usage(service, SlurmBackend(lambda argv, timeout: Result(argv, 0, SACCT, "")), [(1, 1, "5")])
    from jobctl.app.reports import attempt_usage

    attempt = service.store.attempt(1, 1)
    assert attempt is not None
    assert attempt_usage({"usage": attempt.usage}) == parse_sacct_usage(SACCT)["5"]


def test_the_dashboard_usage_page_shows_what_stats_sums(home):
    """The dashboard's Usage document carries the measured figures of `jobctl stats` beside the held ones."""
    from jobctl.app.session import Service
    from jobctl.cli.dashboard.usage import compute, html
    from jobctl.home.paths import resolve

    _history(home)
    service = Service(resolve({"JOBCTL_HOME": str(home)}))
    doc = compute(service, 7 * 86400)
    measured = doc["measured"]
    assert measured["cpu_hours"] == round((3600 + 1800 + 1800 + 7200 + 360) / 3600, 4)  # not the month-old job
    assert measured["gpu_hours"] == 3.0
    assert measured["peak_memory_bytes"] == 1024 * MIB
    by_user = {g["user"]: g for g in measured["by_user"]}
    assert set(by_user) == {"alice", "bob", "carol"} and by_user["bob"]["gpu_hours"] == 1.0
    page = html(doc)
    assert "CPU-hours used" in page and "1.0 GiB" in page
