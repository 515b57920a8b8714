"""Slot runners (jobctl/backends/local/slots.py) as a user meets them: a runner that ran one job must
run the next one exactly as a fresh runner would, whatever the last one left behind (its working
directory, its files). Real supervisors, real runners, real processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from helpers import write_job
from test_slot_runners import runner_of


def git_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "data.txt").write_text("from the repository\n")
    subprocess.run([*git, "add", "data.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return repo


def test_a_git_workdir_job_runs_after_the_last_jobs_folder_was_removed(jobctl, home, tmp_path):
    """The runner entered the last job's clone; `rm` of that job deletes it. The next job's clone must
    not depend on the folder the runner happens to be in."""
    jobctl.config("capacity.cpus", "1")
    repo = git_repo(tmp_path)
    job = write_job(home, "g", f"resources: {{cpus: 1}}\nworkdir: {{url: {repo}}}\nrun: cat data.txt\n")
    a = jobctl.launch(job)
    assert jobctl("wait", str(a), timeout=60).returncode == 0
    jobctl("rm", str(a), check=True)
    b = jobctl.launch(job)
    jobctl("wait", str(b), timeout=60)
    done = jobctl.job(b)
    assert done["state"] == "COMPLETED", done.get("message")
    assert "from the repository" in jobctl("logs", str(b), check=True).stdout
    result = json.loads((home / "state" / "logs" / str(b) / "1" / "result.json").read_text())
    assert result["outcome"] == "completed"
    assert runner_of(home, b)["pid"] > 0


SUPERVISOR_SIDE = r"""
import json, os, sys, time
from pathlib import Path
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.plan import RunnerPlan
from jobctl.backends.local.slots import RunnerPool

logs, action = Path(sys.argv[1]), sys.argv[2]
pool = RunnerPool(str(logs / "no-supervisor.sock"))
backend = LocalBackend(logs, pool)
plan = RunnerPlan(7, 1, 1, "sleep 2; echo ran", rank_env=[{}], workdir=str(logs), supervisor_pid=os.getpid())
if action == "stop":
    backend.suspend("7/1")  # `jobctl stop` of a job the supervisor recorded ACTIVE, before its runner began
print(backend.start("7/1", plan), flush=True)
result = logs / "7" / "1" / "result.json"
deadline = time.monotonic() + 60
while not result.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
pool.close()
"""


def stopped(process) -> bool:
    import psutil

    try:
        return process.status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False  # it ended: it was not frozen


def test_a_stop_that_comes_before_the_runner_began_still_freezes_the_job(tmp_path):
    """The supervisor commits ACTIVE and only then hands the attempt to a runner: a `stop` in between finds
    no runner to signal (and maybe no attempt folder yet). The runner must honour the freeze it was not
    told about by a signal, as it honours a kill.json written before it began."""
    import sys
    import time

    import psutil
    from helpers import wait_until

    logs = tmp_path / "logs"
    logs.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SIDE, str(logs), "stop"], stdout=subprocess.PIPE, text=True
    )
    try:
        folder = logs / "7" / "1"
        runner = wait_until(
            lambda: (folder / "runner.json").exists() and json.loads((folder / "runner.json").read_text()),
            30,
            "the runner to begin",
        )
        workers = wait_until(
            lambda: [p for p in psutil.Process(runner["pid"]).children(recursive=True)], 30, "the workers"
        )
        try:
            wait_until(lambda: all(stopped(p) for p in workers), 15, "the job's processes frozen")
        except AssertionError:
            info = []
            for p in [psutil.Process(runner["pid"]), *workers]:
                try:
                    info.append((p.pid, p.status(), open(f"/proc/{p.pid}/stat").read()[:60]))
                except Exception as exc:
                    info.append((p.pid, repr(exc)))
            raise AssertionError(f"not frozen: {info}") from None
        time.sleep(2.5)  # longer than the job runs when not frozen
        assert not (folder / "result.json").exists(), "the job ran to its end while SUSPENDED"
        # `jobctl start`: the mark goes, then SIGUSR2
        from jobctl.backends.local.backend import LocalBackend

        LocalBackend(logs).resume("7/1")
        wait_until((folder / "result.json").exists, 30, "the job to end once resumed")
        assert json.loads((folder / "result.json").read_text())["outcome"] == "completed"
    finally:
        proc.wait(timeout=60)


def test_a_job_gets_sigpipe_as_in_a_shell(jobctl, home):
    """Python ignores SIGPIPE (and SIGXFSZ), and an ignored signal stays ignored across exec: a worker
    must get them back at their default, or `yes | head -1` says "Broken pipe" and pipelines misbehave."""
    job = write_job(home, "pipe", "run: |\n  yes | head -1\n  grep SigIgn /proc/self/status\n")
    a = jobctl.launch(job)
    assert jobctl("wait", str(a), timeout=60).returncode == 0
    out = jobctl("logs", str(a), check=True).stdout
    assert "Broken pipe" not in out, out
    ignored = int(next(line for line in out.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{sig.name} is ignored in the job: {out}"


def test_a_run_script_over_128_kib_runs_with_a_setup(jobctl, home):
    """A script longer than one argument may be (Linux: 128 KiB) goes through a file; with a setup the
    worker must not pass it as an argument as well."""
    lines = "\n".join(f"  X{i}=1" for i in range(20000))  # about 190 KB
    job = write_job(home, "huge", f"setup: echo setup-ok\nrun: |\n{lines}\n  echo run-done\n")
    assert job.stat().st_size > 150_000
    a = jobctl.launch(job)
    jobctl("wait", str(a), timeout=60)
    done = jobctl.job(a)
    assert done["state"] == "COMPLETED", done.get("message")
    out = jobctl("logs", str(a), check=True).stdout
    assert "setup-ok" in out and "run-done" in out
