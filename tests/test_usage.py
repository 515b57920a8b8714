"""Usage errors, bad option values, bulk selectors, dry runs and the smaller CLI contracts.

Usage errors, help, dry runs and config run in-process through `jobctl.cli.main` (the
`jobctl_inproc` fixture: the same entry point as the `jobctl` script, so the real error handling is
exercised) to keep dozens of cases fast; a few run as real processes too, including one where the
`click` package cannot be imported at all. Everything that touches jobs runs real `jobctl` processes
against a temporary home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, count_jobs, wait_until, write_job

OK_FILE = "name: ok\nrun: 'true'\n"

# (command line, exit code). JOB stands for a valid job file; nothing here may create a job.
BAD_COMMAND_LINES = [
    (["config"], 2),
    (["supervisor"], 2),
    (["status", "--bogus"], 2),
    (["frobnicate"], 2),
    (["stauts"], 2),
    (["launch"], 2),
    (["logs"], 2),
    (["config", "set", "capacity.cpus"], 2),
    (["launch", "JOB", "--priority", "x"], 2),
    (["launch", "JOB", "--priority", "99999999999999999999999"], 2),
    (["launch", "JOB", "--num-nodes", "many"], 2),
    (["launch", "JOB", "--num-nodes", "0"], 2),
    (["launch", "JOB", "--array", "abc"], 2),
    (["launch", "JOB", "--array", "0"], 2),
    (["launch", "JOB", "--array", "5-2"], 2),
    (["launch", "JOB", "--array", "0-999999999999999"], 2),
    (["launch", "JOB", "--array", "99999999999999999999999"], 2),
    (["launch", "JOB", "--array", "-3"], 2),
    (["launch", "JOB", "--cpus", "-1"], 2),
    (["launch", "JOB", "--memory", "lots"], 2),
    (["launch", "JOB", "--backend", "k8s"], 2),
    (["launch", "JOB", "--env", "1BAD=x"], 2),
    (["launch", "JOB", "--env-file", "/nonexistent/env"], 2),
    (["launch", "/nonexistent/job.yaml"], 2),
    (["config", "set", "capacity.cpus", "-2"], 2),
    (["config", "set", "capacity.cpus", "--", "-2"], 2),
    (["config", "set", "no.such.key", "1"], 2),
    (["config", "get", "no.such.key"], 2),
    (["config", "unset", "no.such.key"], 2),
    (["describe", "99999999999999999999999"], 2),
    (["kill", "99999999999999999999999"], 2),
    (["wait", "1", "--timeout", "abc"], 2),
    (["wait", "1", "--timeout", "0"], 2),
    (["wait", "1", "--timeout", "-5s"], 2),
    (["wait", "1", "--all"], 2),
    (["wait"], 2),
    (["logs", "1", "--tail", "-1"], 2),
    (["logs", "1", "--rank", "-1"], 2),
    (["logs", "1", "--attempt", "0"], 2),
    (["status", "--limit", "-1"], 2),
    (["status", "--limit", "x"], 2),
    (["status", "--state", "NOPE"], 2),
    (["status", "--label", "novalue"], 2),
    (["status", "--watch", "--json"], 2),  # a live table and one JSON document do not go together
    (["kill", "1", "--grace", "abc"], 2),
    (["kill", "1", "--all"], 2),
    (["stop"], 2),
    (["start"], 2),
    (["retry"], 2),
    (["kill"], 2),
    (["rm"], 2),
    (["prune", "--older-than", "x"], 2),
    (["supervisor", "status", "--bogus"], 2),
]


def _argv(args: list[str], job: Path) -> list[str]:
    return [str(job) if a == "JOB" else a for a in args]


def _run(jobctl, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one CLI call."""
    proc = jobctl(*args)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args,code", BAD_COMMAND_LINES, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_usage_errors_are_one_short_line_and_exit_2(jobctl_inproc, home, args, code):
    job = write_job(home, "ok", OK_FILE)
    got, out, err = _run(jobctl_inproc, *_argv(args, job))
    assert got == code, (got, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert len(lines[0]) < 300, err
    assert out == ""
    assert count_jobs(home) == 0


def test_usage_error_names_the_help_of_the_command(jobctl_inproc):
    code, _, err = _run(jobctl_inproc, "launch", "x.yaml", "--bogus")
    assert code == 2 and "--bogus" in err and "jobctl launch --help" in err
    code, _, err = _run(jobctl_inproc, "config")
    assert code == 2 and "jobctl config --help" in err and "unset" in err
    code, _, err = _run(jobctl_inproc, "stauts")
    assert code == 2 and "status" in err  # a close command is suggested


def test_plain_jobctl_prints_help_on_stderr_and_exits_2(jobctl_inproc):
    proc = jobctl_inproc()
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr and "launch" in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_help_still_exits_0(jobctl_inproc):
    proc = jobctl_inproc("--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout
    proc = jobctl_inproc("config", "--help")
    assert proc.returncode == 0 and "unset" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--bogus"],
        ["describe", "99999999999999999999999"],
        ["launch", "--priority", "x", "job.yaml"],
        ["config"],
        ["frobnicate"],
    ],
)
def test_usage_errors_as_real_processes(jobctl, args):
    proc = jobctl(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    "args,help_of",
    [
        (["launch", "x.yaml", "--env"], "jobctl launch --help"),
        (["logs", "1", "--tail"], "jobctl logs --help"),
        (["status", "--state"], "jobctl status --help"),
        (["config", "set", "--bogus"], "jobctl config set --help"),
    ],
)
def test_option_missing_its_value_names_the_commands_help(jobctl_inproc, args, help_of):
    """`--env` with nothing after it points at the help of the command typed, not the top one."""
    proc = jobctl_inproc(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"(see '{help_of}')" in proc.stderr, proc.stderr


def test_usage_errors_need_no_click_package(home):
    """The installed Typer may vendor its own click: the CLI must not need the `click` package."""
    import typer

    if not typer.BadParameter.__module__.startswith("typer."):
        pytest.skip("this Typer runs on the click package")
    code = (
        "import sys; sys.modules['click'] = None; sys.argv = ['jobctl'] + sys.argv[1:]; "
        "from jobctl.cli.main import main; main()"
    )
    env = {**os.environ, "JOBCTL_HOME": str(home), "NO_COLOR": "1"}
    env.pop("JOBCTL_DEBUG", None)
    for args in (["status", "--bogus"], ["describe", "99999999999999999999999"], ["config"], ["launch"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_debug_shows_the_traceback_of_a_usage_error(jobctl_inproc):
    proc = jobctl_inproc("wait", "1", "--timeout", "abc", env={"JOBCTL_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = jobctl_inproc("status", "--bogus", env={"JOBCTL_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "--bogus" in proc.stderr


# -- bulk selectors ------------------------------------------------------------------------------
def test_bulk_kill_acts_on_live_jobs_and_reports_every_selector(jobctl, home):
    done = jobctl.launch(write_job(home, "done", "run: 'true'\n"), "--wait")
    long1 = jobctl.launch(write_job(home, "long1", "run: sleep 60\n"))
    long2 = jobctl.launch(write_job(home, "long2", "run: sleep 60\n"))
    jobctl.wait_state(long1, "ACTIVE", timeout=30)

    # an unknown selector does not stop the others; it is reported and the exit is 1
    proc = jobctl("kill", "long1", "999", "--grace", "0")
    assert proc.returncode == 1, proc.stderr
    assert jobctl.state(long1) == "KILLED"
    assert "error: no job matches '999'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2, proc.stderr

    # --all touches unfinished jobs only, silently skipping finished ones
    proc = jobctl("kill", "--all", "--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert jobctl.state(long2) == "KILLED"
    assert jobctl.state(done) == "COMPLETED"
    assert f"job {long2} killed" in proc.stderr and str(done) not in proc.stderr
    assert "error" not in proc.stderr

    # nothing left to kill: still fine
    proc = jobctl("kill", "--all")
    assert proc.returncode == 0 and "error" not in proc.stderr

    # retry with JSON: one result per selector, exit 1 for the unknown one
    proc = jobctl("retry", str(long1), "999", "--json")
    assert proc.returncode == 1
    results = json.loads(proc.stdout)
    assert [r["selector"] for r in results] == [str(long1), "999"]
    assert results[0]["ok"] and results[0]["id"] == long1
    assert not results[1]["ok"] and results[1]["id"] is None and "no job matches '999'" == results[1]["message"]
    jobctl("kill", str(long1), "--grace", "0")

    # a job named explicitly in a state the action does not fit is still refused (exit 1)
    proc = jobctl("kill", str(done))
    assert proc.returncode == 1 and "COMPLETED" in proc.stderr

    # rm --all removes finished jobs only and skips nothing it was asked for
    jobctl.launch(write_job(home, "live", "run: sleep 60\n"))
    proc = jobctl("rm", "--all")
    assert proc.returncode == 0, proc.stderr
    left = json.loads(jobctl("status", "--all", "--json", check=True).stdout)
    assert [j["name"] for j in left] == ["live"]
    jobctl("kill", "--all", "--grace", "0")


def test_a_glob_acts_on_the_jobs_it_can(jobctl, home):
    path = write_job(home, "sweep", "resources: {cpus: 0.1}\nrun: sleep 60\n")
    ids = [jobctl.launch(path, "--name", f"sweep-{i}") for i in range(2)]
    done = jobctl.launch(
        write_job(home, "sweepdone", "resources: {cpus: 0.1}\nrun: 'true'\n"), "--name", "sweep-done", "--wait"
    )
    proc = jobctl("kill", "sweep-*", "--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert {jobctl.state(i) for i in ids} == {"KILLED"}
    assert jobctl.state(done) == "COMPLETED"
    proc = jobctl("rm", "sweep-*", "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["id"] for r in json.loads(proc.stdout)) == sorted(ids + [done])


# -- dry run ---------------------------------------------------------------------------------------
def test_dry_run_exits_2_exactly_when_a_real_launch_is_refused(jobctl_inproc, home):
    cycle = write_job(
        home, "cycle", "name: p\n---\nname: a\ndepends_on: b\nrun: 'true'\n---\nname: b\ndepends_on: a\nrun: 'true'\n"
    )
    unknown = write_job(home, "unknown", "depends_on: ghost\nrun: 'true'\n")
    for path in (cycle, unknown):
        dry = jobctl_inproc("launch", "--dry-run", str(path))
        real = jobctl_inproc("launch", str(path))
        assert dry.returncode == 2 and real.returncode == 2, (dry.stderr, real.stderr)
        assert "Traceback" not in dry.stderr
        assert len(dry.stderr.strip().splitlines()) == 1, dry.stderr
    assert count_jobs(home) == 0

    pipe = write_job(home, "pipe", "name: pipe\n---\nname: prep\nrun: 'true'\n---\nname: train\nrun: 'true'\n")
    proc = jobctl_inproc("launch", "--dry-run", str(pipe), "--json")
    assert proc.returncode == 0, proc.stderr
    jobs = {j["name"]: j for j in json.loads(proc.stdout)["jobs"]}
    assert jobs["train"]["depends_on"] == ["prep"] and jobs["prep"]["depends_on"] == []
    human = jobctl_inproc("launch", "--dry-run", str(pipe))
    assert "prep" in human.stdout.split("train", 1)[1]

    # a missing secret only warns in a dry run (the file is fine; the launch needs --env)
    secret = write_job(home, "secret", "envs:\n  TOKEN: null\nrun: 'true'\n")
    proc = jobctl_inproc("launch", "--dry-run", str(secret))
    assert proc.returncode == 0 and "TOKEN" in proc.stdout + proc.stderr
    assert count_jobs(home) == 0


# -- smaller contracts -----------------------------------------------------------------------------
def test_env_files_all_apply_later_wins(jobctl, home):
    a = home / "a.env"
    a.write_text("A=1\nBOTH=from-a\n")
    b = home / "b.env"
    b.write_text("B=2\nBOTH=from-b\n")
    path = write_job(home, "envs", 'run: echo "$A $B $BOTH"\n')
    job = jobctl.launch(path, "--env-file", str(a), "--env-file", str(b), "--wait")
    assert jobctl("logs", str(job), check=True).stdout.strip() == "1 2 from-b"


def test_status_limit_zero_shows_only_unfinished_jobs(jobctl, home):
    done = jobctl.launch(write_job(home, "done", "run: 'true'\n"), "--wait")
    live = jobctl.launch(write_job(home, "live", "run: sleep 60\n"))
    rows = json.loads(jobctl("status", "--limit", "0", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == [live]
    rows = json.loads(jobctl("status", "--json", check=True).stdout)
    assert {r["id"] for r in rows} == {live, done}
    rows = json.loads(jobctl("status", "--limit", "1", "--all", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == [live, done]  # --limit counts finished jobs; unfinished ones always show
    jobctl.launch(write_job(home, "done2", "run: 'true'\n"), "--wait")
    rows = json.loads(jobctl("status", "--limit", "1", "--json", check=True).stdout)
    assert len(rows) == 2 and done not in [r["id"] for r in rows]
    jobctl("kill", str(live), "--grace", "0")


def test_config_unset_restores_the_default(jobctl_inproc):
    jobctl_inproc.config("defaults.cpus", "3")
    assert jobctl_inproc("config", "get", "defaults.cpus", check=True).stdout.strip() == "3"
    proc = jobctl_inproc("config", "unset", "defaults.cpus")
    assert proc.returncode == 0 and "defaults.cpus" in proc.stderr
    assert jobctl_inproc("config", "get", "defaults.cpus", check=True).stdout.strip() == "1"
    assert jobctl_inproc("config", "unset", "defaults.cpus").returncode == 0  # already unset: fine


def test_supervisor_status_is_text_and_json_keeps_the_fields(jobctl):
    jobctl("supervisor", "start", check=True)
    proc = jobctl("supervisor", "status", check=True)
    assert "{" not in proc.stdout and "'" not in proc.stdout, proc.stdout
    assert "pid" in proc.stdout and "CPU" in proc.stdout
    doc = json.loads(jobctl("supervisor", "status", "--json", check=True).stdout)
    assert doc["running"] is True and isinstance(doc["pid"], int) and "capacity" in doc


def test_launch_json_has_the_same_shape_with_and_without_wait(jobctl, home):
    path = write_job(home, "j", "run: 'true'\n")
    plain = json.loads(jobctl("launch", str(path), "--json", check=True).stdout)
    waited = json.loads(jobctl("launch", str(path), "--json", "--wait", check=True).stdout)
    assert isinstance(plain, list) and isinstance(waited, list)
    assert len(plain) == len(waited) == 1
    assert set(plain[0]) == set(waited[0])
    assert waited[0]["state"] == "COMPLETED"
    one = json.loads(jobctl("wait", str(plain[0]["id"]), "--json", check=True).stdout)
    assert isinstance(one, list) and set(one[0]) == set(plain[0])


def test_name_on_a_pipeline_prefixes_its_jobs(jobctl, home):
    pipe = write_job(home, "pipe", "name: pipe\n---\nname: prep\nrun: 'true'\n---\nname: train\nrun: 'true'\n")
    proc = jobctl("launch", str(pipe), "--name", "exp1", "--json", check=True)
    names = [j["name"] for j in json.loads(proc.stdout)]
    assert names == ["exp1-prep", "exp1-train"]
    noname = write_job(home, "two", "name: a\nrun: 'true'\n---\nname: b\nrun: 'true'\n")
    proc = jobctl("launch", str(noname), "--name", "exp2", "--json", check=True)
    assert [j["name"] for j in json.loads(proc.stdout)] == ["exp2-a", "exp2-b"]


def test_wait_all_waits_for_every_unfinished_job(jobctl, home):
    gate = home / "go"
    wait_for_gate = f"resources: {{cpus: 0.1}}\nrun: while [ ! -e {gate} ]; do sleep 0.05; done"
    a = jobctl.launch(write_job(home, "a", wait_for_gate + "\n"))
    b = jobctl.launch(write_job(home, "b", wait_for_gate + "; exit 3\n"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobctl", "wait", "--all", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=jobctl.env,
    )
    try:
        wait_until(lambda: _waiting(proc.pid), 30, "the waiter to poll")
        gate.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert sorted(r["id"] for r in json.loads(out)) == [a, b]
    proc = jobctl("wait", "--all")  # nothing unfinished: returns at once
    assert proc.returncode == 0
    proc = jobctl("wait")
    assert proc.returncode == 2 and "--all" in proc.stderr


@pytest.mark.parametrize("how", ["wait", "launch"])
def test_ctrl_c_while_waiting_says_the_job_keeps_running(jobctl, home, how):
    path = write_job(home, "long", "run: sleep 60\n")
    if how == "wait":
        job = jobctl.launch(path)
        args = ["wait", str(job)]
    else:
        args = ["launch", str(path), "--wait"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=jobctl.env,
    )
    try:
        rows = wait_until(
            lambda: [r for r in json.loads(jobctl("status", "--json", check=True).stdout) if r["state"] == "ACTIVE"],
            30,
            "the job to run",
        )
        job = rows[0]["id"]
        wait_until(lambda: _waiting(proc.pid), 15, "the waiter to poll")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"job {job} keeps running; wait again: jobctl wait {job}; stop: jobctl kill {job}"
    )
    assert jobctl.state(job) == "ACTIVE"
    jobctl("kill", str(job), "--grace", "0")


def _waiting(pid: int) -> bool:
    """True once the waiter sits in its poll loop: the database is open and the process sleeps."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return any(f.path.endswith("jobctl.db") for f in proc.open_files()) and proc.status() == psutil.STATUS_SLEEPING
    except psutil.Error:
        return False


def test_ci_script_uses_a_fresh_virtualenv_and_the_readme_command():
    script = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "-m venv" in script
    command = next(line for line in script.splitlines() if "pytest" in line and not line.lstrip().startswith("#"))
    assert "pip install" in command and "'.[test]'" in command
    assert "pip install -e '.[test]' && python -m pytest -q" in readme


def test_one_jobs_error_does_not_stop_a_bulk_action(jobctl, home):
    """A job whose attempt folder vanished (as in a race with the supervisor) fails alone."""
    path = write_job(home, "long", "resources: {cpus: 0.1}\nrun: sleep 60\n")
    first, second = jobctl.launch(path), jobctl.launch(path)
    for job in (first, second):
        jobctl.wait_state(job, "ACTIVE", timeout=30)
    folder = home / "state" / "logs" / str(first) / "1"
    moved = folder.with_name("1.moved")
    folder.rename(moved)
    folder.write_text("not a folder")  # writing the kill request into it fails, as in a lost race
    try:
        proc = jobctl("kill", str(first), str(second), "--grace", "0")
    finally:
        folder.unlink()
        moved.rename(folder)
    assert "Traceback" not in proc.stderr
    assert jobctl.state(second) == "KILLED"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and f"job {second} killed" in lines[1], proc.stderr
    if lines[0].startswith("error: "):  # the folder was missing when kill wrote its request
        assert proc.returncode == 1 and f"job {first}" in lines[0], proc.stderr


def test_launch_line_of_an_array_names_a_job_that_exists(jobctl, home):
    """`launched job 7 (NAME) ...` on stderr: NAME is the first job's real name, one that
    `jobctl logs NAME` finds, so for an array `sweep-0`, not the bare `sweep` no job has."""
    job = write_job(home, "sweep", "name: sweep\nrun: 'true'\n")
    proc = jobctl("launch", str(job), "--array", "3")
    assert proc.returncode == 0, proc.stderr
    first = int(proc.stdout.split()[0])
    assert f"launched job {first} (sweep-0) and 2 more" in proc.stderr, proc.stderr
    proc = jobctl("launch", str(job), "--array", "5-6")
    assert "(sweep-5) and 1 more" in proc.stderr, proc.stderr


def test_config_show_says_detected_only_for_what_is_detected(jobctl_inproc):
    """capacity.* is detected from the machine when unset; slurm.partition/account are simply not
    set (sbatch uses the cluster's default), which `config show` and `config unset` must say."""
    shown = jobctl_inproc("config", "show", check=True).stdout
    assert "capacity.cpus = (detected)" in shown, shown
    assert "slurm.partition = (not set)" in shown and "slurm.account = (not set)" in shown, shown
    jobctl_inproc("config", "set", "slurm.partition", "gpu", check=True)
    proc = jobctl_inproc("config", "unset", "slurm.partition")
    assert proc.returncode == 0 and "slurm.partition = (not set) (default)" in proc.stderr, proc.stderr


def test_logs_of_a_job_not_started_yet_is_a_state_error(jobctl, home):
    """`logs` of a waiting job is well formed; the job is just not there yet: exit 1 (wrong
    state, README "Exit codes"), not 2 (bad usage), with one line that says to use -f."""
    blocker = write_job(home, "first", "name: first\nrun: sleep 30\n")
    down = write_job(home, "down", "name: down\ndepends_on: [first]\nrun: 'true'\n")
    jobctl("launch", str(blocker), str(down), check=True)
    proc = jobctl("logs", "down")
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not started yet" in proc.stderr, proc.stderr
    jobctl("kill", "--all")


def test_wait_exits_with_the_code_a_failed_setup_exited_with(jobctl, home):
    """`launch --wait`/`wait` exit with the job's own exit code when it failed with one, and a
    setup that exited 7 is the job's own code (FAILED (setup failed), exit_code 7): exit 7, not 1."""
    job = write_job(home, "st", "name: st\nsetup: exit 7\nrun: echo never\n")
    proc = jobctl("launch", str(job), "--wait", "--json")
    row = json.loads(proc.stdout)[0]
    assert row["state"] == "FAILED" and row["reason"] == "setup_failed" and row["exit_code"] == 7, row
    assert proc.returncode == 7, proc.stderr
    assert jobctl("wait", str(row["id"])).returncode == 7


def test_a_gpu_request_this_machine_cannot_hold_says_how_to_declare_gpus(jobctl_inproc, home):
    """examples/gpu.yaml on a machine without H100s: refused (exit 2) in one line that also says
    how to declare GPUs, as the example file's own comment does."""
    jobctl_inproc("config", "set", "capacity.accelerators", "{A100 = 1}", check=True)
    proc = jobctl_inproc("launch", str(REPO / "examples" / "gpu.yaml"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs 2 H100 but this machine has 0" in lines[0], proc.stderr
    assert "jobctl config set capacity.accelerators" in lines[0], proc.stderr
    assert count_jobs(home) == 0


def test_wait_line_of_a_killed_job_does_not_repeat_its_status(jobctl, home):
    """`KILLED (by alice)` already says who killed it: not `KILLED (by alice): killed by alice`."""
    import getpass

    job_id = jobctl.launch(write_job(home, "long", "name: long\nrun: sleep 60\n"))
    jobctl.wait_state(job_id, "ACTIVE")
    jobctl("kill", str(job_id), "--grace", "1s", check=True)
    proc = jobctl("wait", str(job_id))
    assert proc.returncode == 137, proc.stderr
    assert proc.stderr.strip() == f"job {job_id} (long): KILLED (by {getpass.getuser()})", proc.stderr


def test_status_state_and_label_filters_pick_from_every_finished_job(jobctl, home):
    """`status --state FAILED` (and `--label`) shows the newest finished jobs *of that state*, up
    to the limit: not only those among the 20 newest of any state."""
    failing = write_job(
        home, "bad", "name: bad\nlabels: {kind: bad}\nresources: {cpus: 0.1, memory: 64MiB}\nrun: exit 3\n"
    )
    good = write_job(home, "good", "name: good\nresources: {cpus: 0.1, memory: 64MiB}\nrun: 'true'\n")
    jobctl("launch", str(failing), "--array", "3", "--wait")
    jobctl("launch", str(good), "--array", "25", "--wait", check=True)

    def ids(*args):
        return [r["id"] for r in json.loads(jobctl("status", *args, "--json", check=True).stdout)]

    table = jobctl("status", "--state", "FAILED", "--expand", check=True).stdout  # every task, not the summary row
    assert [line.split()[1] for line in table.splitlines() if "FAILED" in line] == ["bad-2", "bad-1", "bad-0"], table
    assert len(ids("--state", "FAILED", "--limit", "2")) == 2
    assert len(ids("--label", "kind=bad")) == 3
    assert len(ids("--state", "COMPLETED")) == 20  # still the 20 newest by default


def test_a_state_named_as_slurm_names_it_suggests_ours(jobctl_inproc):
    """`status --state RUNNING` (Slurm's word) is refused with the jobctl state to use instead."""
    proc = jobctl_inproc("status", "--state", "RUNNING")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown state RUNNING" in proc.stderr and 'did you mean "ACTIVE"' in proc.stderr, proc.stderr
    assert 'did you mean "KILLED"' in jobctl_inproc("status", "--state", "cancelled").stderr


def test_logs_follow_of_a_job_that_ends_without_running_says_so(jobctl, home):
    """`logs -f` of a BLOCKED job whose upstream then fails: it never runs, so there is nothing to
    stream; the command ends saying why (exit 1), not silently with 0."""
    chain = write_job(home, "chain", "name: up\nrun: sleep 1; exit 1\n---\nname: dn\nrun: echo dn\n")
    jobctl("launch", str(chain), check=True)
    proc = jobctl("logs", "-f", "dn", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "ended without running" in proc.stderr and "FAILED (upstream failed)" in proc.stderr, proc.stderr
