"""Issue: terminal and scripting experience. Help, completions, version, JSON with jq, live views.

Help, version, config and completions run the CLI in-process (`jobctl_inproc`); jobs, shell scripts
and terminals use real processes.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, InProcessJobctl, wait_until, write_job

from jobctl.cli.completions import SHELLS, generate
from jobctl.cli.main import build_app


def all_commands():
    import typer.main

    root = typer.main.get_command(build_app())
    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, path + [name])
        else:
            out.append(path)

    walk(root, [])
    return out


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: " ".join(c))
def test_every_command_has_help_with_an_example(jobctl_inproc, command):
    proc = jobctl_inproc(*command, "--help", check=True)
    assert "Usage:" in proc.stdout
    assert "Example" in proc.stdout, f"jobctl {' '.join(command)} --help has no example"
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "Example" in line)
    assert lines[at + 1].strip() == "", proc.stdout  # the example is one line: never wrapped at 80 columns
    # every option is explained
    import typer.main

    cmd = typer.main.get_command(build_app())
    for part in command:
        cmd = cmd.commands[part]
    for param in cmd.params:
        if param.param_type_name == "option" and param.name not in ("help",):
            assert param.help, f"{' '.join(command)} {param.opts[0]} has no help"
            if param.opts[0] == "--all":  # says what --all means for this command, not for every one
                assert "rm:" not in param.help and "kill:" not in param.help, param.help


def test_the_table_of_commands_lists_every_command_in_the_order_of_help():
    """`COMMANDS` in jobctl/cli/main.py is what `jobctl --help` lists, in its order."""
    import typer.main

    from jobctl.cli.main import COMMANDS

    assert list(typer.main.get_command(build_app()).commands) == list(COMMANDS)
    assert list(typer.main.get_command(build_app(["stop", "queue"])).commands) == ["stop", "queue"]


COMMAND_MODULES = {
    ("status",): "status",
    ("status", "--json"): "status",
    ("launch", "--dry-run", "-"): "launch",
    ("stop", "--all"): "control",
    ("wait", "--all"): "reports",
    ("config", "path"): "config",
    ("--version",): None,  # no command: the whole app, every module
    ("queue", "list"): "queueing",
    ("stauts",): None,  # a typo: the whole app, for "did you mean"
}


def test_a_typed_command_imports_only_its_own_module(jobctl):
    """Start-up latency: `jobctl status` imports jobctl/cli/commands/status.py and no other command."""
    from jobctl.cli.main import COMMANDS

    every = {f"jobctl.cli.commands.{target.partition(':')[0]}" for target in COMMANDS.values()}
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES=%s\\n' % ' '.join(sorted("
        "m for m in sys.modules if m.startswith('jobctl.cli.commands.')))))\n"
        "sys.argv = ['jobctl'] + sys.argv[1:]\n"
        "from jobctl.cli.main import main\n"
        "main()\n"
    )
    for args, module in COMMAND_MODULES.items():
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=jobctl.env, timeout=60, input=""
        )
        line = next((x for x in proc.stderr.splitlines() if x.startswith("MODULES=")), None)
        assert line is not None, (args, proc.stderr)
        expected = {f"jobctl.cli.commands.{module}"} if module else every
        assert set(line.removeprefix("MODULES=").split()) == expected, (args, proc.stderr)


def test_version(jobctl_inproc):
    from jobctl import __version__

    assert jobctl_inproc("--version", check=True).stdout.strip() == f"jobctl {__version__}"


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completion_files_are_up_to_date(shell):
    path = REPO / "completions" / SHELLS[shell]
    assert path.read_text() == generate(shell), f"run: python -m jobctl.cli.completions ({path} is stale)"


def test_completion_offers_commands_and_job_names(jobctl, jobctl_inproc, home):
    jobctl.launch(write_job(home, "sweep-lr", "run: 'true'\n"), "--wait")
    env = {"COMP_WORDS": "jobctl describe sw", "COMP_CWORD": "2", "_JOBCTL_COMPLETE": "complete_bash"}
    assert "sweep-lr" in jobctl_inproc(env=env).stdout.split()
    env = {"COMP_WORDS": "jobctl st", "COMP_CWORD": "1", "_JOBCTL_COMPLETE": "complete_bash"}
    assert {"status", "stop", "start"} <= set(jobctl_inproc(env=env).stdout.split())


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_a_shell_script_can_drive_jobctl(jobctl, home):
    ok = write_job(home, "ok", "run: echo fine\n")
    bad = write_job(home, "bad", "labels: {kind: demo}\nrun: exit 3\n")
    script = f"""
