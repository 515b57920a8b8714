"""The Slurm backend: jobs become `sbatch` jobs; their states are read back with `squeue` and `sacct`.

Like every backend it never writes the database: `jobctl/engine/slurm_sync.py` records what it observes.
Every Slurm command goes through one injectable `run(argv, timeout)` callable, so tests can feed
recorded outputs. A Slurm error becomes a one-line JobctlError; a controller that does not answer
becomes `SlurmUnreachable` within a few seconds instead of a hang.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import secrets
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobctl.backends.base import Observation
from jobctl.core import states
from jobctl.errors import BackendError, UsageError

Result = subprocess.CompletedProcess  # returncode, stdout, stderr
Run = Callable[[list[str], float], Result]
QUERY_TIMEOUT = 6.0  # squeue/sacct/scontrol/scancel: Slurm itself gives up after ~9 s when slurmctld is down
SUBMIT_TIMEOUT = 30.0
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r|%S|%e|%j"  # display id, raw id, array id, task, state, reason, start, end, name
AFTER = {"ok": "afterok", "any": "afterany", "failed": "afternotok"}
TIMEOUT_GRACE = 10  # s between the TERM and the KILL of a job's own timeout (the local backend's default grace)
TIMEOUT_MARGIN = 30  # s: Slurm's --time is at least this much longer than the timeout, so the worker ends it first


class SlurmUnreachable(BackendError):
    """slurmctld did not answer (down, or a network problem)."""


# Variables through which a user's shell changes what squeue/sacct/sbatch/... print or submit (a default
# partition, user or format): jobctl's own calls must not see them, or a job it asks about by ID may
# be filtered out and taken for finished. SLURM_CONF (which cluster) is kept.
FOREIGN_ENV = ("SQUEUE_", "SACCT_", "SBATCH_", "SINFO_", "SCANCEL_", "SCONTROL_", "SRUN_", "SALLOC_")
FOREIGN_VARS = {"SLURM_TIME_FORMAT", "SLURM_CLUSTERS", "SLURM_EXPORT_ENV"}


def slurm_env() -> dict[str, str]:
    """The environment for jobctl's own Slurm commands: this process's, without FOREIGN_ENV/FOREIGN_VARS."""
    return {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV) and k not in FOREIGN_VARS}


def run_command(argv: list[str], timeout: float) -> Result:
    """Run one Slurm client command; never hangs longer than `timeout`."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=slurm_env()
        )
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} not found: the slurm backend needs the Slurm client commands on PATH") from None
    except subprocess.TimeoutExpired:
        return Result(argv, 124, "", f"{argv[0]} did not answer within {timeout:g} s")


def error_text(err: str) -> str:
    """Slurm's stderr as one line, without the repeated 'sbatch: error:' prefixes."""
    parts = [
        re.sub(r"^(\w+:? )?error: ", "", line.strip()).removeprefix("Batch job submission failed: ")
        for line in err.splitlines()
    ]
    return "; ".join(dict.fromkeys(p for p in parts if p)) or "no error message"


def classify(what: str, result: Result) -> BackendError | UsageError:
    """The JobctlError for a failed Slurm command."""
    text = error_text(result.stderr)
    if result.returncode == 124 or "Unable to contact slurm controller" in text or "Socket timed out" in text:
        return SlurmUnreachable(f"slurm controller unreachable ({what}: {text})")
    if "invalid partition" in text.lower():
        return UsageError(f"slurm.partition: {text}")
    if "suspend" in what and ("denied" in text or "Access" in text):
        return BackendError(
            f"{what}: suspending needs a Slurm operator or administrator ({text}); "
            "use `jobctl stop --release` to requeue it instead"
        )
    return BackendError(f"{what}: {text}")


