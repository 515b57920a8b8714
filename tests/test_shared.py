"""A queue shared by a team (SPEC section 12), with real Unix users.

The tests create two users (useradd, unique names, removed at teardown), start root's shared
supervisor on a home of their own, and run the real CLI as each user (setuid child processes).
They need root; elsewhere they skip and say why. The fixtures (`users`, `shared`) are in
tests/conftest.py, the helpers in tests/helpers/shared.py; the commands of everyday queueing on a
shared queue (update, kill --signal, launch --, queue, stats, arrays) are in tests/test_shared_ops.py.
"""

from __future__ import annotations

import grp
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import wait_until
from helpers.shared import NEEDS_ROOT, User, job_file, one_line_error, own_folder, proc_ids

pytestmark = NEEDS_ROOT


# -- Done when: two users, four GPUs, jobs as their owners -----------------------------------------------
def test_gpu_jobs_of_two_users_never_overlap_and_run_as_their_owners(shared, users):
    alice, bob = users
    folders = {u.name: own_folder(u) for u in users}
    ids: dict[int, User] = {}
    for user in (alice, bob, alice, bob):
        go = folders[user.name] / "go"
        path = job_file(
            user,
            folders[user.name],
            "gpu",
            "resources: {accelerators: H100:1}\n"
            f"run: grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo home=$HOME user=$USER; id -un; "
            f"while [ ! -e {go} ]; do sleep 0.1; done\n",
        )
        ids[shared.launch(user, path)[0]] = user
    extra = shared.launch(
        bob, job_file(bob, folders[bob.name], "more", "resources: {accelerators: H100:1}\nrun: echo done\n")
    )[0]
    wait_until(lambda: all(shared.job(u, i)["state"] == "ACTIVE" for i, u in ids.items()), 30, "four GPU jobs running")
    held = {}
    for job_id, user in ids.items():
        doc = shared.job(user, job_id)
        held[job_id] = tuple(doc["held"]["devices"])
        worker = doc["workers"][0]
        uid, gid = proc_ids(worker["pid"])  # the job's bash, as the kernel sees it
        assert uid == [user.uid] * 4, (job_id, uid)
        assert gid == [user.gid] * 4, (job_id, gid)
    devices = [d for ds in held.values() for d in ds]
    assert sorted(devices) == [0, 1, 2, 3], held  # four jobs, four different GPUs
    assert shared.job(bob, extra)["state"] == "PENDING"  # a fifth waits: nobody double-books a GPU
    for folder in folders.values():
        (folder / "go").touch()
    wait_until(lambda: shared.job(bob, extra)["state"] == "COMPLETED", 30, "the fifth job")
    for job_id, user in ids.items():
        doc = shared.job(user, job_id)
        assert doc["state"] == "COMPLETED", doc
        assert doc["user"] == user.name
        log = Path(doc["workers"][0]["log"])
        st = log.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (user.uid, 0o600), (log, st)
        text = shared.as_user(user, "logs", str(job_id), check=True).stdout  # read by the owner, as the owner
        assert f"Uid:\t{user.uid}\t{user.uid}\t{user.uid}\t{user.uid}" in text
        assert f"home={user.home} user={user.name}" in text
        assert text.splitlines()[-1] == user.name


