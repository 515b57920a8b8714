"""Real task files, as they are (SPEC section 8).

tests/fixtures/tasks/ holds task files copied unchanged from the public SkyPilot repository (see
its SOURCES.md). Every one must pass `launch --dry-run`: exit 0, a plan on stdout, at most one
warning per key and place, no traceback. Then the parts a real launch does with them: a git
workdir cloned at its ref, a workdir missing here, a file without `run`, a job group.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import InProcessJobctl, Jobctl, count_jobs, wait_until, write_job

from jobctl.app.launch import LaunchOptions, build_plan
from jobctl.app.session import Service
from jobctl.home import paths as paths_module

TASKS = Path(__file__).resolve().parent / "fixtures" / "tasks"
TASK_FILES = sorted(p for p in TASKS.iterdir() if p.suffix in (".yaml", ".yml"))
WARNING_RE = re.compile(r"warning: (?P<path>[^:]+):(?P<line>\d+): (?P<key>[^:]+): .+")


def test_there_are_at_least_100_real_files_each_with_a_source() -> None:
    sources = (TASKS / "SOURCES.md").read_text()
    assert len(TASK_FILES) >= 100
    for path in TASK_FILES:
        row = re.search(rf"^\| {re.escape(path.name)} \| (\S+) \| (\S+) \| ([0-9a-f]{{40}}) \|$", sources, re.M)
        assert row, f"{path.name} has no row in SOURCES.md"
        source = row.group(2)
        if ":block" in source:  # a YAML block of a document: `docs/usage.rst:block2` -> `docs__usage__block2.yaml`
            document, block = source.rsplit(":", 1)
            source = f"{document.rsplit('.', 1)[0]}/{block}.yaml"
        assert path.name.endswith(source.replace("/", "__"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    home = tmp_path_factory.mktemp("home")
    os.environ["JOBCTL_HOME"] = str(home)
    try:
        return Service(paths_module.resolve())
    finally:
        del os.environ["JOBCTL_HOME"]


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_every_real_file_makes_a_plan(service: Service, path: Path) -> None:
    """In process (fast): the same plan `launch --dry-run` prints, with no exception at all."""
    plan, tasks = build_plan(service, [str(path)], LaunchOptions(dry_run=True))
    assert plan.jobs and len(plan.jobs) == len(tasks)
    assert all(len(w.splitlines()) == 1 and w.startswith(f"{path}:") for w in plan.warnings)
    places = [w.split(": ", 2)[0:2] for w in plan.warnings]
    assert len(places) == len({tuple(p) for p in places}), "a key warned about twice at one place"


def test_every_real_file_through_the_cli(jobctl: Jobctl) -> None:
    """One real `jobctl launch --dry-run` over every file: exit 0, a plan, one-line warnings."""
    proc = jobctl("launch", "--dry-run", *map(str, TASK_FILES), timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings and all(WARNING_RE.fullmatch(line) for line in warnings)
    assert sum(1 for line in proc.stderr.splitlines() if not line.startswith("warning:")) == 0
    plan = jobctl("launch", "--dry-run", "--json", *map(str, TASK_FILES), timeout=180)
    assert plan.returncode == 0
    jobs = json.loads(plan.stdout)["jobs"]
    assert len(jobs) >= len(TASK_FILES)  # pipelines and job groups add more
    assert count_jobs(jobctl.home) == 0  # a dry run records nothing


@pytest.mark.parametrize(
    "name",
    [
        "skypilot__llm__fairseq2__sft.sky.yaml",  # workdir: {url, ref}
        "skypilot__llm__axolotl__axolotl.yaml",  # workdir: mistral (not here)
        "skypilot__tests__test_yamls__test_only_setup.yaml",  # no run
        "skypilot__examples__job-group-sdk__job_group.yaml",  # execution: parallel
        "skypilot__tests__test_yamls__test_multiple_resources.yaml",  # any_of
        "skypilot__examples__job_queue__job_multinode.yaml",  # K80:0.5
    ],
)
def test_sample_one_by_one_through_the_cli(jobctl_inproc: InProcessJobctl, name: str) -> None:
    proc = jobctl_inproc("launch", "--dry-run", str(TASKS / name))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert proc.stdout.strip()


def test_dry_run_warnings_of_real_files(jobctl_inproc: InProcessJobctl) -> None:
    axolotl = TASKS / "skypilot__llm__axolotl__axolotl.yaml"
    proc = jobctl_inproc("launch", "--dry-run", str(axolotl))
    assert proc.returncode == 0
    missing = str(TASKS / "mistral")
    assert f'{axolotl}:10: workdir: "{missing}" does not exist here (a real launch is refused)' in proc.stderr
    assert f'would refuse: {axolotl}:10: workdir: "{missing}" does not exist here' in proc.stdout
    proc = jobctl_inproc("launch", "--dry-run", str(TASKS / "skypilot__examples__job-group-sdk__job_group.yaml"))
    assert proc.returncode == 0 and "server" in proc.stdout and "client" in proc.stdout


# -- real launches ---------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A bare repository: version.txt says v1 at tag v1, v2 at the later commit on main."""
    work, bare = tmp_path / "work", tmp_path / "repo.git"
    _git("init", "-q", str(work))
    (work / "version.txt").write_text("v1\n")
    _git("add", "version.txt", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    _git("tag", "v1", cwd=work)
    (work / "version.txt").write_text("v2\n")
    _git("commit", "-q", "-am", "two", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def test_git_workdir_runs_in_a_clone_at_the_ref(jobctl: Jobctl, tmp_path: Path, bare_repo: Path) -> None:
    seen = tmp_path / "seen.txt"
    job = write_job(
        tmp_path,
        "git",
        f"workdir:\n  url: file://{bare_repo}\n  ref: v1\nrun: cat version.txt > {seen}; pwd >> {seen}\n",
    )
    job_id = jobctl.launch(job)
    assert jobctl.wait_state(job_id, "COMPLETED", "FAILED", timeout=30)["state"] == "COMPLETED"
    version, cwd = seen.read_text().splitlines()
    assert version == "v1"
    assert Path(cwd).name == "workdir" and Path(cwd).resolve().is_relative_to(jobctl.home.resolve())
    # no ref: the default branch, v2
    job = write_job(tmp_path, "head", f"workdir: {{url: 'file://{bare_repo}'}}\nrun: cat version.txt > {seen}\n")
    job_id = jobctl.launch(job)
    assert jobctl.wait_state(job_id, "COMPLETED", "FAILED", timeout=30)["state"] == "COMPLETED"
    assert seen.read_text() == "v2\n"


def test_git_workdir_clone_failure_is_a_start_error(jobctl: Jobctl, tmp_path: Path, bare_repo: Path) -> None:
    job = write_job(tmp_path, "badref", f"workdir: {{url: 'file://{bare_repo}', ref: v9}}\nrun: echo hi\n")
    job_id = jobctl.launch(job)
    info = jobctl.wait_state(job_id, "COMPLETED", "FAILED", timeout=30)
    assert (info["state"], info["reason"]) == ("FAILED", "start_error")
    assert f"git clone of file://{bare_repo} at v9 failed" in info["message"]


def test_git_workdir_that_does_not_exist_here_is_refused(jobctl_inproc: InProcessJobctl, tmp_path: Path) -> None:
    gone = tmp_path / "gone.git"
    job = write_job(tmp_path, "gone", f"workdir: {{url: 'file://{gone}', ref: v1}}\nrun: echo hi\n")
    proc = jobctl_inproc("launch", str(job))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f'{job}:1: workdir.url: "{gone}" does not exist (the git repository to clone)' in proc.stderr
    assert count_jobs(jobctl_inproc.home) == 0
    assert jobctl_inproc("launch", "--dry-run", str(job)).returncode == 0


@pytest.mark.parametrize("workdir", ["mistral", "/root/transformers-not-here"])
def test_missing_workdir_dry_runs_but_a_real_launch_is_refused(
    jobctl_inproc: InProcessJobctl, tmp_path: Path, workdir: str
) -> None:
    job = write_job(tmp_path, "missing", f"workdir: {workdir}\nrun: echo hi\n")
    dry = jobctl_inproc("launch", "--dry-run", str(job))
    assert dry.returncode == 0 and "missing" in dry.stdout
    proc = jobctl_inproc("launch", str(job))
    path = os.path.join(tmp_path, workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f'{job}:1: workdir: "{path}" does not exist here' in proc.stderr
    assert count_jobs(jobctl_inproc.home) == 0


def test_a_file_without_run_runs_its_setup_alone(
    jobctl: Jobctl, jobctl_inproc: InProcessJobctl, tmp_path: Path
) -> None:
    marker = tmp_path / "setup-ran"
    job = write_job(tmp_path, "setup-only", f"setup: echo ran > {marker}\n")
    dry = jobctl_inproc("launch", "--dry-run", str(job))
    assert dry.returncode == 0 and "run: missing: SkyPilot would only provision" in dry.stderr
    job_id = jobctl.launch(job)
    assert jobctl.wait_state(job_id, "COMPLETED", "FAILED", timeout=30)["state"] == "COMPLETED"
    assert marker.read_text() == "ran\n"


def test_a_file_with_nothing_to_run_is_refused_naming_run(jobctl_inproc: InProcessJobctl, tmp_path: Path) -> None:
    job = write_job(tmp_path, "nothing", "resources:\n  autostop:\n    idle_minutes: 5\n")
    assert jobctl_inproc("launch", "--dry-run", str(job)).returncode == 0
    proc = jobctl_inproc("launch", str(job))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{job}:1: run: missing (a job needs a run command, or at least setup)" in proc.stderr
    assert count_jobs(jobctl_inproc.home) == 0


def test_a_job_group_runs_its_tasks_side_by_side(jobctl: Jobctl, tmp_path: Path) -> None:
    """execution: parallel: no task waits for another (a pipeline would chain them)."""
    flag = tmp_path / "a-started"
    job = write_job(
        tmp_path,
        "group",
        f"---\nname: grp\nexecution: parallel\n---\nname: a\nrun: touch {flag}; sleep 30\n---\nname: b\nrun: echo b\n",
    )
    proc = jobctl("launch", str(job), check=True)
    first, second = (int(x) for x in proc.stdout.split())
    assert jobctl.wait_state(second, "COMPLETED", timeout=30)
    assert jobctl.state(first) == "ACTIVE"  # b did not wait for a
    wait_until(flag.exists, 15, "task a to start")
    jobctl("kill", str(first))
