"""Everyday queueing on a queue shared by a team (SPEC sections 9 and 12), with real Unix users:
`update`, `kill --signal`, `launch -- CMD`, `queue`, `stats` and the array summary rows, through
the shared supervisor's socket, each with its refusals (another user's job, a request claiming
another uid, malformed and oversized arguments). Fixtures: tests/conftest.py; helpers:
tests/helpers/shared.py. They need root and useradd; elsewhere they skip and say why.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from helpers import wait_until
from helpers.shared import NEEDS_ROOT, job_file, one_line_error, own_folder, raw_requests, refused

pytestmark = NEEDS_ROOT


def db_row(shared, job_id: int, columns: str) -> tuple:
    with sqlite3.connect(shared.home / "data" / "jobctl.db") as conn:
        return conn.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()


def events(shared, user, job_id: int) -> list[str]:
    return [e["message"] or "" for e in shared.job(user, job_id)["events"]]


# -- update --------------------------------------------------------------------------------------------
def test_update_changes_the_owners_waiting_job_and_refuses_anyone_elses(shared, users):
    alice, bob = users
    job_id = shared.launch(alice, job_file(alice, own_folder(alice), "held", "run: echo hi\n"), "--hold")[0]
    theirs = shared.launch(bob, job_file(bob, own_folder(bob), "bobs", "run: echo hi\n"), "--hold")[0]
    proc = shared.as_user(
        alice, "update", str(job_id), "--priority", "5", "--queue", "gpu", "--timeout", "1h", "--retries", "2",
        "--label", "team=vision",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert db_row(shared, job_id, "priority, queue, max_attempts") == (5, "gpu", 3)
    doc = shared.job(alice, job_id)
    assert doc["labels"] == {"team": "vision"} and doc["queue"] == "gpu"
    assert doc["spec"]["timeout"] == 3600 and doc["spec"]["retries"] == 2
    said = [m for m in events(shared, alice, job_id) if m.startswith("updated:")]
    assert said and "priority 0 -> 5" in said[0] and "queue default -> gpu" in said[0]
    # bob may not touch it: one line, exit 1, nothing changed
    for options in (["--priority", "9"], ["--label", "team=bob"], ["--queue", "default"]):
        one_line_error(shared.as_user(bob, "update", str(job_id), *options), 1, f"job {job_id} belongs to {alice.name}")
    proc = shared.as_user(bob, "update", "--all", "--priority", "7")  # --all: bob's own jobs only
    assert proc.returncode == 0 and str(job_id) not in proc.stderr, proc.stderr
    assert db_row(shared, job_id, "priority, queue") == (5, "gpu")
    assert db_row(shared, theirs, "priority")[0] == 7
    # root may (an admin)
    assert shared.root("update", str(job_id), "--priority", "1").returncode == 0
    assert db_row(shared, job_id, "priority")[0] == 1


def test_update_requests_that_claim_a_user_or_carry_bad_changes_are_refused(shared, users):
    alice, bob = users
    job_id = shared.launch(bob, job_file(bob, own_folder(bob), "mine", "run: echo hi\n"), "--hold")[0]
    alices = shared.launch(alice, job_file(alice, own_folder(alice), "hers", "run: echo hi\n"), "--hold")[0]
    pid = shared.supervisor_pid()

    def update(changes, **extra):
        args = {"verb": "update", "selectors": [str(job_id)], "options": {"changes": changes}, **extra}
        return {"version": 1, "op": "control", "args": args}

    answers = raw_requests(
        shared,
        bob,
        [
            update({"priority": 3}, uid=0),
            {**update({"priority": 3}), "user": alice.name},
            update({"priority": "high"}),
            update({"priority": 10**12}),
            update({"retries": -1}),
            update({"timeout": "1h"}),
            json.dumps(update({"timeout": 1.0})).replace("1.0", "Infinity"),
            update({"labels": {"a\nb": "x"}}),
            update({"labels": {"k": "x" * 10000}}),
            update({"queue": "../etc"}),
            update({"state": "COMPLETED"}),
            update({}),
            update({"labels": {"k": "v"}}, selectors="1; rm -rf /"),
            {"version": 1, "op": "control", "args": {"verb": "update", "selectors": [str(job_id)], "options": "x"}},
            "x" * 100,
            {
                "version": 1,
                "op": "control",
                "args": {"verb": "update", "selectors": [str(alices)], "options": {"changes": {"priority": 9}}},
            },
        ],  # fmt: skip
    )
    refused(answers[0], 2, "may not say who sends it")
    refused(answers[1], 2, "may not say who sends it")
    refused(answers[2], 2, "--priority")
    refused(answers[3], 2, "--priority")
    refused(answers[4], 2, "--retries")
    refused(answers[5], 2, "--timeout")
    refused(answers[6], 2, "--timeout")
    refused(answers[7], 2, "control character")
    refused(answers[8], 2, "--label")
    refused(answers[9], 2, "--queue")
    refused(answers[10], 2, "not something update changes")
    refused(answers[11], 2, "changes")
    refused(answers[12], 2, "expected a list")
    refused(answers[13], 2, "changes")
    refused(answers[14], 2, "JSON")
    assert answers[15]["ok"] is True and answers[15]["result"][0]["ok"] is False
    assert answers[15]["result"][0]["message"] == f"job {alices} belongs to {alice.name}"
    assert shared.supervisor_pid() == pid  # the same supervisor, still answering
    assert db_row(shared, job_id, "priority, queue, state") == (0, "default", "SUSPENDED")
    assert db_row(shared, alices, "priority") == (0,)


# -- kill --signal ----------------------------------------------------------------------------------------
TRAPS = """run: |
  trap 'echo INT >> {got}' INT
  trap 'echo TERM >> {got}' TERM
  touch {ready}
  while true; do sleep 0.1; done