# -- permissions ---------------------------------------------------------------------------------------
def test_bob_cannot_control_alice_job_nor_read_its_logs_or_envs(shared, users):
    alice, bob = users
    folder = own_folder(alice)
    path = job_file(alice, folder, "mine", "envs: {PLAIN: visible-to-alice}\nrun: echo started; sleep 60\n")
    job_id = shared.launch(alice, path, "--env", "TOKEN=s3cret-value")[0]
    wait_until(lambda: shared.job(alice, job_id)["state"] == "ACTIVE", 20, "alice's job running")
    for command in (["kill"], ["stop"], ["stop", "--release"], ["start"], ["retry"], ["rm"], ["logs"], ["logs", "-f"]):
        proc = shared.as_user(bob, *command, str(job_id))
        one_line_error(proc, 1, f"job {job_id} belongs to {alice.name}")
    # --all as bob acts on bob's jobs only: alice's stays untouched, nothing said about it
    proc = shared.as_user(bob, "kill", "--all")
    assert str(job_id) not in proc.stderr
    seen = json.loads(shared.as_user(bob, "describe", str(job_id), "--json", check=True).stdout)
    assert seen["state"] == "ACTIVE" and seen["user"] == alice.name  # everyone sees everyone's jobs
    assert "visible-to-alice" not in json.dumps(seen) and "s3cret" not in json.dumps(seen)
    assert seen["spec"]["envs"]["PLAIN"] == "***"
    log = Path(seen["workers"][0]["log"])
    with pytest.raises(PermissionError):  # and the file system agrees: the log is alice's, 0600
        _read_as(bob, log)
    mine = json.loads(shared.as_user(alice, "describe", str(job_id), "--json", check=True).stdout)
    assert mine["spec"]["envs"]["PLAIN"] == "visible-to-alice"
    assert shared.as_user(alice, "logs", str(job_id), check=True).stdout == "started\n"
    assert shared.root("kill", str(job_id)).returncode == 0  # root may
    assert shared.job(alice, job_id)["status"] == "KILLED (by root)"


def _read_as(user: User, path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; open(sys.argv[1]).read()", str(path)],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        capture_output=True,
        text=True,
    )
    if "PermissionError" in proc.stderr:
        raise PermissionError(path)
    assert proc.returncode == 0, proc.stderr


def test_admin_group_members_may_control_other_users_jobs(shared, users):
    alice, bob = users
    group = f"jcadm{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        subprocess.run(["usermod", "-aG", group, bob.name], check=True, capture_output=True)
        shared.root("config", "set", "shared.admin_group", group, check=True)
        job_id = shared.launch(alice, job_file(alice, own_folder(alice), "long", "run: sleep 60\n"))[0]
        proc = shared.as_user(bob, "kill", str(job_id))
        assert proc.returncode == 0, proc.stderr
        assert shared.job(alice, job_id)["status"] == f"KILLED (by {bob.name})"
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


def test_a_user_outside_allowed_group_is_refused_with_one_line(shared, users):
    alice, bob = users
    group = f"jcusr{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        subprocess.run(["usermod", "-aG", group, alice.name], check=True, capture_output=True)
        shared.root("config", "set", "shared.allowed_group", group, check=True)
        assert shared.as_user(alice, "status").returncode == 0
        for command in (["status"], ["kill", "1"], ["describe", "1"]):
            one_line_error(shared.as_user(bob, *command), 1, f"user {bob.name} is not in group {group}")
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


def test_only_root_starts_a_shared_queue_or_changes_its_settings(shared, users):
    alice, _ = users
    one_line_error(shared.as_user(alice, "config", "set", "capacity.cpus", "64"), 1, "root")
    one_line_error(shared.as_user(alice, "supervisor", "stop"), 1, "only root")
    assert shared.supervisor_pid() is not None
    elsewhere = own_folder(alice) / "home"
    proc = shared.as_user(alice, "supervisor", "start", "--shared", env={"JOBCTL_HOME": str(elsewhere)})
    one_line_error(proc, 2, "only root")


