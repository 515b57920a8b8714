"""SPEC section 14: a home only its owner controls, secrets that stay secret, nothing a user writes
becomes code, one job cannot harm the queue, jobs get the caller's umask.

Real processes throughout; the tests about other users create a real second Unix user (they need
root, and are skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, Jobctl, count_jobs, wait_until, write_job

ROOT = os.geteuid() == 0


def _make_user(name: str) -> pwd.struct_passwd:
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def other_user():
    """A real second Unix user, removed afterwards."""
    if not ROOT or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("needs root with useradd and runuser to create a second Unix user")
    name = f"jcsec{os.getpid() % 100000}"
    user = _make_user(name)
    yield user
    subprocess.run(["userdel", name], capture_output=True)


def as_user(user: pwd.struct_passwd, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", user.pw_name, "--", "/bin/sh", "-c", script], capture_output=True, text=True, timeout=30
    )


def one_line_refusal(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def supervisor_running(home: Path) -> bool:
    import psutil

    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if "jobctl.supervisor" in " ".join(proc.info["cmdline"] or []) and (proc.info["environ"] or {}).get(
                "JOBCTL_HOME"
            ) == str(home):
                return True
        except psutil.Error:
            pass
    return False


# -- 1. a home only its owner controls ----------------------------------------------------------------
def test_home_data_replaced_by_another_user_is_refused(jobctl, home, tmp_path, other_user):
    """The attack of the security review: a second user replaces data/ in a 0777 home with a folder
    holding his own database, whose job would run as the owner. The owner's status refuses it."""
    job = write_job(tmp_path, "hello", "run: echo hi\n")
    first = jobctl.launch(job, "--wait")
    assert jobctl.state(first) == "COMPLETED"
    jobctl("supervisor", "stop")

    # the attacker's database: a copy of a home whose pending job would touch a marker as the owner
    marker = tmp_path / "pwned"
    evil_home = tmp_path / "evil"
    evil_home.mkdir(mode=0o700)
    evil = Jobctl(evil_home)
    evil_job = write_job(tmp_path, "evil", f"run: '[ \"$JOBCTL_HOME\" != {home} ] || touch {marker}'\n")
    proc = evil("launch", str(evil_job), "--backend", "local", env={"JOBCTL_HOME": str(evil_home)})
    evil("supervisor", "stop")
    # a job still pending in his database: make it so by hand, as he would with sqlite3
    import sqlite3

    with sqlite3.connect(evil_home / "data" / "jobctl.db") as conn:
        conn.execute("UPDATE jobs SET state = 'PENDING', alloc = NULL")
    assert proc.returncode == 0, proc.stderr
    stash = Path("/tmp") / f"jcsec-evil-{os.getpid()}"
    shutil.rmtree(stash, ignore_errors=True)
    shutil.copytree(evil_home / "data", stash)
    os.chmod(stash, 0o755)
    for f in stash.iterdir():
        os.chmod(f, 0o644)
    try:
        os.chmod(home, 0o777)  # a group-writable project folder, as a stand-in
        attack = as_user(
            other_user, f"mv {home}/data {home}/data.old && cp -r {stash} {home}/data && chmod -R go-w {home}/data"
        )
        assert attack.returncode == 0, attack.stderr
        assert (home / "data").stat().st_uid == other_user.pw_uid

        refused = jobctl("status")
        one_line_refusal(refused, str(home), "writable by group or others")
        os.chmod(home, 0o755)  # the owner fixes the mode; the other user's data/ is still there
        refused = jobctl("status")
        one_line_refusal(refused, f"{home}/data", "owned by", other_user.pw_name)
        for command in (["launch", str(job)], ["supervisor", "start"], ["describe", "1"]):
            one_line_refusal(jobctl(*command), "owned by")
        time.sleep(0.5)  # nothing may have been started meanwhile (the marker would appear within this)
        assert not marker.exists()
        assert not supervisor_running(home)
    finally:
        shutil.rmtree(stash, ignore_errors=True)


def test_symlinked_home_subfolder_is_refused(jobctl, home, tmp_path):
    jobctl("config", "set", "kill.grace", "5s", check=True)
    elsewhere = tmp_path / "state-elsewhere"
    elsewhere.mkdir(mode=0o700)
    shutil.rmtree(home / "state", ignore_errors=True)
    (home / "state").symlink_to(elsewhere)
    one_line_refusal(jobctl("status"), f"{home}/state", "symbolic link")
    assert not list(elsewhere.iterdir())  # nothing was written through the link