set -u
id=$(jobctl launch {ok})
jobctl wait "$id" || exit 10
bad=$(jobctl launch {bad})
jobctl wait "$bad"
code=$?
[ "$code" = 3 ] || exit 11
[ "$(jobctl status "$bad" --json | jq -r '.[0].status')" = "FAILED (exit 3)" ] || exit 12
[ "$(jobctl describe "$bad" --json | jq -r '.reason')" = "exit_code" ] || exit 13
[ "$(jobctl status --label kind=demo --json | jq length)" = 1 ] || exit 14
jobctl kill "$id" >/dev/null 2>&1; [ $? = 1 ] || exit 15
jobctl launch /does/not/exist.yaml 2>/dev/null; [ $? = 2 ] || exit 16
echo all-good
"""
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "jobctl").write_text(f'#!/bin/sh\nexec {sys.executable} -m jobctl "$@"\n')
    (bindir / "jobctl").chmod(0o755)
    env = {**jobctl.env, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "all-good"


def test_json_never_has_colour_and_errors_go_to_stderr(jobctl, jobctl_inproc, home):
    jobctl.launch(write_job(home, "c", "run: 'true'\n"), "--wait")
    proc = jobctl_inproc("status", "--json", env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\x1b[" not in proc.stdout
    json.loads(proc.stdout)
    proc = jobctl_inproc("status", "nope", "--json")
    assert proc.returncode == 1 and proc.stdout == "" and "nope" in proc.stderr


def test_logs_tail_rm_and_prune(jobctl, home):
    job_id = jobctl.launch(write_job(home, "many", "run: seq 1 100\n"), "--wait")
    assert jobctl("logs", str(job_id), "--tail", "3").stdout.split() == ["98", "99", "100"]
    live = jobctl.launch(write_job(home, "live", "run: sleep 30\n"))
    proc = jobctl("rm", str(live))
    assert proc.returncode == 1 and "only finished jobs can be removed" in proc.stderr
    assert jobctl("rm", str(job_id)).returncode == 0
    assert not (home / "state" / "logs" / str(job_id)).exists()
    assert jobctl("describe", str(job_id)).returncode == 1
    jobctl("kill", str(live), "--grace", "0", check=True)
    jobctl.wait_state(live, "KILLED")
    assert jobctl("prune", "--older-than", "1d").returncode == 0
    assert jobctl.state(live) == "KILLED"  # too young to prune


def test_config_show_get_set_path(jobctl_inproc):
    assert jobctl_inproc("config", "set", "defaults.cpus", "2").returncode == 0
    assert jobctl_inproc("config", "get", "defaults.cpus").stdout.strip() == "2"
    proc = jobctl_inproc("config", "set", "defaults.cpus", "many")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: defaults.cpus: expected a number > 0, got 'many'"
    proc = jobctl_inproc("config", "set", "defaults.cpu", "2")
    assert proc.returncode == 2 and 'did you mean "defaults.cpus"' in proc.stderr
    doc = json.loads(jobctl_inproc("config", "show", "--json").stdout)
    assert doc["defaults.cpus"] == 2 and doc["backend"] == "local"
    assert jobctl_inproc("config", "path").stdout.strip() == str(jobctl_inproc.home / "config.toml")


def _tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_redraws_in_place_and_follow_streams_under_tmux(jobctl, home):
    session = f"jc{os.getpid()}"
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "jobctl").write_text(f'#!/bin/sh\nexec {sys.executable} -m jobctl "$@"\n')
    (bindir / "jobctl").chmod(0o755)
    path = write_job(home, "ticker", "run: |\n  for i in 1 2 3 4 5; do echo tick-$i; sleep 0.6; done\n")
    env = f"JOBCTL_HOME={home} PATH={bindir}:$PATH"
    _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40")
    try:
        _tmux("send-keys", "-t", session, f"{env} jobctl launch {path} --follow", "Enter")
        seen = wait_until(
            lambda: "tick-2" in (s := _tmux("capture-pane", "-p", "-t", session).stdout) and s,
            timeout=15,
            what="streamed lines",
        )
        assert "tick-5" not in seen  # lines arrive while the job still runs
        wait_until(lambda: "tick-5" in _tmux("capture-pane", "-p", "-t", session).stdout, timeout=15)
        wait_until(lambda: "COMPLETED" in _tmux("capture-pane", "-p", "-t", session).stdout, timeout=15)
        _tmux("send-keys", "-t", session, "clear", "Enter")
        jobctl.launch(write_job(home, "sleeper", "run: sleep 4\n"))
        _tmux("send-keys", "-t", session, f"{env} jobctl status --watch", "Enter")
        wait_until(lambda: "ACTIVE" in _tmux("capture-pane", "-p", "-t", session).stdout, timeout=15)
        wait_until(
            lambda: (
                "sleeper" in (s := _tmux("capture-pane", "-p", "-t", session).stdout)
                and "COMPLETED" in s.split("sleeper")[1].splitlines()[0]
            ),
            timeout=20,
            what="table redrawn",
        )
        screen = _tmux("capture-pane", "-p", "-t", session).stdout
        assert screen.count("User:") == 1, screen  # redrawn in place, not appended
        _tmux("send-keys", "-t", session, "C-c", "")
    finally:
        _tmux("kill-session", "-t", session)


# -- found by using jobctl as a new user would -----------------------------------------------------
def test_dry_run_in_a_new_home_creates_nothing(home):
    fresh = home / "new-home"
    jobctl_new = InProcessJobctl(fresh)
    pipeline = REPO / "examples" / "pipeline.yaml"
    proc = jobctl_new("launch", "--dry-run", str(pipeline))
    assert proc.returncode == 0, proc.stderr
    assert "prepare" in proc.stdout and "total" in proc.stdout
    ghost = write_job(home, "ghost", "depends_on: [ghost-job]\nrun: 'true'\n")
    proc = jobctl_new("launch", "--dry-run", str(ghost))
    assert proc.returncode == 2 and "unknown job 'ghost-job'" in proc.stderr
    assert not fresh.exists()  # "records nothing": not even an empty database


def test_dry_run_table_fits_80_columns_and_says_each_problem_once(jobctl_inproc, home):
    path = write_job(
        home,
        "pipe",
        "name: pipe\n---\nname: prep\nenvs: {TOKEN: null}\nresources: {cpus: 64}\nrun: 'true'\n"
        "---\nname: train\nenvs: {TOKEN: null}\nresources: {accelerators: H100:8}\nrun: 'true'\n",
    )
    proc = jobctl_inproc("launch", "--dry-run", str(path), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if "would refuse" in line)]
    assert all(len(line) <= 80 for line in table), proc.stdout
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in table[2:])}
    assert rows["prep"][3] == "no" and rows["train"][3] == "no", proc.stdout
    problems = [line for line in lines if "would refuse" in line]
    assert sum("TOKEN" in p for p in problems) == 1, proc.stdout  # the file's problem, once
    assert any("needs 64 CPUs" in p for p in problems) and any("8 H100" in p for p in problems)
    assert all(len(p) > 80 for p in problems if "8 H100" in p)  # piped: one line per problem, unwrapped


def test_an_unknown_job_is_said_the_same_way_by_every_command(jobctl_inproc):
    for command in (["logs"], ["describe"], ["status"], ["kill"], ["stop"], ["start"], ["retry"], ["rm"]):
        proc = jobctl_inproc(*command, "99")
        assert proc.returncode == 1, (command, proc.stderr)
        assert proc.stderr.strip() == "error: no job matches '99'", (command, proc.stderr)
    proc = jobctl_inproc("update", "99", "--priority", "1")
    assert proc.returncode == 1 and proc.stderr.strip() == "error: no job matches '99'", proc.stderr


def test_all_with_nothing_to_act_on_says_what_it_looked_for(jobctl_inproc):
    expected = {
        "kill": "no unfinished job to kill",
        "stop": "no running or waiting job to stop",
        "start": "no SUSPENDED job to start",
        "retry": "no FAILED or KILLED job to retry",
        "rm": "no finished job to remove",
    }
    for verb, text in expected.items():
        proc = jobctl_inproc(verb, "--all")
        assert proc.returncode == 0 and proc.stderr.strip() == text, (verb, proc.stderr)
    proc = jobctl_inproc("update", "--all", "--priority", "1")
    assert proc.returncode == 0 and proc.stderr.strip() == "no unfinished job to update", proc.stderr
    proc = jobctl_inproc("prune", "--older-than", "2d")
    assert proc.returncode == 0
    assert proc.stderr.strip() == "nothing to prune: no finished job ended more than 2d ago"
    assert jobctl_inproc("kill", "--all", "--json").stdout.strip() == "[]"  # JSON: the empty list, no words


def test_ctrl_c_hint_is_one_short_line_even_for_an_array():
    from jobctl.cli.commands import interrupted_text

    one = interrupted_text([12345])
    assert one == "job 12345 keeps running; wait again: jobctl wait 12345; stop: jobctl kill 12345"
    assert len(one) <= 80
    many = interrupted_text(list(range(14, 214)))  # launch --array 200 --wait, then Ctrl-C
    assert many == "200 jobs keep running; wait again: jobctl wait $(seq 14 213); stop: jobctl kill $(seq 14 213)"
    assert interrupted_text([3, 7]) == "2 jobs keep running; wait again: jobctl wait 3 7; stop: jobctl kill 3 7"
    # `wait` repeats what it was given, quoted for the shell
    assert interrupted_text([5, 6, 9], ["sweep-*"]).endswith("jobctl wait 'sweep-*'; stop: jobctl kill 'sweep-*'")
    assert "jobctl wait --all;" in interrupted_text([5, 6, 9], ["--all"])


def test_queue_commands_name_themselves_and_catch_a_mistyped_queue(jobctl, jobctl_inproc):
    proc = jobctl_inproc("queue", "set", "bad name", "--max-running", "1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: queue set: expected a queue name"), proc.stderr  # not "--queue:"
    proc = jobctl_inproc("queue", "resume", "gpuu")
    assert (
        proc.returncode == 0 and proc.stderr.strip() == "queue gpuu is not paused (no job is in it and it has no cap)"
    )
    assert "gpuu" not in jobctl_inproc("queue", "list", check=True).stdout  # a typo records nothing
    proc = jobctl_inproc("queue", "pause", "gpuu")
    assert proc.returncode == 0 and "a new queue: no job is in it yet" in proc.stderr, proc.stderr
    proc = jobctl_inproc("queue", "pause", "gpuu")
    assert proc.stderr.strip() == "queue gpuu paused: no new job starts there; running ones go on"
    proc = jobctl("queue", "resume", "gpuu", check=True)
    assert proc.stderr.strip() == "queue gpuu resumed"
    assert jobctl("queue", "resume", "gpuu", check=True).stderr.strip() == "queue gpuu is not paused"
    jobctl_inproc("queue", "set", "one", "--cpus", "1", "--gpus", "1", check=True)
    listed = jobctl_inproc("queue", "list", check=True).stdout
    assert "(1 CPU, 1 GPU)" in listed, listed  # not "1 CPUs"


def test_supervisor_status_fits_80_columns_and_counts_in_plain_words(jobctl):
    jobctl("config", "set", "capacity.cpus", "1", check=True)
    jobctl("config", "set", "capacity.accelerators", "{H100 = 2}", check=True)
    jobctl("supervisor", "start", check=True)
    text = wait_until(
        lambda: (
            (out := jobctl("supervisor", "status", env={"COLUMNS": "80"}, check=True).stdout)
            and "capacity: 1 CPU," in out
            and out
        ),
        30,
        "the supervisor to say its capacity",
    )
    lines = text.splitlines()
    assert lines[0].startswith("supervisor running: pid ") and len(lines) == 2, text
    assert lines[1].startswith("capacity: 1 CPU, ") and lines[1].endswith(", 2 H100"), text
    assert all(len(line) <= 80 for line in lines)


def test_describe_timeline_says_a_reason_once(jobctl, home):
    job = jobctl.launch(write_job(home, "held", "run: 'true'\n"), "--hold")
    jobctl("update", str(job), "--priority", "5", check=True)
    text = jobctl("describe", str(job), env={"COLUMNS": "200"}, check=True).stdout
    events = text.split("Events:", 1)[1]
    assert ", held at launch" in events, events
    assert "held, held at launch" not in events and "updated, updated:" not in events, events
    assert ", updated: priority 0 -> 5" in events, events
    jobctl("kill", str(job), check=True)


def test_follow_of_a_waiting_job_says_why_nothing_shows(jobctl, home):
    jobctl("config", "set", "capacity.cpus", "1", check=True)
    blocker = jobctl.launch(write_job(home, "blocker", "run: sleep 60\n"))
    jobctl.wait_state(blocker, "ACTIVE", timeout=30)
    err_path = home / "follow.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "launch", "--follow", "--", "echo", "from-the-job"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=jobctl.env,
        )
    try:
        wait_until(lambda: "its output shows when it starts" in err_path.read_text(), 30, "the follower to say why")
        line = next(x for x in err_path.read_text().splitlines() if "its output shows" in x)
        assert line.endswith("is PENDING (resources); its output shows when it starts"), line
        jobctl("kill", str(blocker), "--grace", "0", check=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "from-the-job" in out
    assert err_path.read_text().count("its output shows") == 1  # said once, not on every poll


def test_describe_lists_envs_one_a_line_and_keeps_a_long_value_beside_its_key(jobctl, home):
    long_value = "/opt/" + "x" * 120
    job = write_job(home, "envs", "envs: {A: '1', TOKEN: null}\nrun: 'true'\n")
    job_id = jobctl.launch(job, "--hold", "--env", f"LONGPATH={long_value}", "--env", "TOKEN=s3")
    text = jobctl("describe", str(job_id), env={"COLUMNS": "80"}, check=True).stdout
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Envs:"))
    envs = [lines[at][15:]] + [line[15:] for line in lines[at + 1 : at + 3]]
    assert all(line.startswith(" " * 15) for line in lines[at + 1 : at + 3]), text
    assert sorted(envs) == sorted(["A=1", "TOKEN=***", f"LONGPATH={long_value}"]), text
    jobctl("kill", str(job_id), check=True)


def test_wait_on_a_held_job_says_it_waits_for_start(jobctl, home):
    job_id = jobctl.launch(write_job(home, "held", "run: 'true'\n"), "--hold")
    err_path = home / "wait.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "wait", str(job_id)], stderr=err, text=True, env=jobctl.env
        )
    try:
        wait_until(lambda: "waits for" in err_path.read_text(), 30, "the waiter to say why it waits")
        jobctl("start", str(job_id), check=True)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err_path.read_text().splitlines()
    assert lines[0] == f"job {job_id} is SUSPENDED (held); it waits for: jobctl start {job_id}", lines
    assert sum("waits for" in line for line in lines) == 1


def test_logs_of_a_job_that_never_ran_says_its_state(jobctl, home):
    job_id = jobctl.launch(write_job(home, "held", "run: 'true'\n"), "--hold")
    proc = jobctl("logs", str(job_id))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: job {job_id} has not started yet (SUSPENDED (held)); use -f to wait for its output"
    )
    jobctl("kill", str(job_id), check=True)
    proc = jobctl("logs", str(job_id))
    assert proc.returncode == 1
    me = pwd.getpwuid(os.getuid()).pw_name
    assert proc.stderr.strip() == f"error: job {job_id} ended without running: KILLED (by {me})"


def test_dashboard_on_a_wrong_host_points_at_host_not_port(jobctl_inproc):
    proc = jobctl_inproc("dashboard", "--host", "10.255.255.1", "--port", "0", timeout=30)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert line.startswith("error: cannot listen on 10.255.255.1:0: ") and "--port" not in line, line
    assert line.endswith("(check --host: an address of this machine)"), line


def test_left_out_footer_fits_80_columns():
    from jobctl.cli.views import more_text

    text = more_text({"KILLED": 4, "COMPLETED": 3, "FAILED": 12})
    assert text == "... and 19 more (12 FAILED, 4 KILLED, 3 COMPLETED): see --limit N, --state, --json"
    assert len(more_text({"KILLED": 4, "COMPLETED": 3})) <= 80


def test_a_request_too_big_counts_cpus_in_plain_words(jobctl_inproc, home):
    jobctl_inproc("config", "set", "capacity.cpus", "1", check=True)
    proc = jobctl_inproc("launch", str(write_job(home, "two", "resources: {cpus: 2}\nrun: 'true'\n")))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("resources: two needs 2 CPUs but capacity is 1 CPU"), proc.stderr


def test_an_empty_status_table_says_why_on_stderr(jobctl_inproc):
    proc = jobctl_inproc("status", check=True)
    assert proc.stdout.splitlines()[:2] == ["User: " + pwd.getpwuid(os.getuid()).pw_name, "Jobs"]
    assert proc.stderr.strip() == "no jobs (start one with: jobctl launch job.yaml)"
    assert jobctl_inproc("status", "--limit", "0", check=True).stderr.strip() == "no unfinished jobs"
    proc = jobctl_inproc("status", "--state", "FAILED", check=True)
    assert proc.stderr.strip() == "no job matches these filters"
    assert jobctl_inproc("status", "--json", check=True).stderr == ""