# -- bad input and attacks -------------------------------------------------------------------------------
RAW_CLIENT = r"""
import json, socket, struct, sys
path = sys.argv[1]
def ask(payload, raw=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    if raw is None:
        body = json.dumps(payload).encode()
        raw = struct.pack(">I", len(body)) + body
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if len(data) < 4:
        return {"closed": True}
    return json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])
out = {
    "garbage": ask(None, struct.pack(">I", 9) + b"not json!"),
    "not_object": ask(None, struct.pack(">I", 2) + b"[]"),
    "oversized": ask(None, struct.pack(">I", 50 << 20) + b"{}"),
    "old_version": ask({"version": 0, "op": "status_rows", "args": {}}),
    "no_version": ask({"op": "status_rows", "args": {}}),
    "claims_root": ask({"version": 1, "op": "control", "uid": 0, "args": {"verb": "kill", "selectors": [sys.argv[2]]}}),
    "claims_alice": ask({"version": 1, "op": "control", "args": {"verb": "kill", "selectors": [sys.argv[2]], "user": sys.argv[3]}}),
    "unknown_op": ask({"version": 1, "op": "become_root", "args": {}}),
    "bad_args": ask({"version": 1, "op": "control", "args": {"verb": "kill", "selectors": "1; rm -rf /"}}),
    "truncated": ask(None, struct.pack(">I", 100) + b"{\"version\": 1"),
    "kill_as_bob": ask({"version": 1, "op": "control", "args": {"verb": "kill", "selectors": [sys.argv[2]]}}),
}
print(json.dumps(out))
"""