def test_group_writable_folder_or_linked_file_is_refused(jobctl, home, tmp_path):
    job = write_job(tmp_path, "hello", "run: echo hi\n")
    jobctl.launch(job, "--wait")
    os.chmod(home / "data", 0o770)
    one_line_refusal(jobctl("status"), f"{home}/data", "writable by group or others", "chmod")
    os.chmod(home / "data", 0o700)
    assert jobctl("status").returncode == 0
    (home / "config.toml").unlink(missing_ok=True)
    target = tmp_path / "other.toml"
    target.write_text("")
    (home / "config.toml").symlink_to(target)
    one_line_refusal(jobctl("config", "show"), "config.toml", "symbolic link")


def test_state_files_are_written_without_following_links(tmp_path):
    from jobctl.backends.local.runner import BadStateFile, read_json, write_json

    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "result.json"
    link.symlink_to(victim)
    with pytest.raises(BadStateFile):
        read_json(link)
    write_json(link, {"outcome": "completed"})
    assert victim.read_text() == "precious"  # the link was replaced, not written through
    assert not link.is_symlink() and json.loads(link.read_text()) == {"outcome": "completed"}
    assert oct(link.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


# -- 6. the socket folder in /tmp and the server's uid ---------------------------------------------------
def _in_private_tmp(script: str) -> subprocess.CompletedProcess:
    """Run a shell script with a private /tmp (a mount namespace), so /tmp/jobctl-<uid> is ours alone.

    What this test run itself lives in under /tmp (a virtualenv, a clone of the repository) is bound
    back into the private /tmp at the same paths, so `python -m jobctl` still finds itself there."""
    keep = sorted({str(Path(p).resolve()) for p in (sys.prefix, REPO) if str(Path(p).resolve()).startswith("/tmp/")})
    rebind = "".join(
        f'mkdir -p {shlex.quote(p)} && mount --bind "$orig"{shlex.quote(p[4:])} {shlex.quote(p)}\n' for p in keep
    )
    prologue = (
        "orig=$(mktemp -d /var/tmp/jctmp-orig.XXXXXX)\n"
        'trap \'umount "$orig" 2>/dev/null; rmdir "$orig" 2>/dev/null\' EXIT\n'
        'mount --bind /tmp "$orig"\n'
        "mount -t tmpfs jctmp /tmp\n" + rebind
    )
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "/bin/sh", "-ec", prologue + script],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("squat", ["other-owner", "mode-0755", "symlink"])
def test_socket_fallback_folder_squatted_in_tmp_is_refused(squat, other_user):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (a private /tmp) to leave the machine's /tmp alone")
    long_home = "/tmp/" + "h" * 120  # too long for AF_UNIX: the socket goes to /tmp/jobctl-<uid>
    fallback = f"/tmp/jobctl-{os.getuid()}"
    setup = {
        "other-owner": f"mkdir -m 700 {fallback} && chown {other_user.pw_name} {fallback}",
        "mode-0755": f"mkdir -m 755 {fallback}",
        "symlink": f"mkdir -m 700 /tmp/decoy && ln -s /tmp/decoy {fallback}",
    }[squat]
    job = "/tmp/hello.yaml"  # in the private /tmp
    proc = _in_private_tmp(f"""
echo 'run: echo hi' > {job}
mkdir -m 700 {long_home}
{setup}
export JOBCTL_HOME={long_home} NO_COLOR=1
set +e
{sys.executable} -m jobctl launch {job} 2>&1; echo "rc=$?"
{sys.executable} -c 'import sqlite3; print("jobs", sqlite3.connect("{long_home}/data/jobctl.db").execute("select count(*) from jobs").fetchone()[0])' 2>/dev/null || echo "jobs 0"
""")
    out = proc.stdout.strip().splitlines()
    assert "rc=1" in out, proc.stdout + proc.stderr
    assert out[0].startswith("error: ") and fallback in out[0] and out[1] == "rc=1", out
    assert "jobs 0" in out  # refused before anything was recorded


