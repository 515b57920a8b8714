"""Issue: the Slurm backend, without a cluster. Parsing, state mapping and the batch script, fed with
outputs recorded on a real Slurm 22.05 cluster (see docs/slurm-notes.md). These always run; the
tests that count are in test_slurm.py, against a real cluster."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from helpers import wait_until

from jobctl.backends.slurm import client as slurm
from jobctl.backends.slurm.client import (
    Result,
    SlurmBackend,
    SlurmUnreachable,
    Submission,
    array_spec,
    batch_script,
    choose_gres,
    error_text,
    gpu_offer,
    observe,
    sbatch_options,
)
from jobctl.core import states
from jobctl.engine.local import failure_detail
from jobctl.engine.slurm_sync import route, target_state
from jobctl.errors import BackendError, UsageError


def status_of(obs) -> str:
    """The STATUS text a job would show after this observation (when it ends there)."""
    detail = failure_detail(obs.reason, obs.message, obs.exit_code) if obs.state == "FAILED" else None
    if obs.state == "PENDING":
        detail = states.REASON_TEXT.get(obs.reason or "")
    return states.status_text(obs.state, detail)


# -- the state mapping (SPEC section 3) --------------------------------------------------------------
@pytest.mark.parametrize(
    "slurm_state, reason, exit_text, expected",
    [
        ("PENDING", "Resources", None, "PENDING (resources)"),
        ("PENDING", "Priority", None, "PENDING (priority)"),
        ("PENDING", "None", None, "PENDING"),
        ("PENDING", "JobArrayTaskLimit", None, "PENDING (resources)"),
        ("PENDING", "Dependency", None, "BLOCKED"),
        ("PENDING", "DependencyNeverSatisfied", None, "FAILED (upstream failed)"),
        ("PENDING", "JobHeldAdmin", None, "SUSPENDED"),
        ("PENDING", "JobHeldUser", None, "SUSPENDED"),
        ("PENDING", "job requeued in held state", None, "SUSPENDED"),
        ("RUNNING", "None", None, "ACTIVE"),
        ("SUSPENDED", "None", None, "SUSPENDED"),
        ("COMPLETED", "None", "0:0", "COMPLETED"),
        ("FAILED", "NonZeroExitCode", "3:0", "FAILED (exit 3)"),
        ("FAILED", "NonZeroExitCode", "0:9", "FAILED (exit 137)"),
        ("FAILED", "JobLaunchFailure", "0:53", "FAILED (start error)"),
        ("TIMEOUT", "TimeLimit", "0:0", "FAILED (timed out)"),
        ("OUT_OF_MEMORY", "OutOfMemory", "0:125", "FAILED (out of memory)"),
        ("CANCELLED", "None", "0:0", "KILLED"),
        ("CANCELLED by 1000", "None", "0:15", "KILLED"),
        ("CANCELLED", "DependencyNeverSatisfied", "0:0", "FAILED (upstream failed)"),
        ("PREEMPTED", "None", "0:0", "SUSPENDED"),
        ("NODE_FAIL", "NodeDown", "0:0", "FAILED (worker lost)"),
        ("BOOT_FAIL", "None", "0:0", "FAILED (start error)"),
    ],
)
def test_every_slurm_state_maps_onto_a_jobctl_state(slurm_state, reason, exit_text, expected):
    assert status_of(observe("7", slurm_state, reason, exit_text)) == expected


def test_the_mapping_agrees_with_the_reference_table():
    for slurm_state, (state, reason) in states.REFERENCE_MAPPING["slurm"].items():
        obs = observe("7", slurm_state, "Resources" if slurm_state == "PENDING" else "None", "1:0")
        assert (obs.state, obs.reason) == (state, reason), slurm_state


def test_preempted_and_held_jobs_carry_their_reason():
    assert observe("7", "PREEMPTED").reason == "system"
    assert observe("7", "PENDING", "JobHeldAdmin").reason == "held"
    assert observe("7", "SUSPENDED").reason == "user"


def test_transient_states_are_no_news():
    for state in ("COMPLETING", "SIGNALING", "STAGE_OUT", "SOMETHING_NEW"):
        assert observe("7", state).transient


def test_times_come_from_slurm_and_an_estimated_start_is_ignored():
    running = observe("7", "RUNNING", "None", None, "2026-11-22T12:17:34", "2027-11-22T12:17:34")
    assert running.started_at is not None and running.ended_at is None  # %e is only start + limit
    pending = observe("7", "PENDING", "Resources", None, "2027-11-22T12:17:34", "N/A")
    assert pending.started_at is None
    done = observe("7", "COMPLETED", "None", "0:0", "2026-11-22T12:17:34", "2026-11-22T12:18:00")
    assert done.ended_at - done.started_at == 26
    cancelled_waiting = observe("7", "CANCELLED", "None", "0:0", "2026-11-22T12:17:34", "2026-11-22T12:17:34")
    assert cancelled_waiting.started_at is None


# -- what the service layer does with an observation -------------------------------------------------
def test_jobctl_own_stop_is_not_overridden_by_slurm():
    cancelled, pending = observe("7", "CANCELLED"), observe("7", "PENDING", "Resources")
    held = observe("7", "PENDING", "job requeued in held state")
    assert target_state("SUSPENDED", "released", cancelled, recent=False) is None
    assert target_state("SUSPENDED", "released", held, recent=False) is None
    assert target_state("SUSPENDED", "released", pending, recent=False) is None
    assert target_state("SUSPENDED", "system", cancelled, recent=False) is None
    assert target_state("ACTIVE", None, cancelled, recent=False) == "KILLED"
    running = observe("7", "RUNNING")
    assert target_state("SUSPENDED", "user", running, recent=True) is None  # the suspend has not shown yet
    assert target_state("SUSPENDED", "user", running, recent=False) == "ACTIVE"  # resumed outside jobctl
    assert target_state("SUSPENDED", "user", observe("7", "COMPLETED", "None", "0:0"), recent=True) == "COMPLETED"
    assert target_state("ACTIVE", None, observe("7", "COMPLETING"), recent=False) is None


def test_a_job_that_ran_between_two_looks_passes_through_active():
    assert route("PENDING", "COMPLETED") == ["ACTIVE", "COMPLETED"]
    assert route("BLOCKED", "ACTIVE") == ["PENDING", "ACTIVE"]
    assert route("BLOCKED", "FAILED") == ["FAILED"]
    assert route("BLOCKED", "FAILED", ran=True) == ["PENDING", "ACTIVE", "FAILED"]
    assert route("PENDING", "RETRYING") == ["ACTIVE", "RETRYING"]
    assert route("ACTIVE", "KILLED") == ["KILLED"]


def test_a_running_job_that_ends_takes_no_detour():
    for end in ("COMPLETED", "FAILED", "KILLED"):
        assert route("ACTIVE", end, ran=True) == [end]
    assert route("SUSPENDED", "ACTIVE") == ["ACTIVE"]


# -- polling with recorded outputs ---------------------------------------------------------------------
class Recorded:
    """A fake `run`: answers each command from a table of recorded outputs and keeps the calls."""

    def __init__(self, answers: dict[str, Result | Exception]):
        self.answers, self.calls = answers, []

    def __call__(self, argv: list[str], timeout: float) -> Result:
        self.calls.append(argv)
        key = " ".join(argv[:2]) if argv[0] in ("sacct", "scontrol") else argv[0]
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(out: str = "", err: str = "", rc: int = 0) -> Result:
    return Result([], rc, out, err)


SQUEUE = """\
9_0|9|9|0|PENDING|Resources|N/A|N/A|sweep
10|10|10|N/A|PENDING|Dependency|N/A|N/A|b
7|7|7|N/A|RUNNING|None|2026-11-22T12:17:34|2027-11-22T12:17:34|train
3_0|4|3|0|COMPLETED|None|2026-11-22T12:17:34|2026-11-22T12:17:35|arr
13|13|13|N/A|FAILED|NonZeroExitCode|2026-11-22T12:18:05|2026-11-22T12:18:05|fail
"""


def test_poll_asks_squeue_once_and_sacct_once_for_the_rest():
    run = Recorded(
        {
            "squeue": ok(SQUEUE),
            "sacct -P": ok("Slurm accounting storage is disabled\n", rc=1),
            "sacct -c": ok(
                "13|FAILED|3:0|2026-11-22T12:18:05|2026-11-22T12:18:05|00:00:00\n"
                "21|COMPLETED|0:0|2026-11-22T12:20:00|2026-11-22T12:20:09|00:00:09\n"
                "22|PENDING|0:0|Unknown|Unknown|00:00:00\n22|NODE_FAIL|0:0|2026-11-22T12:20:00|"
                "2026-11-22T12:20:05|00:00:05\n",
                err="sacct: error: Unknown type ArrayJobId: 3\n",
            ),
        }
    )
    seen = SlurmBackend(run).poll(
        ["9_0", "10", "7", "3_0", "13", "21", "3_1", "99"], raw_id=lambda bid: {"3_1": "22"}.get(bid)
    )
    assert [c[0] for c in run.calls] == ["squeue", "sacct", "sacct"]
    assert run.calls[0][-1] == "9_0,10,7,3_0,13,21,3_1,99"
    assert {b: o.state for b, o in seen.items()} == {
        "9_0": "PENDING",
        "10": "BLOCKED",
        "7": "ACTIVE",
        "3_0": "COMPLETED",
        "13": "FAILED",
        "21": "COMPLETED",
        "3_1": "FAILED",
    }  # 99: unknown to Slurm, left out; 22 is the raw ID of 3_1, its last line counts
    assert seen["13"].exit_code == 3 and seen["3_1"].reason == "worker_lost" and seen["3_0"].raw_id == "4"
    assert "-c" in run.calls[2] and run.calls[2][run.calls[2].index("-j") + 1] == "13,21,22,99"


def test_poll_uses_the_accounting_database_when_there_is_one():
    run = Recorded(
        {
            "squeue": ok("", "slurm_load_jobs error: Invalid job id specified\n", rc=1),
            "sacct -P": ok("3_1|22|CANCELLED by 1000|0:15|2026-11-22T12:20:00|2026-11-22T12:20:05\n"),
        }
    )
    seen = SlurmBackend(run).poll(["3_1"])
    assert seen["3_1"].state == "KILLED" and len(run.calls) == 2


@pytest.mark.parametrize(
    "answer",
    [
        ok("", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", rc=1),
        ok("", "squeue did not answer within 6 s", rc=124),
    ],
)
def test_a_controller_that_is_down_is_reported_as_unreachable(answer):
    with pytest.raises(SlurmUnreachable, match="slurm controller unreachable"):
        SlurmBackend(Recorded({"squeue": answer})).poll(["7"])


def test_a_command_that_hangs_is_cut_short():
    from jobctl.backends.slurm.client import run_command

    result = run_command(["sleep", "5"], 0.2)
    assert result.returncode == 124 and "did not answer within 0.2 s" in result.stderr


def test_missing_slurm_commands_are_one_line():
    from jobctl.backends.slurm.client import run_command

    with pytest.raises(BackendError, match="^no-such-sbatch not found: the slurm backend needs"):
        run_command(["no-such-sbatch"], 1)


# -- submitting and controlling ------------------------------------------------------------------------
def sub(**kw) -> Submission:
    base = dict(job_id=12, job_name="train", attempt=1, logs="/jc/state/logs", workdir="/work", run="echo hi")
    return Submission(**{**base, **kw})


def test_sbatch_errors_become_one_line_messages():
    partition = ok(
        "",
        "sbatch: error: invalid partition specified: nosuch\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
        rc=1,
    )
    with pytest.raises(UsageError) as info:
        SlurmBackend(Recorded({"sbatch": partition})).submit("/x.sh", sub(partition="nosuch"))
    assert str(info.value) == "slurm.partition: invalid partition specified: nosuch; Invalid partition name specified"
    assert info.value.exit_code == 2
    memory = ok(
        "",
        "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission "
        "failed: Requested node configuration is not available\n",
        rc=1,
    )
    with pytest.raises(BackendError) as info:
        SlurmBackend(Recorded({"sbatch": memory})).submit("/x.sh", sub())
    assert "\n" not in str(info.value) and "Requested node configuration is not available" in str(info.value)
    down = ok(
        "", "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n", rc=1
    )
    with pytest.raises(SlurmUnreachable):
        SlurmBackend(Recorded({"sbatch": down})).submit("/x.sh", sub())
    assert SlurmBackend(Recorded({"sbatch": ok("123;cluster\n")})).submit("/x.sh", sub()) == "123"


def test_control_commands_and_their_refusals():
    run = Recorded(
        {
            "scontrol suspend": ok(),
            "scontrol resume": ok("", "Job is not suspended for job 7\n", rc=1),
            "scontrol requeuehold": ok(),
            "scancel": ok(),
            "scontrol hold": ok("", "Invalid job id specified for job 99999\n", rc=1),
        }
    )
    backend = SlurmBackend(run)
    backend.suspend("7")
    backend.resume("7")  # already running: nothing to do
    backend.cancel("7", reason="released")
    backend.cancel("7")
    assert [c[:2] for c in run.calls] == [
        ["scontrol", "suspend"],
        ["scontrol", "resume"],
        ["scontrol", "requeuehold"],
        ["scancel", "7"],
    ]
    with pytest.raises(BackendError, match="^cannot hold Slurm job 99999: Invalid job id specified"):
        backend.hold("99999")
    denied = Recorded({"scontrol suspend": ok("", "Access/permission denied for job 7\n", rc=1)})
    with pytest.raises(BackendError, match="needs a Slurm operator or administrator.*jobctl stop --release"):
        SlurmBackend(denied).suspend("7")


def test_error_text_is_one_line_without_prefixes():
    assert error_text("sbatch: error: a\nsbatch: error: Batch job submission failed: b\n") == "a; b"
    assert error_text("") == "no error message"


# -- GPUs --------------------------------------------------------------------------------------------
def test_gpu_offer_reads_sinfo():
    assert gpu_offer("gpu:h100:4\n") == {"h100": 4}
    assert gpu_offer("gpu:h100:4(S:0-1),gpu:a100:2\ngpu:8\n") == {"h100": 4, "a100": 2, "": 8}
    assert gpu_offer("(null)\n") == {}


def test_gres_asks_by_type_when_slurm_knows_it_else_by_count():
    assert choose_gres([["H100", 2]], {"h100": 4}) == ("gpu:h100:2", "H100", 2)
    assert choose_gres([["A100", 8], ["H100", 2]], {"h100": 4}) == ("gpu:h100:2", "H100", 2)
    assert choose_gres([["A100", 1]], {"h100": 4}) == ("gpu:1", "A100", 1)
    assert choose_gres([["H100", 2]], None) == ("gpu:2", "H100", 2)  # sinfo could not tell
    assert choose_gres([], {"h100": 4}) == (None, None, 0)
    with pytest.raises(UsageError, match="offers no GPUs"):
        choose_gres([["H100", 1]], {})


# -- the batch script --------------------------------------------------------------------------------
def test_sbatch_options_map_the_job_request():
    opts = sbatch_options(
        sub(
            num_nodes=2,
            cpus=1.5,
            memory_mib=2048,
            gres="gpu:h100:2",
            timeout=90,
            dependency="afterok:3:4,afternotok:5",
            partition="gpu",
            account="lab",
            comment="team=vision",
            array=[0, 1, 2, 5],
        )
    )
    for expected in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=2",
        "--mem=2048M",
        "--gres=gpu:h100:2",
        "--time=2",
        "--dependency=afterok:3:4,afternotok:5",
        "--partition=gpu",
        "--account=lab",
        "--comment=team=vision",
        "--array=0-2,5",
        "--chdir=/work",
        "--output=/jc/state/logs/12/1/slurm-array-%a.out",
    ):
        assert expected in opts
    assert "--hold" in sbatch_options(sub(hold=True))
    assert "--output=/jc/state/logs/12/1/slurm.out" in sbatch_options(sub())
    assert array_spec([3]) == "3" and array_spec([1, 2, 3, 7, 8]) == "1-3,7-8"


@pytest.fixture
def fake_srun(tmp_path) -> Path:
    """A stand-in for srun that starts the worker once per task with SLURM_PROCID set."""
    folder = tmp_path / "bin"
    folder.mkdir()
    srun = folder / "srun"
    srun.write_text(
        "#!/bin/bash\nn=1\nwhile [[ $1 == --* ]]; do [[ $1 == --ntasks=* ]] && n=${1#--ntasks=}; shift; "
        'done\ncode=0\nfor ((r=0; r<n; r++)); do SLURM_PROCID=$r "$@" || code=$?; done\nexit $code\n'
    )
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return folder


def run_script(tmp_path, fake_srun, submission: Submission, **env) -> subprocess.CompletedProcess:
    script = tmp_path / "job.sh"
    script.write_text(batch_script(submission))
    full = {**os.environ, "PATH": f"{fake_srun}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", **env}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=full, cwd=tmp_path, timeout=30)


def test_the_script_runs_setup_then_run_per_worker_with_the_jobctl_variables(tmp_path, fake_srun):
    logs = tmp_path / "logs"
    text = (
        "echo rank=$JOBCTL_NODE_RANK of $JOBCTL_NUM_NODES job=$JOBCTL_JOB_ID attempt=$JOBCTL_ATTEMPT "
        "name=$JOBCTL_JOB_NAME msg=\"$MSG\" cvd=${CUDA_VISIBLE_DEVICES:-none}\necho '$HOME stays literal' `true`\n"
    )
    proc = run_script(
        tmp_path,
        fake_srun,
        sub(
            logs=str(logs),
            run=text,
            setup="echo setup $JOBCTL_NODE_RANK",
            num_nodes=2,
            env={"MSG": 'it\'s a "test" $x'},
        ),
        CUDA_VISIBLE_DEVICES="0",
    )
    assert proc.returncode == 0, proc.stderr
    folder = logs / "12" / "1"
    assert (folder / "rank1.log").read_text() == (
        'setup 1\nrank=1 of 2 job=12 attempt=1 name=train msg=it\'s a "test" $x cvd=none\n$HOME stays literal\n'
    )
    assert (folder / "rank0.exit").read_text() == "0\n" and (folder / "slurm-jobid").read_text() == "77\n"


def test_the_script_marks_a_failed_setup_and_returns_the_run_exit_code(tmp_path, fake_srun):
    logs = tmp_path / "logs"
    proc = run_script(tmp_path, fake_srun, sub(logs=str(logs), setup="exit 4"))
    assert proc.returncode == 4 and (logs / "12" / "1" / "setup_failed.0").exists()
    proc = run_script(tmp_path, fake_srun, sub(logs=str(logs), attempt=2, run="exit 3"))
    assert proc.returncode == 3 and (logs / "12" / "2" / "rank0.exit").read_text() == "3\n"


def test_an_array_task_finds_its_own_job_and_attempt(tmp_path, fake_srun):
    logs = tmp_path / "logs"
    (logs / "14").mkdir(parents=True)
    (logs / "14" / "slurm-attempt").write_text("3\n")  # jobctl requeued this one as attempt 3
    submission = sub(
        logs=str(logs), array=[5, 6, 7], run="echo $JOBCTL_JOB_ID $JOBCTL_ARRAY_INDEX $JOBCTL_JOB_NAME $JOBCTL_ATTEMPT"
    )
    for index in ("5", "7"):
        assert run_script(tmp_path, fake_srun, submission, SLURM_ARRAY_TASK_ID=index).returncode == 0
    assert (logs / "12" / "1" / "rank0.log").read_text() == "12 5 train-5 1\n"
    assert (logs / "14" / "3" / "rank0.log").read_text() == "14 7 train-7 3\n"


def test_gpus_are_visible_only_to_a_job_that_asked(tmp_path, fake_srun):
    logs = tmp_path / "logs"
    run = "echo ${CUDA_VISIBLE_DEVICES:-none} ${JOBCTL_ACCELERATORS:-none} $SKYPILOT_NUM_GPUS_PER_NODE"
    run_script(
        tmp_path,
        fake_srun,
        sub(logs=str(logs), run=run, gres="gpu:h100:2", accelerator="H100", gpus_per_node=2),
        CUDA_VISIBLE_DEVICES="2,3",
    )
    assert (logs / "12" / "1" / "rank0.log").read_text() == "2,3 H100:2,3 2\n"


@pytest.mark.parametrize("field", ["comment", "workdir", "partition", "account", "logs", "job_name", "mount"])
def test_a_control_character_in_any_value_of_the_script_is_refused(field):
    evil = "x\ntouch /tmp/pwned"
    values = {"mounts": {evil: "/data"}} if field == "mount" else {field: evil}
    with pytest.raises(UsageError, match="control character"):
        batch_script(sub(**values))
    with pytest.raises(UsageError, match="not a valid variable name"):
        batch_script(sub(env={"\u00c4": "1"}))


def test_every_value_in_the_script_is_quoted(tmp_path, fake_srun):
    logs = tmp_path / "lo'gs $(touch pwned)"
    workdir = tmp_path / "we'ird $(touch pwned) `touch pwned` \"dir"
    workdir.mkdir()
    dest = str(tmp_path / "$(touch pwned)" / "link")
    submission = sub(
        logs=str(logs),
        workdir=str(workdir),
        run="pwd",
        comment="team=$(touch pwned)",
        partition="p;touch pwned",
        account="a'b",
        mounts={dest: str(tmp_path)},
        job_name="n $(touch pwned)",
    )
    script = batch_script(submission)
    assert len([line for line in script.splitlines() if line.startswith("#")]) == 2  # #! and the one comment
    proc = run_script(tmp_path, fake_srun, submission)
    assert proc.returncode == 0, proc.stderr
    assert (logs / "12" / "1" / "rank0.log").read_text() == f"{workdir}\n"
    assert not list(tmp_path.rglob("pwned")) and Path(dest).is_symlink()


def test_a_missing_workdir_is_marked_and_fails_the_worker(tmp_path, fake_srun):
    logs = tmp_path / "logs"
    proc = run_script(tmp_path, fake_srun, sub(logs=str(logs), workdir=str(tmp_path / "nowhere"), run="pwd"))
    folder = logs / "12" / "1"
    assert proc.returncode == 1 and (folder / "workdir_missing.0").exists()
    assert f"workdir {tmp_path / 'nowhere'} does not exist" in (folder / "rank0.log").read_text()


def test_env_names_must_be_shell_names_on_every_backend(jobctl, home):
    path = home / "job.yaml"
    path.write_text("run: 'true'\n")
    for backend in ("local", "slurm"):
        proc = jobctl("launch", str(path), "--backend", backend, "--env", "\u00c4=1", "--dry-run")
        assert proc.returncode == 2 and "--env: expected KEY=VALUE" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_worker_enforces_a_timeout_to_the_second_term_first(tmp_path, fake_srun, monkeypatch):
    logs, flag = tmp_path / "logs", tmp_path / "flag"
    started = time.monotonic()
    proc = run_script(
        tmp_path,
        fake_srun,
        sub(logs=str(logs), timeout=1, run=f"trap 'echo term > {flag}; exit 0' TERM\nsleep 30 & wait\n"),
    )
    assert (proc.returncode, flag.read_text()) == (124, "term\n")
    assert time.monotonic() - started < 8
    folder = logs / "12" / "1"
    assert (folder / "timed_out.0").exists() and (folder / "rank0.exit").read_text() == "124\n"
    monkeypatch.setattr(slurm, "TIMEOUT_GRACE", 1)  # a job that ignores TERM is killed after the grace
    proc = run_script(tmp_path, fake_srun, sub(logs=str(logs), attempt=2, timeout=1, run="trap '' TERM\nsleep 30\n"))
    assert proc.returncode == 124 and time.monotonic() - started < 20


def _signal_worker(script: subprocess.Popen, sig: int, when) -> None:
    wait_until(when, timeout=15, what="the worker to get that far")
    workers = [
        p
        for p in psutil.Process(script.pid).children(recursive=True)
        if p.cmdline()[1:2] == ["-c"] and "jobctl-worker" in p.cmdline()
    ]
    assert workers
    workers[0].send_signal(sig)


def test_a_term_before_run_starts_reaches_setup_and_run_never_starts(tmp_path, fake_srun):
    logs, began = tmp_path / "logs", tmp_path / "began"
    script = tmp_path / "job.sh"
    script.write_text(
        batch_script(
            sub(
                logs=str(logs),
                setup=f"trap 'echo setup-term; exit 0' TERM\n: >{began}\nsleep 30 & wait\n",
                run="echo run-started\n",
            )
        )
    )
    env = {**os.environ, "PATH": f"{fake_srun}:{os.environ['PATH']}", "SLURM_JOB_ID": "77"}
    with subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path) as proc:
        _signal_worker(proc, signal.SIGTERM, began.exists)
        assert proc.wait(timeout=20) == 143
    folder = logs / "12" / "1"
    assert (folder / "rank0.log").read_text() == "setup-term\njobctl: ended (SIGTERM) before run started\n"
    assert not list(folder.glob("setup_failed.*"))
