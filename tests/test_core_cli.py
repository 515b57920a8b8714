"""Issue: core. Real jobctl processes, a real supervisor, real child processes."""

from __future__ import annotations

import json
import re
import stat

import pytest
from helpers import FIXTURES, REPO, count_jobs, wait_until, write_job


def test_hello_example_completes_and_shows_in_table(jobctl):
    proc = jobctl("launch", str(REPO / "examples" / "hello.yaml"), "--wait")
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.strip())
    table = jobctl("status", check=True).stdout
    assert table.splitlines()[0] == "User: " + jobctl.job(job_id)["user"]
    assert table.splitlines()[1] == "Jobs"
    header = table.splitlines()[2].split()
    assert header == ["ID", "NAME", "STATUS", "RESOURCES", "SUBMITTED", "START", "TIME", "END", "TIME", "DURATION"]
    line = next(l for l in table.splitlines() if l.startswith(str(job_id)))
    assert "hello" in line and "COMPLETED" in line and "1x(1CPU, 1GiMEM)" in line
    assert len(re.findall(r"\d\d/\d\d/\d\d \d\d:\d\d[AP]M", line)) == 2  # start and end times
    logs = jobctl("logs", str(job_id), check=True).stdout
    assert f"hello from job {job_id} (rank 0 of 1)" in logs


def test_exit_code_is_reported_and_returned_by_wait(jobctl, home):
    path = write_job(home, "three", "run: exit 3\n")
    proc = jobctl("launch", str(path), "--wait")
    assert proc.returncode == 3
    job_id = int(proc.stdout)
    job = jobctl.job(job_id)
    assert job["status"] == "FAILED (exit 3)" and job["reason"] == "exit_code" and job["exit_code"] == 3
    assert jobctl("wait", str(job_id)).returncode == 3
    assert "FAILED (exit 3)" in jobctl("status").stdout


def test_two_nodes_write_two_logs_and_partial_failure(jobctl, home):
    path = write_job(home, "pair", "num_nodes: 2\nrun: echo rank $JOBCTL_NODE_RANK of $JOBCTL_NUM_NODES\n")
    job_id = jobctl.launch(path, "--wait")
    job = jobctl.job(job_id)
    assert job["state"] == "COMPLETED"
    logs = {w["rank"]: open(w["log"]).read() for w in job["workers"]}
    assert logs == {0: "rank 0 of 2\n", 1: "rank 1 of 2\n"}
    assert jobctl("logs", str(job_id), "--rank", "1", check=True).stdout == "rank 1 of 2\n"

    failing = write_job(
        home, "half", "num_nodes: 2\nrun: |\n  if [ $JOBCTL_NODE_RANK = 1 ]; then exit 5; fi\n  sleep 30\n"
    )
    job_id = jobctl.launch(failing)
    job = jobctl.wait_state(job_id, "FAILING")
    assert job["status"] == "FAILING (1/2 workers failed)"
    jobctl("kill", str(job_id), "--grace", "1", check=True)


def test_failed_workers_count_at_the_end(jobctl, home):
    path = write_job(home, "two", "num_nodes: 2\nrun: '[ $JOBCTL_NODE_RANK = 1 ] && exit 4; exit 0'\n")
    proc = jobctl("launch", str(path), "--wait")
    assert proc.returncode == 1  # several workers: "other failure"
    job = jobctl.job(int(proc.stdout))
    assert job["status"] == "FAILED (1/2 workers failed)"
    assert sorted((w["rank"], w["exit_code"]) for w in job["workers"]) == [(0, 0), (1, 4)]


def test_job_environment(jobctl, home):
    path = write_job(home, "envjob", "envs:\n  A: one\n  B: 2\nrun: env | grep -E '^(A|B|C|JOBCTL_)' | sort\n")
    job_id = jobctl.launch(path, "--env", "C=three", "--wait")
    out = jobctl("logs", str(job_id), check=True).stdout
    for line in (
        "A=one",
        "B=2",
        "C=three",
        f"JOBCTL_JOB_ID={job_id}",
        "JOBCTL_JOB_NAME=envjob",
        "JOBCTL_ATTEMPT=1",
        "JOBCTL_NODE_RANK=0",
        "JOBCTL_NUM_NODES=1",
    ):
        assert line in out.splitlines()


def test_setup_runs_first_and_its_failure_is_reported(jobctl, home):
    ok = write_job(home, "ok", "setup: echo setting-up\nrun: echo running\n")
    job_id = jobctl.launch(ok, "--wait")
    assert jobctl("logs", str(job_id), check=True).stdout == "setting-up\nrunning\n"
    bad = write_job(home, "bad", "setup: exit 7\nrun: echo never\n")
    proc = jobctl("launch", str(bad), "--wait")
    job = jobctl.job(int(proc.stdout))
    assert job["status"] == "FAILED (setup failed)" and job["exit_code"] == 7
    assert "never" not in jobctl("logs", str(job["id"])).stdout