def test_socket_fallback_folder_is_made_private():
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m (a private /tmp) to leave the machine's /tmp alone")
    long_home = "/tmp/" + "h" * 120
    job = "/tmp/hello.yaml"  # in the private /tmp
    proc = _in_private_tmp(f"""
echo 'run: echo hi' > {job}
mkdir -m 700 {long_home}
export JOBCTL_HOME={long_home} NO_COLOR=1
{sys.executable} -m jobctl launch {job} --wait
stat -c '%a %U' /tmp/jobctl-{os.getuid()}
{sys.executable} -m jobctl supervisor stop
""")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"700 {pwd.getpwuid(os.getuid()).pw_name}" in proc.stdout


def test_client_refuses_a_listener_of_another_uid(jobctl, home, tmp_path, other_user):
    """A process of another user answering on the socket (SO_PEERCRED) is not talked to."""
    (home / "run").mkdir(mode=0o700, parents=True)
    path = home / "run" / "supervisor.sock"
    fake = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind({str(path)!r})
os.setgid({other_user.pw_gid}); os.setuid({other_user.pw_uid})  # SO_PEERCRED is taken at listen()
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout.readline().strip() == "ready"
        job = write_job(tmp_path, "hello", "run: echo hi\n")
        proc = jobctl("launch", str(job))
        assert proc.returncode == 1, proc.stderr
        assert f"uid {other_user.pw_uid}" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        fake.kill()
        fake.wait()


# -- 4 + 5. secrets ---------------------------------------------------------------------------------------
SECRET_JOB = """\
name: sec
envs: {{PLAIN: plain-value, NULLED: null}}
secrets: {{API_KEY: sk-live-2b8f91c4d7}}
run: |
  printf '%s\\n' "TOKEN=${{TOKEN-}}" "API_KEY=${{API_KEY-}}" "NULLED=${{NULLED-}}" "FROMFILE=${{FROMFILE-}}" \\
    "PLAIN=$PLAIN" > {out}/env.$JOBCTL_JOB_ID
"""


def test_secrets_never_outlive_the_job(jobctl, home, tmp_path):
    values = {
        "TOKEN": "tok-9f3a7c1e55",
        "API_KEY": "sk-live-2b8f91c4d7",
        "NULLED": "nul-63d1e0aa42",
        "FROMFILE": "file-4c2d9b8e17",
    }
    job = write_job(tmp_path, "sec", SECRET_JOB.format(out=tmp_path))
    env_file = tmp_path / "secrets.env"
    env_file.write_text(f'FROMFILE="{values["FROMFILE"]}"\n')
    proc = jobctl(
        "launch",
        str(job),
        "--env",
        "TOKEN",
        "--env",
        f"NULLED={values['NULLED']}",
        "--env-file",
        str(env_file),
        env={"TOKEN": values["TOKEN"]},
    )
    assert proc.returncode == 0, proc.stderr
    first = int(proc.stdout.split()[0])
    described = jobctl("describe", str(first), "--json", check=True).stdout
    assert all(v not in described for v in values.values())
    jobctl.wait_state(first, "COMPLETED", timeout=30)
    seen = dict(line.split("=", 1) for line in (tmp_path / f"env.{first}").read_text().splitlines())
    assert seen == {**values, "PLAIN": "plain-value"}  # the job got every value

    # a later job, launched without them, sees none (the supervisor did not inherit TOKEN)
    later = jobctl("launch", str(job), "--env", "NULLED=x", env={"TOKEN": ""})
    assert later.returncode == 0, later.stderr
    second = int(later.stdout.split()[0])
    jobctl.wait_state(second, "COMPLETED", timeout=30)
    seen = dict(line.split("=", 1) for line in (tmp_path / f"env.{second}").read_text().splitlines())
    assert seen["TOKEN"] == "" and seen["FROMFILE"] == ""

    def leaks() -> list[str]:
        found = []
        for path in home.rglob("*"):  # the database, its WAL, logs, plan.json, the secrets folder
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: {k}" for k, v in values.items() if v.encode() in data]
        return found

    wait_until(lambda: not leaks(), 15, "the secrets files to be removed")
    assert not list((home / "data" / "secrets").glob("*.json"))
    assert "***" in jobctl("describe", str(first), check=True).stdout