def test_malformed_oversized_foreign_and_impersonating_requests_are_refused(shared, users):
    alice, bob = users
    job_id = shared.launch(alice, job_file(alice, own_folder(alice), "victim", "run: sleep 60\n"))[0]
    wait_until(lambda: shared.job(alice, job_id)["state"] == "ACTIVE", 20, "alice's job running")
    pid = shared.supervisor_pid()
    proc = subprocess.run(
        [shared.python, "-c", RAW_CLIENT, str(shared.home / "run" / "supervisor.sock"), str(job_id), alice.name],
        user=bob.uid,
        group=bob.gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    for name, answer in answers.items():
        if name == "kill_as_bob":
            continue
        assert answer.get("ok") is False, (name, answer)
        assert "\n" not in answer["error"], (name, answer)
    assert "JSON" in answers["garbage"]["error"]
    assert "larger than the limit" in answers["oversized"]["error"]
    assert "version 0 is not spoken here" in answers["old_version"]["error"]
    assert "version null" in answers["no_version"]["error"]
    assert "may not say who sends it" in answers["claims_root"]["error"]
    assert "may not say who sends it" in answers["claims_alice"]["error"]
    assert "unknown op" in answers["unknown_op"]["error"]
    assert "expected a list" in answers["bad_args"]["error"]
    assert "closed" in answers["truncated"]["error"]
    # the well-formed request still goes through as bob, and is refused as bob
    assert answers["kill_as_bob"]["ok"] is False or answers["kill_as_bob"]["result"][0]["ok"] is False
    assert shared.supervisor_pid() == pid  # still the same supervisor, still answering
    assert shared.job(alice, job_id)["state"] == "ACTIVE"  # and nothing else touched
    assert shared.as_user(bob, "status", check=True).returncode == 0


def test_a_client_speaking_another_protocol_version_gets_one_line(shared, users):
    alice, _ = users
    code = (
        "import sys; from jobctl.shared import protocol; protocol.VERSION = 99\n"
        "from jobctl.cli.main import main; sys.argv = ['jobctl', 'status']; main()"
    )
    proc = subprocess.run(
        [shared.python, "-c", code],
        user=alice.uid,
        group=alice.gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": str(alice.home), "JOBCTL_HOME": str(shared.home), **shared.extra},
        cwd="/",
        capture_output=True,
        text=True,
    )
    one_line_error(proc, 2, "protocol version 99 is not spoken here")


def test_a_workdir_symlink_into_another_users_files_is_refused(shared, users):
    alice, bob = users
    private = own_folder(alice)
    os.chmod(private, 0o700)
    (private / "secret.txt").write_text("alice's\n")
    folder = own_folder(bob)
    link = folder / "data"
    link.symlink_to(private)
    os.lchown(link, bob.uid, bob.gid)
    path = job_file(bob, folder, "sneaky", "workdir: data\nrun: cat secret.txt\n")
    before = len(shared.jobs())
    one_line_error(shared.as_user(bob, "launch", str(path), cwd=folder), 2, "symbolic link", alice.name)
    path = job_file(bob, folder, "direct", f"workdir: {private}\nrun: cat secret.txt\n")
    one_line_error(shared.as_user(bob, "launch", str(path), cwd=folder), 2, "cannot enter")
    assert len(shared.jobs()) == before  # nothing recorded


def test_log_and_state_folders_are_out_of_users_reach(shared, users):
    alice, bob = users
    job_id = shared.launch(alice, job_file(alice, own_folder(alice), "a", "run: echo hi\n"))[0]
    wait_until(lambda: shared.job(alice, job_id)["state"] == "COMPLETED", 20, "the job")
    logs = shared.home / "state" / "logs"
    attempt = logs / str(job_id) / "1"
    for target in (logs / "999", attempt / "rank1.log", attempt / "result.json", shared.home / "data" / "x"):
        existed = os.path.lexists(target)
        proc = subprocess.run(
            ["ln", "-sfn", str(alice.home), str(target)],
            user=bob.uid,
            group=bob.gid,
            extra_groups=[],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, (target, proc.stderr)
        assert not os.path.islink(target) and os.path.lexists(target) == existed
    for path in (shared.home / "data", attempt / "result.json", attempt / "plan.json"):
        st = os.lstat(path)
        assert st.st_uid == 0 and not st.st_mode & 0o077, path


def test_a_job_file_owned_by_another_user_is_refused(shared, users):
    alice, bob = users
    folder = own_folder(alice)
    path = job_file(alice, folder, "alices", "run: echo hi\n")
    os.chmod(path, 0o644)  # bob can read it: still not his to launch
    before = len(shared.jobs())
    one_line_error(shared.as_user(bob, "launch", str(path), cwd=own_folder(bob)), 2, "owned by", alice.name)
    os.chmod(path, 0o600)
    one_line_error(shared.as_user(bob, "launch", str(path), cwd=own_folder(bob)), 2, "Permission denied")
    assert len(shared.jobs()) == before


# -- crash safety ------------------------------------------------------------------------------------------
def test_kill_9_of_the_shared_supervisor_loses_nothing_and_runs_nothing_twice(shared, users):
    alice, bob = users
    rng = random.Random(11)
    expected: dict[int, tuple[User, int]] = {}
    ledgers = {}
    for user in (alice, bob):
        folder = own_folder(user)
        ledgers[user.name] = folder / "ledger"
        paths, codes = [], []
        for i in range(10):
            code = rng.choice([0, 0, 3])
            codes.append(code)
            paths.append(
                job_file(
                    user,
                    folder,
                    f"w{i}",
                    f"resources: {{cpus: 4}}\nrun: |\n  echo $JOBCTL_JOB_ID >> {ledgers[user.name]}\n"
                    f"  sleep {rng.choice([1.5, 2.5, 3.5])}\n  exit {code}\n",
                )
            )
        out = shared.as_user(user, "launch", *map(str, paths), check=True, cwd=folder).stdout  # one transaction
        for job_id, code in zip(map(int, out.split()), codes):
            expected[job_id] = (user, code)
    kills = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 0.8))
        pid = shared.supervisor_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: shared.supervisor_pid() != pid, what="the supervisor gone")
            kills += 1
        shared.root("supervisor", "start", check=True)  # as systemd's Restart=always would
        if all(j["state"] in ("COMPLETED", "FAILED") for j in shared.jobs()):
            break
    jobs = {j["id"]: j for j in shared.jobs()}
    assert kills >= 3, (kills, [(j["id"], j["state"], j["started_at"], j["ended_at"]) for j in jobs.values()])
    assert sorted(jobs) == sorted(expected)
    for job_id, (user, code) in expected.items():
        job = jobs[job_id]
        assert job["user"] == user.name
        assert job["state"] == ("COMPLETED" if code == 0 else "FAILED"), job
        assert job["exit_code"] == code and job["attempt"] == 1, job
    for user in (alice, bob):
        ran = sorted(map(int, ledgers[user.name].read_text().split()))
        assert ran == sorted(i for i, (u, _) in expected.items() if u is user), "each job ran exactly once"
        assert ledgers[user.name].stat().st_uid == user.uid
    crashes = "".join(p.read_text() for p in (shared.home / "state" / "logs").rglob("runner-error.log"))
    assert not crashes, crashes
    with sqlite3.connect(shared.home / "data" / "jobctl.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_job_that_ends_while_no_shared_supervisor_lives_keeps_its_exit_code(shared, users):
    alice, _ = users
    folder = own_folder(alice)
    go = folder / "go"
    job_id = shared.launch(
        alice, job_file(alice, folder, "across", f"run: while [ ! -e {go} ]; do sleep 0.05; done; exit 4\n")
    )[0]
    wait_until(lambda: shared.job(alice, job_id)["state"] == "ACTIVE", 20, "the job running")
    pid = shared.supervisor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: shared.supervisor_pid() != pid, what="the supervisor gone")
    runner = json.loads((shared.home / "state" / "logs" / str(job_id) / "1" / "runner.json").read_text())
    assert psutil.pid_exists(runner["pid"])  # the job goes on without a supervisor
    go.touch()
    # nobody restarts it here: the runner, as its job ends with none listening, starts the next one
    wait_until(lambda: shared.supervisor_pid() not in (None, pid), 30, "a supervisor started by the runner")
    proc = shared.as_user(alice, "wait", str(job_id))
    assert proc.returncode == 4, (proc.stdout, proc.stderr)  # the job's own exit code, kept
    doc = shared.job(alice, job_id)
    assert (doc["status"], doc["exit_code"], doc["attempt"]) == ("FAILED (exit 4)", 4, 1)
    assert json.loads((shared.home / "run" / "supervisor.lock").read_text()).get("shared") is True