def test_workdir_is_relative_to_the_file(jobctl, home):
    (home / "proj").mkdir()
    (home / "proj" / "data.txt").write_text("payload\n")
    path = write_job(home, "wd", "workdir: proj\nrun: cat data.txt\n")
    job_id = jobctl.launch(path, "--wait")
    assert jobctl("logs", str(job_id), check=True).stdout == "payload\n"


@pytest.mark.parametrize(
    "text,where",
    [
        ("run: x\nresourcse:\n  cpus: 2\n", r"bad\.yaml:2: resourcse: unknown key \(did you mean \"resources\"\?\)"),
        ("run: x\nresources:\n  cpus: two\n", r"bad\.yaml:3: resources\.cpus: expected"),
        ("run: x\nnum_nodes: [1\n", r"bad\.yaml:\d+"),
        ("name: nothing-to-run\n", r"bad\.yaml:1: run: missing"),
    ],
)
def test_bad_files_exit_2_with_file_line_key_and_write_nothing(jobctl_inproc, home, text, where):
    path = write_job(home, "bad", text)
    before = count_jobs(home)
    proc = jobctl_inproc("launch", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert re.search(where, lines[0]), lines[0]
    assert count_jobs(home) == before


def test_debug_shows_the_traceback(jobctl, home):
    path = write_job(home, "bad", "run: x\nbogus: 1\n")
    proc = jobctl("launch", str(path), env={"JOBCTL_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_job_is_exit_1_one_line(jobctl_inproc):
    proc = jobctl_inproc("describe", "no-such-job")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no job matches 'no-such-job'"


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.yaml")) or ["missing"])
def test_every_skypilot_fixture_loads_with_dry_run(jobctl_inproc, fixture):
    path = FIXTURES / fixture
    if not path.exists():
        pytest.skip(f"fixtures not found at {FIXTURES}")
    proc = jobctl_inproc("launch", "--dry-run", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Plan" in proc.stdout


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_every_example_loads(jobctl_inproc, example):
    proc = jobctl_inproc("launch", "--dry-run", str(REPO / "examples" / example))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_dry_run_says_when_a_request_does_not_fit_and_real_launch_refuses(jobctl_inproc, home):
    path = write_job(home, "big", "resources:\n  accelerators: H100:8\nrun: nvidia-smi\n")
    proc = jobctl_inproc("launch", "--dry-run", str(path))
    assert proc.returncode == 0
    assert "H100" in proc.stdout and "no " in proc.stdout and "would refuse" in proc.stdout
    proc = jobctl_inproc("launch", str(path))
    assert proc.returncode == 2 and "H100" in proc.stderr
    assert count_jobs(home) == 0


def test_pipeline_runs_tasks_in_order(jobctl, home):
    path = write_job(
        home,
        "pipe",
        "name: pipe\n---\nname: first\nrun: echo one > order.txt\n---\nname: second\nrun: echo two >> order.txt\n",
    )
    out = jobctl("launch", str(path), "--wait", check=True).stdout.split()
    assert len(out) == 2
    assert (home / "order.txt").read_text() == "one\ntwo\n"
    second = jobctl.job(out[1])
    assert second["depends_on"] == [{"dep_id": int(out[0]), "condition": "ok"}]


def test_files_are_owner_only(jobctl, home):
    jobctl.launch(write_job(home, "q", "run: echo hi\n"), "--wait")
    for path in [home / "data" / "jobctl.db", *(home / "state" / "logs").rglob("*.log")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [home / "data", home / "state", home / "run"]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    jobctl("supervisor", "start", check=True)
    sock = wait_until(lambda: next(iter((home / "run").glob("*.sock")), None), what="the supervisor's socket")
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_status_json_fields(jobctl, home):
    job_id = jobctl.launch(write_job(home, "j", "labels: {team: vision}\nrun: echo hi\n"), "--wait")
    doc = json.loads(jobctl("status", "--json", check=True).stdout)
    assert isinstance(doc, list) and doc[0]["id"] == job_id
    assert set(doc[0]) == {
        "id",
        "name",
        "state",
        "status",
        "reason",
        "message",
        "exit_code",
        "attempt",
        "max_attempts",
        "resources",
        "num_nodes",
        "submitted_at",
        "started_at",
        "ended_at",
        "labels",
        "backend",
        "backend_id",
        "user",
        "queue",  # SPEC section 9
        "array_id",
        "array_index",
    }
    assert doc[0]["labels"] == {"team": "vision"}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", doc[0]["submitted_at"])


def test_supervisor_is_single_per_home(jobctl, home):
    jobctl("supervisor", "start", check=True)
    first = json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)
    assert first["running"] and first["pid"]
    jobctl("supervisor", "start", check=True)
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "jobctl", "supervisor", "run"], env=jobctl.env) for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=30) == 0  # each gives up: the lock is held
    second = json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)
    assert second["pid"] == first["pid"]