def test_retry_of_a_finished_job_with_secrets_asks_for_them_again(jobctl, home, tmp_path):
    job = write_job(tmp_path, "fail", f'run: echo "token=$TOKEN" > {tmp_path}/seen.$JOBCTL_ATTEMPT; exit 3\n')
    proc = jobctl("launch", str(job), "--env", "TOKEN", "--wait", env={"TOKEN": "abc-secret-77"})
    job_id = int(proc.stdout.split()[0])
    assert jobctl.state(job_id) == "FAILED"
    wait_until(lambda: not list((home / "data" / "secrets").glob("*.json")), 15, "the secrets file to go")
    proc = jobctl("retry", str(job_id))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: job {job_id}: its secrets (TOKEN) were deleted when it ended; give them again: "
        f"jobctl retry {job_id} --env-file FILE (or --env NAME)"
    )
    assert jobctl.state(job_id) == "FAILED"
    # given again (here from a file): a new attempt with the new value, which again outlives nothing
    env_file = tmp_path / "again.env"
    env_file.write_text("TOKEN=new-secret-5e1d\nUNUSED=x\n")
    proc = jobctl("retry", str(job_id), "--env-file", str(env_file))
    assert proc.returncode == 0, proc.stderr
    assert jobctl("wait", str(job_id), timeout=60).returncode == 3
    assert jobctl.job(job_id)["attempt"] == 2
    assert (tmp_path / "seen.2").read_text().strip() == "token=new-secret-5e1d"
    wait_until(lambda: not list((home / "data" / "secrets").glob("*.json")), 15, "the new secrets file to go")
    for path in home.rglob("*"):  # the database, its WAL, logs: never the value
        if path.is_file() and not path.is_symlink():
            assert b"new-secret-5e1d" not in path.read_bytes(), path
    assert "TOKEN=***" in jobctl("describe", str(job_id), check=True).stdout
    proc = jobctl("launch", str(job), "--env", "PLAIN=1", "--wait")
    other = int(proc.stdout.split()[0])
    assert jobctl("retry", str(other)).returncode == 0  # a plain --env K=V is kept: retry works


# -- 7. one job cannot wedge the queue -------------------------------------------------------------------
GARBAGE = {
    "exit-list": "printf '[]' > $D/rank0.exit",
    "exit-text": "printf 'not json at all' > $D/rank0.exit",
    "exit-type": 'printf \'{"exit_code": "zero"}\' > $D/rank0.exit',
    "result-type": 'printf \'{"outcome": 5, "exit_codes": "x"}\' > $D/result.json',
    "runner-list": "printf '[]' > $D/runner.json",
    "runner-huge": "head -c 3000000 /dev/zero | tr '\\0' ' ' > $D/result.json",
    "exit-link": "ln -s /dev/zero $D/rank0.exit",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_in_state_files_fails_that_job_alone(kind, jobctl, home, tmp_path):
    bad = write_job(
        tmp_path,
        "bad",
        f"""\
num_nodes: 2
run: |
  D=$JOBCTL_HOME/state/logs/$JOBCTL_JOB_ID/$JOBCTL_ATTEMPT
  until grep -q workers $D/runner.json; do sleep 0.05; done  # the runner has written its last runner.json
  if [ "$JOBCTL_NODE_RANK" = 1 ]; then {GARBAGE[kind]}; echo $$ > {tmp_path}/bad.pid; fi
  sleep 60
""",
    )
    good = write_job(tmp_path, "good", "run: echo fine\n")
    bad_id = jobctl.launch(bad, "--cpus", "0.5")
    wait_until(lambda: (tmp_path / "bad.pid").exists(), 30, "the bad job to write its garbage")
    good_id = jobctl.launch(good, "--cpus", "0.5")
    job = jobctl.wait_state(bad_id, "FAILED", timeout=30)
    assert job["status"] == "FAILED (worker lost)", job
    assert "could not be read" in (job["message"] or "")
    jobctl.wait_state(good_id, "COMPLETED", timeout=30)
    import psutil

    pid = int((tmp_path / "bad.pid").read_text())
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        30,
        "the bad job's processes to be ended",
    )
    third = jobctl.launch(good, "--cpus", "0.5")
    jobctl.wait_state(third, "COMPLETED", timeout=30)


# -- 8. bounded input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("array", ["0-3000000000", "3000000000"])
def test_a_3_billion_task_array_is_refused_at_once(array, jobctl_inproc, home, tmp_path):
    job = write_job(tmp_path, "hello", "run: echo hi\n")
    start = time.monotonic()
    proc = jobctl_inproc("launch", str(job), "--array", array)
    took = time.monotonic() - start
    assert proc.returncode == 2 and "--array" in proc.stderr and "100000" in proc.stderr, proc.stderr
    assert took < 10, took  # a python start-up under load; the check itself is below
    from jobctl.app.launch import parse_array
    from jobctl.errors import UsageError

    start = time.monotonic()
    with pytest.raises(UsageError):
        parse_array(array)
    assert time.monotonic() - start < 0.05
    assert count_jobs(home) == 0