def test_launches_racing_kill_9_of_the_shared_supervisor_lose_nothing(shared, users):
    rng = random.Random(5)
    ledgers = {}
    files = {}
    for user in users:
        folder = own_folder(user)
        ledgers[user.name] = folder / "ledger"
        files[user.name] = job_file(
            user, folder, "quick", f"resources: {{cpus: 1}}\nrun: echo $JOBCTL_JOB_ID >> {ledgers[user.name]}\n"
        )
    printed: dict[int, str] = {}
    failed = kills = 0
    for _ in range(3):
        # launches keep coming, one every 0.25 s for 4 s; the supervisor is killed somewhere in the
        # middle and restarted (as systemd's Restart=always would) while they go on
        launches, restart = [], None
        start = time.monotonic()
        kill_at = start + rng.uniform(0.8, 2.5)
        while time.monotonic() < start + 4:
            user = rng.choice(users)
            launches.append((user, shared.start_as_user(user, "launch", str(files[user.name]))))
            pid = shared.supervisor_pid()
            if restart is None and time.monotonic() >= kill_at and pid is not None:
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: shared.supervisor_pid() != pid, what="the supervisor gone")
                kills += 1
                restart = threading.Thread(target=shared.root, args=("supervisor", "start"), kwargs={"check": True})
                restart.start()
            time.sleep(0.25)  # the pace of the launches
        assert restart is not None
        restart.join()
        for user, proc in launches:
            out, err = proc.communicate(timeout=120)
            if proc.returncode == 0:
                (job_id,) = map(int, out.split())
                printed[job_id] = user.name
            else:  # while no supervisor answered: one line, exit 1, nothing half-done
                failed += 1
                assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, (proc.returncode, err)
                assert "Traceback" not in err
    assert kills == 3 and printed, (kills, printed, failed)
    wait_until(lambda: all(j["state"] == "COMPLETED" for j in shared.jobs()), 60, "every recorded job done")
    jobs = {j["id"]: j for j in shared.jobs()}
    assert set(printed) <= set(jobs)  # every launch that said yes has its job
    for job_id, job in jobs.items():
        assert job["attempt"] == 1 and job["exit_code"] == 0, job
        if job_id in printed:
            assert job["user"] == printed[job_id]
    for user in users:
        ran = sorted(map(int, ledgers[user.name].read_text().split())) if ledgers[user.name].exists() else []
        mine = sorted(i for i, j in jobs.items() if j["user"] == user.name)
        assert ran == mine, "each recorded job ran exactly once, as its owner"
    with sqlite3.connect(shared.home / "data" / "jobctl.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_groups_of_the_owner_are_the_jobs_groups(shared, users):
    alice, _ = users
    group = f"jcgrp{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        subprocess.run(["usermod", "-aG", group, alice.name], check=True, capture_output=True)
        gid = grp.getgrnam(group).gr_gid
        job_id = shared.launch(alice, job_file(alice, own_folder(alice), "groups", "run: id -G\n"))[0]
        wait_until(lambda: shared.job(alice, job_id)["state"] == "COMPLETED", 20, "the job")
        groups = {int(g) for g in shared.as_user(alice, "logs", str(job_id), check=True).stdout.split()}
        assert gid in groups and 0 not in groups, groups
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


# -- fair share, end to end --------------------------------------------------------------------------------
def test_bob_single_job_starts_before_half_of_alices_50_task_array_is_done(shared, users):
    alice, bob = users
    array = job_file(alice, own_folder(alice), "sweep", "resources: {accelerators: H100:1}\nrun: sleep 4\n")
    ids = shared.launch(alice, array, "--array", "50")
    assert len(ids) == 50
    wait_until(lambda: shared.job(alice, ids[0])["state"] in ("ACTIVE", "COMPLETED"), 20, "the array to start")
    single = shared.launch(
        bob, job_file(bob, own_folder(bob), "one", "resources: {accelerators: H100:1}\nrun: sleep 1\n")
    )
    job_id = single[0]
    wait_until(lambda: shared.job(bob, job_id)["state"] in ("ACTIVE", "COMPLETED"), 60, "bob's job to start")
    with sqlite3.connect(shared.home / "data" / "jobctl.db") as conn:
        started = conn.execute("SELECT started_at FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        ends = sorted(
            e if e is not None else float("inf")
            for (e,) in conn.execute(
                f"SELECT ended_at FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchall()
        )
    assert started < ends[24], (started, ends[:26])  # before the 25th of alice's 50 tasks ended


def test_status_shows_a_user_column_and_filters_by_user(shared, users):
    alice, bob = users
    a = shared.launch(alice, job_file(alice, own_folder(alice), "from-alice", "run: echo a\n"))[0]
    only_alice = shared.as_user(bob, "status", check=True).stdout
    header = next(line for line in only_alice.splitlines() if line.startswith("ID"))
    assert "USER" not in header.split()  # one user's jobs: the table as in single-user mode
    b = shared.launch(bob, job_file(bob, own_folder(bob), "from-bob", "run: echo b\n"))[0]
    text = shared.as_user(alice, "status", check=True).stdout
    assert text.startswith(f"User: {alice.name}\n")
    header = next(line for line in text.splitlines() if line.startswith("ID"))
    assert header.split()[:4] == ["ID", "NAME", "USER", "STATUS"]
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()}
    assert rows[str(a)][2] == alice.name and rows[str(b)][2] == bob.name
    mine = json.loads(shared.as_user(alice, "status", "--mine", "--json", check=True).stdout)
    assert {j["id"] for j in mine} == {a} and mine[0]["user"] == alice.name
    theirs = json.loads(shared.as_user(alice, "status", "--user", bob.name, "--json", check=True).stdout)
    assert {j["id"] for j in theirs} == {b}
    one_line_error(shared.as_user(alice, "status", "--mine", "--user", bob.name), 2, "--mine")