"""


def test_kill_with_a_signal_reaches_the_owners_job_and_is_refused_for_anyone_else(shared, users):
    alice, bob = users
    folder = own_folder(alice)
    got, ready = folder / "got", folder / "ready"
    job_id = shared.launch(alice, job_file(alice, folder, "traps", TRAPS.format(got=got, ready=ready)))[0]
    wait_until(ready.exists, 30, "the job's traps")
    one_line_error(
        shared.as_user(bob, "kill", "--signal", "INT", str(job_id)), 1, f"job {job_id} belongs to {alice.name}"
    )
    answers = raw_requests(
        shared,
        bob,
        [
            {
                "version": 1,
                "op": "control",
                "args": {"verb": "kill", "selectors": [str(job_id)], "options": {"signal": 2}},
                "uid": alice.name,
            },
            {
                "version": 1,
                "op": "control",
                "args": {"verb": "kill", "selectors": [str(job_id)], "options": {"signal": 2}},
            },
        ],  # fmt: skip
    )
    refused(answers[0], 2, "may not say who sends it")
    assert answers[1]["result"][0]["message"] == f"job {job_id} belongs to {alice.name}"
    assert shared.job(alice, job_id)["state"] == "ACTIVE" and not got.exists()  # nothing reached it
    for bad, words in ((["--signal", "NOPE"], "unknown signal"), (["--signal", "999"], "no signal number 999")):
        one_line_error(shared.as_user(alice, "kill", *bad, str(job_id)), 2, *words)
    bad = raw_requests(
        shared,
        alice,
        [
            {
                "version": 1,
                "op": "control",
                "args": {"verb": "kill", "selectors": [str(job_id)], "options": {"signal": sig}},
            }
            for sig in ("INT", 999, True, -9)
        ],  # fmt: skip
    )
    for answer in bad:
        refused(answer, 2, "--signal")
    assert shared.job(alice, job_id)["state"] == "ACTIVE"
    proc = shared.as_user(alice, "kill", "--signal", "INT", "--grace", "2s", str(job_id))
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: shared.job(alice, job_id)["state"] == "KILLED", 30, "the job killed")
    assert got.read_text().split()[0] == "INT"  # INT first instead of TERM; SIGKILL after the grace
    assert shared.job(alice, job_id)["status"] == f"KILLED (by {alice.name})"


def test_kill_signal_is_never_replaced_by_the_default_term_of_a_pass_running_meanwhile(shared, users):
    """Each request wakes the supervisor's loop; a pass that saw the job just recorded KILLED must not
    send its own TERM before the request sends its signal (the two never interleave)."""
    alice, _ = users
    folder = own_folder(alice)
    jobs = {}
    for i in range(6):
        got, ready = folder / f"got{i}", folder / f"ready{i}"
        job_id = shared.launch(alice, job_file(alice, folder, f"t{i}", TRAPS.format(got=got, ready=ready)))[0]
        jobs[job_id] = (got, ready)
    for _, ready in jobs.values():
        wait_until(ready.exists, 30, "the job's traps")
    for job_id in jobs:
        proc = shared.as_user(alice, "kill", "--signal", "INT", "--grace", "1s", str(job_id))
        assert proc.returncode == 0, proc.stderr
    wait_until(lambda: all(shared.job(alice, i)["state"] == "KILLED" for i in jobs), 30, "the jobs killed")
    firsts = {job_id: got.read_text().split()[:1] for job_id, (got, _) in jobs.items()}
    assert all(first == ["INT"] for first in firsts.values()), firsts


# -- launch -- CMD ----------------------------------------------------------------------------------------
def test_an_adhoc_command_runs_as_the_caller_in_their_folder_with_the_allowed_environment(shared, users):
    alice, _ = users
    folder = own_folder(alice)
    script = "grep ^Uid: /proc/self/status; pwd; echo tok=${SECRET_TOKEN:-none} venv=$VIRTUAL_ENV home=$HOME; exit 3"
    proc = shared.as_user(
        alice,
        "launch",
        "--wait",
        "--env",
        "PLAIN=given",
        "--",
        "bash",
        "-c",
        script,
        cwd=folder,
        env={"SECRET_TOKEN": "hunter2", "VIRTUAL_ENV": "/opt/venv-of-alice"},
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)  # the job's own exit code, as in single-user mode
    job_id = int(proc.stdout.split()[0])
    doc = shared.job(alice, job_id)
    assert doc["user"] == alice.name and doc["name"] == "bash" and doc["status"] == "FAILED (exit 3)"
    lines = shared.as_user(alice, "logs", str(job_id), check=True).stdout.splitlines()
    assert lines[0].split()[1:] == [str(alice.uid)] * 4  # real, effective, saved and file-system uid: hers
    assert lines[1] == str(folder)
    assert lines[2] == f"tok=none venv=/opt/venv-of-alice home={alice.home}"  # the allow-list, not her shell
    assert Path(doc["workers"][0]["log"]).stat().st_uid == alice.uid
    with sqlite3.connect(shared.home / "data" / "jobctl.db") as conn:  # the caller's shell stays theirs
        assert not [line for line in conn.iterdump() if "hunter2" in line]


def test_adhoc_command_requests_with_a_foreign_folder_or_bad_words_are_refused(shared, users):
    alice, bob = users
    private = own_folder(alice)
    os.chmod(private, 0o700)
    folder = own_folder(bob)
    link = folder / "hers"
    link.symlink_to(private)
    os.lchown(link, bob.uid, bob.gid)
    before = len(shared.jobs())
    pid = shared.supervisor_pid()

    def launch(command, cwd, **extra):
        args = {"command": command, "cwd": cwd, "base_env": {"PATH": "/usr/bin:/bin"}, **extra}
        return {"version": 1, "op": "launch", "args": args}

    answers = raw_requests(
        shared,
        bob,
        [
            launch(["cat", "secret"], str(link)),
            launch(["cat", "secret"], str(private)),
            launch(["true"], "relative/folder"),
            launch(["true"], str(folder / "missing")),
            launch("true", str(folder)),
            launch([], str(folder)),
            launch(["tr\x00ue"], str(folder)),
            launch(["true"] * 5000, str(folder)),
            launch(["true"], str(folder), files=[{"path": "/x.yaml", "text": "run: x"}]),
            launch(["true"], str(folder), uid=alice.uid),
            {**launch(["true"], str(folder)), "gid": 0},
        ],
    )
    refused(answers[0], 2, "symbolic link", alice.name)
    refused(answers[1], 2, "cannot enter", alice.name)
    refused(answers[2], 2, "absolute path")
    refused(answers[3], 2, "does not exist")
    for answer in answers[4:8]:
        refused(answer, 2, "launch --", "list of words")
    refused(answers[8], 2, "not both")
    refused(answers[9], 2, "may not say who sends it")
    refused(answers[10], 2, "may not say who sends it")
    assert len(shared.jobs()) == before  # nothing recorded
    assert shared.supervisor_pid() == pid
    # the same command from bob's own folder runs, as bob
    proc = shared.as_user(bob, "launch", "--wait", "--", "id", "-un", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert shared.as_user(bob, "logs", proc.stdout.split()[0], check=True).stdout == f"{bob.name}\n"


# -- queue --------------------------------------------------------------------------------------------------
def test_queue_list_is_for_everyone_and_queue_changes_for_root_or_admins(shared, users):
    alice, bob = users
    listed = json.loads(shared.as_user(alice, "queue", "list", "--json", check=True).stdout)
    assert [q["queue"] for q in listed] == ["default"]
    for command in (["set", "gpu", "--max-running", "1"], ["pause", "default"], ["resume", "default"]):
        one_line_error(shared.as_user(alice, "queue", *command), 1, "only root changes the queues")
    assert shared.root("queue", "set", "gpu", "--max-running", "1").returncode == 0
    text = shared.as_user(bob, "queue", "list", check=True).stdout.splitlines()
    assert text[0].split() == ["QUEUE", "RUNNING", "WAITING", "MAX", "RUNNING", "PAUSED"]
    gpu = next(line.split() for line in text if line.startswith("gpu"))
    assert gpu[3] == "1" and gpu[-1] == "no", gpu
    group = f"jcqad{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        subprocess.run(["usermod", "-aG", group, bob.name], check=True, capture_output=True)
        shared.root("config", "set", "shared.admin_group", group, check=True)
        one_line_error(shared.as_user(alice, "queue", "pause", "gpu"), 1, f"member of group {group}")
        assert shared.as_user(bob, "queue", "pause", "gpu").returncode == 0  # an admin may
        job_id = shared.launch(alice, job_file(alice, own_folder(alice), "q", "run: sleep 30\n"), "--queue", "gpu")[0]
        listed = json.loads(shared.as_user(alice, "queue", "list", "--json", check=True).stdout)
        assert {q["queue"]: q["paused"] for q in listed}["gpu"] is True
        answers = raw_requests(
            shared,
            bob,
            [
                {"version": 1, "op": "queue", "args": {"verb": "set", "name": "gpu", "changes": c}}
                for c in ({"max_running": 0}, {"cpus": -1}, {"gpus": 1.5}, {"paused": 2}, {"nice": 1}, {}, "x")
            ]
            + [
                {"version": 1, "op": "queue", "args": {"verb": "set", "name": "bad name!", "changes": {"paused": 0}}},
                {"version": 1, "op": "queue", "args": {"verb": "drop", "name": "gpu"}},
                {
                    "version": 1,
                    "op": "queue",
                    "args": {"verb": "set", "name": "gpu", "changes": {"paused": 0}},
                    "uid": 0,
                },
            ],  # fmt: skip
        )
        for answer in answers[:7]:
            refused(answer, 2, "queue set")
        refused(answers[7], 2, "--queue")
        refused(answers[8], 2, "unknown action")
        refused(answers[9], 2, "may not say who sends it")
        listed = json.loads(shared.as_user(alice, "queue", "list", "--json", check=True).stdout)
        gpu_doc = next(q for q in listed if q["queue"] == "gpu")
        assert (gpu_doc["max_running"], gpu_doc["paused"], gpu_doc["waiting"]) == (1, True, 1)
    finally:
        subprocess.run(["groupdel", group], capture_output=True)
    assert shared.job(alice, job_id)["state"] == "PENDING"  # the queue is paused: nothing else changed
    assert shared.root("queue", "resume", "gpu").returncode == 0
    wait_until(lambda: shared.job(alice, job_id)["state"] == "ACTIVE", 30, "the job to start once resumed")


# -- arrays in status, stats, dashboard ------------------------------------------------------------------
def test_status_shows_an_array_as_one_summary_row_and_expand_lists_its_tasks(shared, users):
    alice, bob = users
    ids = shared.launch(
        alice, job_file(alice, own_folder(alice), "sweep", "run: echo $JOBCTL_ARRAY_INDEX\n"), "--array", "4"
    )
    wait_until(lambda: all(j["state"] == "COMPLETED" for j in shared.jobs() if j["id"] in ids), 30, "the array")
    rows = [line for line in shared.as_user(bob, "status", check=True).stdout.splitlines() if "sweep" in line]
    assert len(rows) == 1 and rows[0].split()[:2] == [str(ids[0]), "sweep[0-3]"], rows
    assert "COMPLETED (4 completed)" in rows[0]
    expanded = [line for line in shared.as_user(bob, "status", "--expand", check=True).stdout.splitlines()]
    assert sorted(line.split()[1] for line in expanded if "sweep-" in line) == [f"sweep-{i}" for i in range(4)]
    docs = json.loads(shared.as_user(bob, "status", "--json", check=True).stdout)
    assert sorted(j["array_index"] for j in docs if j["array_id"] == ids[0]) == [0, 1, 2, 3]  # --json: every task
    answers = raw_requests(
        shared,
        bob,
        [{"version": 1, "op": "array_stats", "args": {"ids": bad}} for bad in ("1", [True], list(range(100_001)))],
    )
    for answer in answers:
        refused(answer, 2, "ids")


def test_stats_show_everyones_usage_to_every_user(shared, users):
    alice, bob = users
    a = shared.launch(alice, job_file(alice, own_folder(alice), "a", "run: echo a\n"))[0]
    b = shared.launch(bob, job_file(bob, own_folder(bob), "b", "run: exit 3\n"))[0]
    wait_until(lambda: {j["id"]: j["state"] for j in shared.jobs()} == {a: "COMPLETED", b: "FAILED"}, 30, "jobs")
    doc = json.loads(shared.as_user(bob, "stats", "--json", check=True).stdout)
    groups = {g["user"]: g for g in doc["groups"]}
    assert (groups[alice.name]["jobs"], groups[alice.name]["completed"]) == (1, 1)
    assert (groups[bob.name]["jobs"], groups[bob.name]["failed"]) == (1, 1)
    assert doc["total"]["jobs"] == 2
    assert json.loads(shared.root("stats", "--json", check=True).stdout)["groups"] == doc["groups"]  # as root sees
    text = shared.as_user(alice, "stats", "--since", "1d", "--by", "queue", check=True).stdout
    assert "default" in text and "QUEUE" in text
    one_line_error(shared.as_user(alice, "stats", "--by", "colour"), 2, "--by")
    answers = raw_requests(
        shared,
        alice,
        [
            {"version": 1, "op": "stats", "args": {"since": "yesterday", "by": "user"}},
            {"version": 1, "op": "stats", "args": {"by": 3}},
            {"version": 1, "op": "stats", "args": {"by": "label:" + "k" * 1000}},
            {"version": 1, "op": "stats", "args": {"by": "user", "user": bob.name}},
        ],
    )
    refused(answers[0], 2, "since")
    refused(answers[1], 2, "by")
    refused(answers[2], 2, "by")
    refused(answers[3], 2, "may not say who sends it")


def test_the_dashboard_of_a_shared_queue_stays_roots(shared, users):
    alice, _ = users
    one_line_error(shared.as_user(alice, "dashboard", "--port", "0"), 2, "not available on a shared queue but to root")


# -- forks under load --------------------------------------------------------------------------------------
def test_runners_start_and_end_while_requests_keep_every_request_thread_busy(shared, users):
    """Runners are forked while request threads look users up, read the database and answer; every
    job starts, runs once and is recorded (a fork that inherited a held lock would hang its runner)."""
    import threading

    from jobctl.shared import protocol

    alice, _ = users
    folder = own_folder(alice)
    ledger = folder / "ledger"
    path = job_file(alice, folder, "many", f"resources: {{cpus: 1}}\nrun: echo $JOBCTL_JOB_ID >> {ledger}\n")
    stop = threading.Event()
    answered = [0] * 6
    errors: list[str] = []

    def hammer(slot: int) -> None:
        socket_path = str(shared.home / "run" / "supervisor.sock")
        while not stop.is_set():
            op, args = (("status_rows", {"all_jobs": True}), ("ping", {}), ("queue", {"verb": "list"}))[slot % 3]
            try:
                response = protocol.request(socket_path, op, args, timeout=30)
            except (OSError, protocol.ProtocolError) as exc:
                errors.append(f"{op}: {exc}")
                return
            if not response["ok"]:
                errors.append(f"{op}: {response}")
                return
            answered[slot] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(answered))]
    for t in threads:
        t.start()
    try:
        ids = shared.launch(alice, path, "--array", "24")
        wait_until(lambda: all(j["state"] == "COMPLETED" for j in shared.jobs()), 90, "every task done")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:3]
    assert all(answered), answered  # every client was answered all along
    assert sorted(map(int, ledger.read_text().split())) == sorted(ids)  # each ran exactly once
    crashes = "".join(p.read_text() for p in (shared.home / "state" / "logs").rglob("runner-error.log"))
    assert not crashes, crashes
