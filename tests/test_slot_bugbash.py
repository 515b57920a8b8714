"""Slot runners (jobctl/backends/local/slots.py) as a user meets them: a runner that ran one job must
run the next one exactly as a fresh runner would, whatever the last one left behind (its working
directory, its files). Real supervisors, real runners, real processes.
"""

from __future__ import annotations

import json
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