# -- the batch script ------------------------------------------------------------------------------
@dataclass
class Submission:
    """Everything one `sbatch` needs. For an array, job IDs are `job_id + (index - array[0])`."""

    job_id: int
    job_name: str  # JOBCTL_JOB_NAME; for an array the prefix: "-<index>" is appended per task
    attempt: int
    logs: str  # <paths.logs>: the same layout as the local backend, on storage the nodes share
    workdir: str
    run: str
    setup: str | None = None
    num_nodes: int = 1
    cpus: float = 1
    memory_mib: int = 1024
    gres: str | None = None  # "gpu:h100:2" (per node)
    accelerator: str | None = None  # the name for JOBCTL_ACCELERATORS
    gpus_per_node: int = 0
    timeout: float | None = None  # seconds
    env: dict[str, str] = field(default_factory=dict)
    array: list[int] | None = None  # several jobctl jobs as one `sbatch --array`
    array_index: int | None = None  # one array member submitted alone (a retry)
    dependency: str | None = None  # "afterok:12:13,afterany:14"
    partition: str | None = None
    account: str | None = None
    comment: str | None = None
    hold: bool = False
    mounts: dict[str, str] = field(default_factory=dict)  # destination -> source on shared storage
    begin: float | None = None  # sbatch --begin (epoch seconds): `launch --at` / `start_at:`
    throttle: int | None = None  # sbatch --array=...%N: tasks of the array running at once
    warn_signal: tuple[str, float] | None = None  # sbatch --signal=USR1@60 (`signal:`), before the timeout


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_values(sub: Submission) -> None:
    """Refuse a control character (a newline above all) in any value that goes into the batch script or
    onto sbatch's command line other than the job's own commands and env values (which are quoted)."""
    values = {
        "name": sub.job_name,
        "workdir": sub.workdir,
        "JOBCTL_HOME (its logs folder)": sub.logs,
        "slurm.partition": sub.partition or "",
        "slurm.account": sub.account or "",
        "labels": sub.comment or "",
        "accelerators": sub.accelerator or "",
    }
    for dest, source in sub.mounts.items():
        values[f"file_mounts: {dest!r}"] = dest + source
    for where, value in values.items():
        if CONTROL.search(value):
            raise UsageError(
                f"{where}: {value!r} holds a control character (a newline?); it cannot be passed to Slurm safely"
            )
    for key in sub.env:
        if not ENV_NAME.fullmatch(key):
            raise UsageError(f"envs: {key!r} is not a valid variable name (letters, digits and _, not first a digit)")


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def array_spec(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    parts, start = [], indices[0]
    for prev, cur in zip(indices, [*indices[1:], None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            if cur is not None:
                start = cur
    return ",".join(parts)


def sbatch_options(sub: Submission) -> list[str]:
    """sbatch's options (given on the command line, so no value needs quoting inside the script)."""
    first = f"{sub.logs}/{sub.job_id}/{sub.attempt}"
    opts = [
        f"--job-name={sub.job_name}",
        f"--nodes={sub.num_nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={max(1, math.ceil(sub.cpus))}",
        f"--mem={max(1, int(sub.memory_mib))}M",
        f"--chdir={sub.workdir}",
        "--open-mode=append",
        f"--output={first}/slurm-array-%a.out" if sub.array else f"--output={first}/slurm.out",
    ]
    if sub.gres:
        opts.append(f"--gres={sub.gres}")
    if sub.timeout:  # minutes; the worker enforces the timeout itself, Slurm's limit is a backstop behind it
        opts.append(f"--time={max(1, math.ceil((sub.timeout + TIMEOUT_MARGIN) / 60))}")
    if sub.array:
        opts.append(f"--array={array_spec(sub.array)}" + (f"%{sub.throttle}" if sub.throttle else ""))
    if sub.begin is not None:
        import datetime as dt

        opts.append("--begin=" + dt.datetime.fromtimestamp(sub.begin).strftime("%Y-%m-%dT%H:%M:%S"))
    if sub.warn_signal is not None:  # Slurm's limit is the timeout plus TIMEOUT_MARGIN: count from there
        name, before = sub.warn_signal
        opts.append(f"--signal={name}@{min(65535, int(before + (TIMEOUT_MARGIN if sub.timeout else 0)))}")
    for flag, value in (
        ("--dependency", sub.dependency),
        ("--partition", sub.partition),
        ("--account", sub.account),
        ("--comment", sub.comment),
    ):
        if value:
            opts.append(f"{flag}={value}")
    if sub.hold:
        opts.append("--hold")
    return opts


# Wait for the child $1 to end, whatever signals arrive meanwhile; sets $code. Slurm sends SIGTERM (then,
# KillWait later, SIGKILL) only to the batch shell, srun and each worker, not to the job's own processes:
# they trap TERM, the worker passes it on to run.sh, and all of them wait, so the job's TERM trap runs.
# Likewise `scontrol suspend` sends the worker SIGTSTP (its cgroup is frozen ~2 s later) and resume SIGCONT.
WAIT_CHILD = r"""wait "$1"; code=$?
while kill -0 "$1" 2>/dev/null; do wait "$1"; code=$?; done
wait "$1" 2>/dev/null; code=$?"""

# One worker per node (started by srun). $1 = the attempt folder, $2 = the accelerator name, $3 = the workdir,
# $4 = the job's timeout in whole seconds (0: none), $5 = the grace between the timeout's TERM and KILL.
WORKER = r"""child= ended=  # Slurm signals this process only: pass kill and suspend on to setup or run.sh
trap 'ended=1; [ -n "$child" ] && kill -TERM $child 2>/dev/null' TERM  # from the start: no TERM is lost
trap '[ -n "$child" ] && kill -STOP $child 2>/dev/null' TSTP
trap '[ -n "$child" ] && kill -CONT $child 2>/dev/null' CONT
trap '[ -n "$child" ] && kill -KILL $child 2>/dev/null' USR2  # the timeout's grace is over
trap '[ -n "$child" ] && kill -USR1 $child 2>/dev/null' USR1  # `signal: USR1@60s` (sbatch --signal): pass it on
rank=${SLURM_PROCID:-${SLURM_NODEID:-0}}
export JOBCTL_NODE_RANK=$rank SKYPILOT_NODE_RANK=$rank
if [ -n "$2" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then export JOBCTL_ACCELERATORS="$2:$CUDA_VISIBLE_DEVICES"; fi
exec >>"$1/rank$rank.log" 2>&1 </dev/null
if ! cd -- "$3" 2>/dev/null; then
  echo "jobctl: workdir $3 does not exist on $(hostname) (or cannot be entered): is it on storage the nodes share?" >&2
  echo "$(hostname)" >"$1/workdir_missing.$rank"; echo 1 >"$1/rank$rank.exit"; exit 1
fi
timer=
if [ "${4:-0}" -gt 0 ]; then  # the job's timeout (setup and run), to the second: TERM, then KILL after the grace
  ( n=0; while [ $n -lt "$4" ]; do sleep 1; n=$((n + 1)); done  # 1 s steps: time suspended does not count
    : >"$1/timed_out.$rank"; kill -TERM $$
    n=0; while [ $n -lt "$5" ]; do sleep 1; n=$((n + 1)); done; kill -USR2 $$ ) & timer=$!
fi
finish() {  # $1 = the attempt folder, $2 = the exit code
  [ -n "$timer" ] && kill $timer 2>/dev/null
  code=$2
  if [ -e "$1/timed_out.$rank" ]; then echo "jobctl: ran longer than its timeout of $4 s" >&2; code=124
  elif [ -n "$ended" ] && [ -z "$child" ]; then echo "jobctl: ended (SIGTERM) before run started" >&2; code=143; fi
  echo $code >"$1/rank$rank.exit"; exit $code
}
if [ -s "$1/setup.sh" ] && [ -z "$ended" ]; then
  bash "$1/setup.sh" & child=$!
  wait_child $child; child=
  if [ -n "$ended" ]; then finish "$1" $code; fi
  if [ $code -ne 0 ]; then
    echo "jobctl: setup failed with exit code $code" >&2
    : >"$1/setup_failed.$rank"; finish "$1" $code
  fi
fi
[ -n "$ended" ] && finish "$1" 143  # told to end before run started: it does not start
bash "$1/run.sh" & child=$!
[ -n "$ended" ] && kill -TERM $child 2>/dev/null  # came while run.sh was being started
wait_child $child
finish "$1" $code"""


def _heredoc(path: str, text: str) -> str:
    """A shell command writing `text` to `path` verbatim (quoted heredoc: nothing is expanded)."""
    mark = "JOBCTL_EOF_" + secrets.token_hex(8)
    body = text if text.endswith("\n") else text + "\n"
    return f"cat >{path} <<'{mark}'\n{body}{mark}\n"


def batch_script(sub: Submission) -> str:
    """The batch script: find this task's jobctl job and attempt, write its scripts, start the workers."""
    q = shlex.quote
    check_values(sub)
    options = CONTROL.sub("?", " ".join(q(o) for o in sbatch_options(sub)))  # a comment stays one line
    lines = [
        "#!/bin/bash",
        f"# generated by jobctl for job {sub.job_id}; submitted with: sbatch --parsable {options}",
        "set -u",
        f"logs={q(sub.logs)}",
    ]
    if sub.array:  # array task -> its jobctl job (the IDs of one launch are consecutive)
        lines += [
            "index=${SLURM_ARRAY_TASK_ID:?not an array task}",
            f"job=$(({sub.job_id} + index - {sub.array[0]}))",
            f"name={q(sub.job_name)}-$index",
            "export JOBCTL_ARRAY_INDEX=$index",
        ]
    else:
        lines += [f"job={sub.job_id}", f"name={q(sub.job_name)}"]
        if sub.array_index is not None:
            lines.append(f"export JOBCTL_ARRAY_INDEX={sub.array_index}")
    # jobctl rewrites this file when `start` requeues a released job as a new attempt
    lines += [
        f'attempt=$(cat "$logs/$job/slurm-attempt" 2>/dev/null) || attempt={sub.attempt}',
        "dir=$logs/$job/$attempt",
        'mkdir -p "$dir" || exit 1',
        'echo "${SLURM_JOB_ID:-}" >"$dir/slurm-jobid"',
        # Slurm's output of this task or requeued attempt, where `logs --batch` and describe look
        f'[ -e "$dir/slurm.out" ] || ln -s "$logs/{sub.job_id}/{sub.attempt}/'
        + ("slurm-array-$index.out" if sub.array else "slurm.out")
        + '" "$dir/slurm.out"',
        'rm -f "$dir"/setup_failed.* "$dir"/rank*.exit "$dir"/workdir_missing.* "$dir"/timed_out.*',
        _heredoc('"$dir/run.sh"', sub.run).rstrip("\n"),
    ]
    lines.append(_heredoc('"$dir/setup.sh"', sub.setup).rstrip("\n") if sub.setup else ': >"$dir/setup.sh"')
    n = sub.num_nodes
    lines += [
        "export JOBCTL_JOB_ID=$job JOBCTL_JOB_NAME=$name JOBCTL_ATTEMPT=$attempt",
        f"export JOBCTL_NUM_NODES={n} SKYPILOT_NUM_NODES={n} SKYPILOT_NUM_GPUS_PER_NODE={sub.gpus_per_node}",
        # one line per node, in rank order; addresses where the node names resolve, as locally
        'SKYPILOT_NODE_IPS=$(for h in $(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null); do'
        ' a=$(getent ahostsv4 "$h" 2>/dev/null | head -n1); echo "${a%% *}" | grep . || echo "$h"; done)'
        " || true",
        "export SKYPILOT_NODE_IPS",
    ]
    lines += [f"export {key}={q(str(value))}" for key, value in sub.env.items()]
    if not sub.gres:
        lines.append("unset CUDA_VISIBLE_DEVICES")  # only a job holding GPUs sees any
    for dest, source in sub.mounts.items():  # file_mounts: links to the source on shared storage
        target = '"$HOME"/' + q(dest[2:]) if dest.startswith("~/") else q(dest)
        lines.append(
            f'mkdir -p "$(dirname {target})" && ln -sfnT {q(source)} {target} '
            f'|| {{ echo {q(f"jobctl: file_mounts: cannot link {dest}")} >>"$dir/rank0.log"; exit 1; }}'
        )
    # the workers and this script outlive Slurm's SIGTERM (KillWait) so that the job's own TERM trap runs
    lines += [
        f"worker={q('wait_child() {' + chr(10) + WAIT_CHILD + chr(10) + '}' + chr(10) + WORKER)}",
        "wait_child() {",
        WAIT_CHILD,
        "}",
        "trap : TERM",
        f"srun --nodes={n} --ntasks={n} --ntasks-per-node=1 --cpus-per-task={max(1, math.ceil(sub.cpus))}"
        f' --kill-on-bad-exit=0 bash -c "$worker" jobctl-worker "$dir" {q(sub.accelerator or "")}'
        f" {q(sub.workdir)} {math.ceil(sub.timeout or 0)} {TIMEOUT_GRACE} & step=$!",
        "wait_child $step",
        "exit $code",
    ]
    return "\n".join(lines) + "\n"


def gpu_offer(sinfo_out: str) -> dict[str, int]:
    """`sinfo -h -o %G` -> {"h100": 4, "": 2}: GPU types ("" for untyped) and the largest count a node has."""
    offer: dict[str, int] = {}
    for kind, count in re.findall(r"(?:^|[\s,])gpu(?::([^:,(\s]+))?:(\d+)", sinfo_out):
        offer[kind.lower()] = max(offer.get(kind.lower(), 0), int(count))
    return offer


def choose_gres(accelerators: list[list], offer: dict[str, int] | None) -> tuple[str | None, str | None, int]:
    """(gres, accelerator name, count per node) for the first alternative the cluster offers.

    A name Slurm knows as a GPU type ("H100" -> gpu:h100) is asked for by type; otherwise by count
    (`gpu:N`). With `offer` unknown (sinfo failed) the untyped form is the portable choice.
    """
    if not accelerators:
        return None, None, 0
    for name, count in accelerators:
        for kind in (str(name).lower(), str(name).lower().replace("-", "_")):
            if offer and kind in offer:
                return f"gpu:{kind}:{int(count)}", str(name), int(count)
    name, count = accelerators[0]
    if offer is not None and not offer:
        raise UsageError(f"accelerators: {name}:{count} requested, but the Slurm partition offers no GPUs")
    return f"gpu:{int(count)}", str(name), int(count)


# -- observing -------------------------------------------------------------------------------------
@dataclass
class SlurmObservation(Observation):
    slurm_state: str = ""
    slurm_reason: str = ""
    raw_id: str | None = None
    transient: bool = False  # COMPLETING and the like: no news until it settles


# Slurm state -> (jobctl state, reason, message). PENDING is refined by its reason in observe().
STATE_MAP: dict[str, tuple[str, str | None, str | None]] = {
    "RUNNING": ("ACTIVE", None, None),
    "COMPLETED": ("COMPLETED", None, None),
    "SUSPENDED": ("SUSPENDED", "user", "suspended in Slurm"),
    "STOPPED": ("SUSPENDED", "user", "stopped in Slurm"),
    "FAILED": ("FAILED", "exit_code", None),
    "SPECIAL_EXIT": ("FAILED", "exit_code", None),
    "TIMEOUT": ("FAILED", "timed_out", "reached its Slurm time limit"),
    "DEADLINE": ("FAILED", "timed_out", None),
    "OUT_OF_MEMORY": ("FAILED", "out_of_memory", None),
    "CANCELLED": ("KILLED", "user", "cancelled in Slurm"),
    "REVOKED": ("KILLED", "user", "revoked by Slurm"),
    "PREEMPTED": ("SUSPENDED", "system", "preempted by Slurm"),
    "NODE_FAIL": ("FAILED", "worker_lost", "a node of the job failed"),
    "BOOT_FAIL": ("FAILED", "start_error", "a node of the job failed to boot"),
    "REQUEUE_HOLD": ("SUSPENDED", "held", None),
    "RESV_DEL_HOLD": ("SUSPENDED", "held", None),
}
SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_FED", "CONFIGURING"}
PENDING_REASONS = {"Priority": "priority", "Resources": "resources", "None": None, "": None}
# Pending reasons that mean the job asks for more than its partition allows: it would wait for good
NEVER_REASONS = {
    "PartitionNodeLimit": "more nodes than the partition allows (PartitionNodeLimit)",
    "PartitionConfig": "more CPUs, memory or GPUs than the partition's nodes have (PartitionConfig)",
    "PartitionTimeLimit": "a longer timeout than the partition allows (PartitionTimeLimit)",
    "BadConstraints": "resources no node can give (BadConstraints)",
    "InvalidAccount": "an account Slurm does not know (InvalidAccount)",
    "InvalidQOS": "a QOS Slurm does not know (InvalidQOS)",
}
LAUNCH_FAILED = "Slurm could not start the job (JobLaunchFailure); is JOBCTL_HOME on storage the nodes share?"


def _time(text: str | None) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None  # N/A, Unknown, NONE


def _exit(text: str | None) -> tuple[int | None, int]:
    """sacct's "3:0" (exit code, signal)."""
    code, _, sig = (text or "").partition(":")
    return (int(code) if code.isdigit() else None), (int(sig) if sig.isdigit() else 0)


def observe(
    bid: str,
    state: str,
    reason: str = "",
    exit_text: str | None = None,
    start: str | None = None,
    end: str | None = None,
    raw_id: str | None = None,
) -> SlurmObservation:
    """Map one Slurm state and reason onto SPEC section 3 (see also states.REFERENCE_MAPPING["slurm"])."""
    state = (state.split() or [""])[0].rstrip("+")  # sacct: "CANCELLED by 1000"
    code, sig = _exit(exit_text)
    why = f"Slurm: {state}" + (f" ({reason})" if reason and reason != "None" else "")
    mapped = STATE_MAP.get(state, ("ACTIVE", None, None))
    if reason == "DependencyNeverSatisfied" and (state in SLURM_WAITING or state == "CANCELLED"):
        mapped = ("FAILED", "upstream_failed", "a dependency failed")
    elif state in SLURM_WAITING:
        if reason.startswith("JobHeld") or "held" in reason.lower():
            mapped = ("SUSPENDED", "held", None)
        elif reason == "Dependency":
            mapped = ("BLOCKED", "dependency", None)
        elif reason in NEVER_REASONS:
            mapped = ("FAILED", "start_error", f"Slurm can never start it: {NEVER_REASONS[reason]}")
        else:
            kind = PENDING_REASONS.get(reason, "resources")
            mapped = ("PENDING", kind, why if kind else None)
    elif state == "FAILED" and (reason == "JobLaunchFailure" or (code == 0 and sig == 53)):
        mapped = ("FAILED", "start_error", LAUNCH_FAILED)
    jstate, jreason, message = mapped
    obs = SlurmObservation(
        bid,
        jstate,
        jreason,
        message and (message if jstate == "PENDING" else f"{message} ({why})"),
        slurm_state=state,
        slurm_reason=reason,
        raw_id=raw_id,
        transient=state not in STATE_MAP and state not in SLURM_WAITING,
    )
    if jstate == "COMPLETED":
        obs.exit_code = 0
    elif jreason == "exit_code":
        obs.exit_code = code if code else (128 + sig if sig else code)  # "0:9": killed by signal 9
    never_ran = (jstate == "KILLED" or jreason == "upstream_failed") and start == end  # Slurm sets both for a
    # waiting job it ends; a job that ran for under a second looks the same, and is taken as never started
    if jstate not in ("PENDING", "BLOCKED") and jreason != "held" and not never_ran:
        obs.started_at = _time(start)  # a waiting job's start is only Slurm's estimate
    if jstate in states.TERMINAL:
        obs.ended_at = _time(end)
    return obs


def _slurm_seconds(text: str) -> float | None:
    """sacct durations: Elapsed `[DD-]HH:MM:SS`, TotalCPU `[DD-][HH:]MM:SS[.mmm]` -> seconds."""
    text = text.strip()
    if not text or text in ("INVALID", "UNLIMITED", "Partition_Limit"):
        return None
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days = int(head)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return days * 86400 + seconds


_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def _slurm_bytes(text: str) -> int | None:
    """sacct sizes such as `4321K`, `1.50M`, `2G`, `0` -> bytes (MaxRSS is in KiB units: K)."""
    text = text.strip()
    if not text:
        return None
    unit = text[-1].upper() if text[-1].isalpha() else ""
    try:
        return int(float(text[:-1] if unit else text) * _SIZE[unit])
    except (ValueError, KeyError):
        return None


def _tres_gpus(tres: str) -> int:
    """GPUs in an AllocTRES such as `billing=2,cpu=2,gres/gpu=1,mem=4G,node=1` (typed entries such as
    `gres/gpu:a100=1` repeat the total, which is taken when there is no untyped one)."""
    total, typed = None, 0
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if not value.isdigit():
            continue
        if key == "gres/gpu":
            total = int(value)
        elif key.startswith("gres/gpu:"):
            typed += int(value)
    return total if total is not None else typed


SACCT_USAGE_FIELDS = "JobID,Elapsed,TotalCPU,MaxRSS,AllocTRES"


def parse_sacct_usage(text: str) -> dict[str, dict[str, Any]]:
    """`sacct -P -n -o JobID,Elapsed,TotalCPU,MaxRSS,AllocTRES` (with steps) -> usage per job ID.

    The job's own line gives the wall time, the CPU time (sacct sums its steps there) and the
    GPUs allocated; MaxRSS is per step (the job line has none): the largest step's is taken."""
    found: dict[str, dict[str, Any]] = {}
    peaks: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split("|")
        if len(f) < 5 or not f[0]:
            continue
        job_id, _, step = f[0].partition(".")
        rss = _slurm_bytes(f[3])
        if rss is not None:
            peaks[job_id] = max(peaks.get(job_id, 0), rss)
        if step:
            continue
        wall = _slurm_seconds(f[1])
        cpu = _slurm_seconds(f[2])
        usage: dict[str, Any] = {}
        if wall is not None:
            usage["wall_seconds"] = round(wall, 3)
            usage["gpu_seconds"] = round(_tres_gpus(f[4]) * wall, 3)
        if cpu is not None:
            usage["cpu_seconds"] = round(cpu, 3)
        found[job_id] = usage
    for job_id, peak in peaks.items():
        if job_id in found:
            found[job_id]["max_rss_bytes"] = peak
    return {job_id: usage for job_id, usage in found.items() if usage}


class SlurmBackend:
    name = "slurm"

    def __init__(self, run: Run = run_command, timeout: float = QUERY_TIMEOUT):
        self.run = run
        self.timeout = timeout

    def _call(self, what: str, argv: list[str], ok: tuple[str, ...] = ()) -> Result:
        result = self.run(argv, self.timeout)
        if result.returncode != 0 and not any(text in result.stderr for text in ok):
            raise classify(what, result)
        return result

    # -- submitting ----------------------------------------------------------------------------
    def gpu_offer(self, partition: str | None) -> dict[str, int] | None:
        """The GPU types the partition's nodes offer; None when sinfo cannot tell."""
        result = self.run(["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else []), self.timeout)
        return gpu_offer(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def submit(self, script_path: str, sub: Submission) -> str:
        """sbatch; returns the Slurm job ID (the array job ID for an array)."""
        result = self.run(["sbatch", "--parsable", *sbatch_options(sub), script_path], SUBMIT_TIMEOUT)
        if result.returncode != 0:
            raise classify("sbatch refused the job", result)
        job_id = result.stdout.strip().split(";")[0]  # "123" or "123;cluster"
        if not job_id.isdigit():
            raise BackendError(f"sbatch printed no job ID ({error_text(result.stdout + result.stderr)})")
        return job_id

    def never_starts(self, sub: Submission) -> str | None:
        """Slurm's reason why the job could never start (`sbatch --test-only`), or None when it could."""
        opts = [
            o
            for o in sbatch_options(sub)
            if not o.startswith(("--output=", "--chdir=", "--dependency=", "--open-mode", "--hold", "--comment"))
        ]
        result = self.run(["sbatch", "--test-only", *opts, "--wrap", "true"], SUBMIT_TIMEOUT)
        if result.returncode == 0:
            return None
        error = classify("sbatch --test-only", result)
        if isinstance(error, (SlurmUnreachable, UsageError)) or "not found" in str(error):
            raise error
        text = error_text(result.stderr).removeprefix("allocation failure: ")
        return f"can never start in Slurm: {text}"

    # -- observing -----------------------------------------------------------------------------
    def poll(
        self, backend_ids: list[str], raw_id: Callable[[str], str | None] | None = None
    ) -> dict[str, SlurmObservation]:
        """One squeue for every ID, then one sacct for those squeue no longer shows and for exit codes.

        `raw_id(bid)` gives the raw Slurm ID of an array task ("12_3") that squeue no longer shows,
        where known (`sacct -c` knows array tasks only by it). An ID Slurm no longer knows is left out.
        """
        if not backend_ids:
            return {}
        result = self._call(
            "squeue",
            ["squeue", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT, "-j", ",".join(backend_ids)],
            ok=("Invalid job id",),
        )
        lines = [line.split("|", 8) for line in result.stdout.splitlines()] if result.returncode == 0 else []
        queued = {f[0]: f for f in lines if len(f) == 9}  # by display ID: "12", "12_3"
        raws = {bid: f[1] for bid, f in queued.items()}
        for bid in backend_ids:
            if bid not in raws:
                raws[bid] = (raw_id(bid) if raw_id and "_" in bid else None) or ("" if "_" in bid else bid)
        ask = [b for b in backend_ids if b not in queued or queued[b][4] in ("FAILED", "SPECIAL_EXIT")]
        accounted = self.accounting(ask, raws) if ask else {}
        seen: dict[str, SlurmObservation] = {}
        for bid in backend_ids:
            acct = accounted.get(bid)
            if bid in queued:
                f = queued[bid]
                seen[bid] = observe(bid, f[4], f[5], acct[1] if acct else None, f[6], f[7], f[1])
            elif acct:
                seen[bid] = observe(bid, acct[0], "", acct[1], acct[2], acct[3], raws[bid] or None)
        return seen

    def accounting(self, bids: list[str], raws: dict[str, str]) -> dict[str, tuple[str, str, str, str]]:
        """(state, exit code, start, end) per ID from sacct: the accounting database, else the jobcomp file."""
        result = self.run(
            ["sacct", "-P", "-n", "-X", "-j", ",".join(bids), "-o", "JobID,JobIDRaw,State,ExitCode,Start,End"],
            self.timeout,
        )
        rows: dict[str, tuple[str, str, str, str]] = {}
        if result.returncode == 0 and "accounting storage is disabled" not in result.stdout:
            for line in result.stdout.splitlines():
                f = line.split("|")
                if len(f) >= 6:
                    rows[f[0]] = (f[2], f[3], f[4], f[5])
            return {bid: rows[bid] for bid in bids if bid in rows}
        by_raw = {raws[bid]: bid for bid in bids if raws.get(bid)}
        if not by_raw:
            return {}
        result = self.run(
            ["sacct", "-c", "-P", "-n", "-j", ",".join(by_raw), "-o", "JobID,State,ExitCode,Start,End"], self.timeout
        )
        for line in result.stdout.splitlines():  # a requeued job has several lines: the last one counts
            f = line.split("|")
            if len(f) >= 5 and f[0] in by_raw:
                rows[by_raw[f[0]]] = (f[1], f[2], f[3], f[4])
        return rows

    def usage(self, bids: list[str]) -> dict[str, dict[str, Any]]:
        """What ended jobs used, from sacct (SPEC section 11); {} when the accounting cannot say."""
        if not bids:
            return {}
        result = self.run(["sacct", "-P", "-n", "-j", ",".join(bids), "-o", SACCT_USAGE_FIELDS], self.timeout)
        if result.returncode != 0:
            return {}
        found = parse_sacct_usage(result.stdout)
        return {bid: found[bid] for bid in bids if bid in found}

    # -- control -------------------------------------------------------------------------------
    def _scontrol(self, verb: str, backend_id: str, ok: tuple[str, ...] = ()) -> None:
        self._call(f"cannot {verb} Slurm job {backend_id}", ["scontrol", verb, backend_id], ok)

    def suspend(self, backend_id: str) -> None:
        self._scontrol("suspend", backend_id)

    def resume(self, backend_id: str) -> None:
        self._scontrol("resume", backend_id, ok=("is not suspended",))

    def hold(self, backend_id: str) -> None:
        self._scontrol("hold", backend_id)

    def release(self, backend_id: str) -> None:
        self._scontrol("release", backend_id)

    def cancel(self, backend_id: str, grace: float = 10.0, reason: str = "killed", message: str | None = None) -> None:
        """scancel (Slurm's KillWait is the grace between SIGTERM and SIGKILL); released: requeue it held."""
        if reason in ("released", "preempted"):
            self._scontrol("requeuehold", backend_id)
        else:
            self._call(f"cannot cancel Slurm job {backend_id}", ["scancel", backend_id])