def test_env_file_is_read_with_a_bound(jobctl_inproc, home, tmp_path):
    job = write_job(tmp_path, "hello", "run: echo hi\n")
    start = time.monotonic()
    proc = jobctl_inproc("launch", str(job), "--env-file", "/dev/zero", timeout=30)
    assert proc.returncode == 2 and "/dev/zero" in proc.stderr and "1 MiB" in proc.stderr, proc.stderr
    assert time.monotonic() - start < 15
    assert count_jobs(home) == 0


def test_env_file_errors_name_the_line_never_the_value(jobctl_inproc, tmp_path):
    job = write_job(tmp_path, "hello", "run: echo hi\n")
    env_file = tmp_path / "bad.env"
    env_file.write_text("# comment\nGOOD=1\nghp_SuperSecretToken123\n")
    proc = jobctl_inproc("launch", str(job), "--env-file", str(env_file))
    assert proc.returncode == 2
    assert f"{env_file}:3:" in proc.stderr and "SuperSecret" not in proc.stderr, proc.stderr
    proc = jobctl_inproc("launch", str(job), "--env", "BAD-NAME=sekrit-value-9")
    assert proc.returncode == 2 and "sekrit" not in proc.stderr, proc.stderr


def test_env_file_quotes_are_read_like_dotenv(jobctl, tmp_path):
    out = tmp_path / "out"
    job = write_job(tmp_path, "q", f'run: printf \'%s|%s|%s|%s\\n\' "$A" "$B" "$C" "$D" > {out}\n')
    env_file = tmp_path / "q.env"
    env_file.write_text('A="a b"\nB=\'single\'\nC=say "hi"\nexport D="it\'s"\n')
    jobctl.launch(job, "--env-file", str(env_file), "--wait")
    assert out.read_text() == 'a b|single|say "hi"|it\'s\n'


# -- 9. umask, no path pasted into a shell string, control characters ---------------------------------------
def test_jobs_get_the_callers_umask(jobctl, tmp_path):
    out = tmp_path / "umask"
    job = write_job(tmp_path, "u", f"run: umask > {out}; touch {tmp_path}/made\n")
    proc = subprocess.run(
        ["/bin/sh", "-c", f"umask 027; exec {sys.executable} -m jobctl launch {job} --wait"],
        env=jobctl.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().strip() == "0027"
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o640


def test_a_long_script_runs_from_a_file_named_by_argument(tmp_path):
    odd = Path(f'/tmp/jc-q"$(touch pwned)"-{os.getpid()}')  # a command, run in the workdir if pasted
    odd.mkdir(mode=0o700)
    try:
        jc = Jobctl(odd)
        big = "# " + "x" * 120_000 + "\necho long-ok\n"
        job = write_job(
            tmp_path,
            "long",
            "setup: |\n  " + big.replace("\n", "\n  ") + "\nrun: |\n  " + big.replace("\n", "\n  ") + "\n",
        )
        job_id = jc.launch(job, "--wait")
        assert jc.state(job_id) == "COMPLETED"
        log = jc("logs", str(job_id), check=True).stdout
        assert log.count("long-ok") == 2
        assert not (tmp_path / "pwned").exists()
        jc("supervisor", "stop")
    finally:
        from helpers import stop_everything

        stop_everything(odd)
        shutil.rmtree(odd, ignore_errors=True)


@pytest.mark.parametrize(
    "text,where",
    [
        ('labels: {team: "a\\nb"}\n', "labels.team"),
        ('labels: {"te\\nam": x}\n', "labels"),
        ('workdir: "sub\\ndir"\n', "workdir"),
    ],
)
def test_control_characters_are_refused_at_launch(text, where, jobctl_inproc, home, tmp_path):
    (tmp_path / "sub\ndir").mkdir()
    job = write_job(tmp_path, "ctl", text + "run: echo hi\n")
    proc = jobctl_inproc("launch", str(job))
    assert proc.returncode == 2, proc.stderr
    assert where in proc.stderr and "control character" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert count_jobs(home) == 0
    proc = jobctl_inproc("launch", str(write_job(tmp_path, "ok", "run: echo\n")), "--name", "a\nb")
    assert proc.returncode == 2 and count_jobs(home) == 0
