"""Notifications (SPEC section 10): notify commands and webhooks of real jobs, delivered by the
real supervisor to a real file or a real HTTP server on 127.0.0.1, across a supervisor killed
with -9; hooks that hang, fail or print too much; and job files and settings that are refused."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from helpers import count_jobs, wait_until, write_job


class Hook:
    """A local HTTP server that records every POST. `status`: what it answers; `hold`: while set,
    requests wait (the connection stays open, no answer) until it is cleared or the test ends."""

    def __init__(self, status: int = 200):
        self.status = status
        self.bodies: list[dict] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.release.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                hook.bodies.append(body)
                hook.arrived.set()
                hook.release.wait(60)
                try:
                    self.send_response(hook.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client is gone

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.close()


def notifications(jobctl, job_id: int) -> list[dict]:
    return jobctl.job(job_id)["notifications"]


def settled(jobctl, job_id: int, count: int = 1):
    """The job's notifications once `count` of them are delivered or given up."""

    def check():
        found = notifications(jobctl, job_id)
        done = [n for n in found if n["outcome"] != "pending"]
        return found if len(done) >= count else None

    return check


def tries_failed(jobctl, job_id: int, count: int):
    def check():
        found = notifications(jobctl, job_id)
        return found if sum(1 for n in found for t in n["tries"] if not t["ok"]) >= count else None

    return check


def each_tried(jobctl, job_id: int):
    def check():
        found = notifications(jobctl, job_id)
        return found if found and all(n["tries"] for n in found) else None

    return check


def supervisor_pid(home: Path) -> int:
    info = json.loads((home / "run" / "supervisor.lock").read_text())
    return int(info["pid"])


def test_command_of_a_job_that_exits_3_appends_its_line_exactly_once(jobctl, tmp_path):
    out = tmp_path / "notified.txt"
    job = write_job(
        tmp_path,
        "three",
        f"run: exit 3\nnotify: {{command: 'echo \"$JOBCTL_JOB_ID $JOBCTL_STATE $JOBCTL_EXIT_CODE\" >> {out}'}}\n",
    )
    job_id = jobctl.launch(job)
    assert jobctl("wait", str(job_id)).returncode == 3
    found = wait_until(settled(jobctl, job_id), 30, "the notification to be delivered")
    assert [n["outcome"] for n in found] == ["delivered"]
    assert out.read_text() == f"{job_id} FAILED 3\n"
    assert jobctl.job(job_id)["status"] == "FAILED (exit 3)"  # the hook does not touch the job
    text = jobctl("describe", str(job_id), check=True).stdout
    assert "notify command" in text and "delivered" in text


def test_command_gets_every_variable_and_runs_only_for_the_states_named(jobctl, tmp_path):
    out = tmp_path / "env.txt"
    job = write_job(
        tmp_path,
        "envs",
        "run: echo hello\n"
        "notify:\n"
        "  - on: [active, COMPLETED]\n"
        '    command: \'echo "$JOBCTL_JOB_ID|$JOBCTL_JOB_NAME|$JOBCTL_STATE|$JOBCTL_STATUS|$JOBCTL_EXIT_CODE|$JOBCTL_LOG"'
        f" >> {out}'\n"
        "  - on: FAILED\n"
        f"    command: 'echo never >> {out}'\n",
    )
    job_id = jobctl.launch(job)
    jobctl("wait", str(job_id), check=True)
    wait_until(settled(jobctl, job_id, 2), 30, "both deliveries")
    lines = sorted(out.read_text().splitlines(), key=lambda line: "COMPLETED" in line)
    log = jobctl.job(job_id)["workers"][0]["log"]
    assert lines == [f"{job_id}|envs|ACTIVE|ACTIVE||{log}", f"{job_id}|envs|COMPLETED|COMPLETED|0|{log}"]
    assert Path(log).read_text() == "hello\n"


def test_webhook_receives_the_jobs_json_once(jobctl, tmp_path, hook):
    job = write_job(tmp_path, "hooked", f"run: 'true'\nlabels: {{team: vision}}\nnotify: {{webhook: '{hook.url}'}}\n")
    job_id = jobctl.launch(job)
    jobctl("wait", str(job_id), check=True)
    found = wait_until(settled(jobctl, job_id), 30, "the webhook to be delivered")
    assert [n["outcome"] for n in found] == ["delivered"]
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    shown = json.loads(jobctl("status", str(job_id), "--json", check=True).stdout)[0]
    assert {k: body[k] for k in shown} == shown  # the job's --json document, field for field
    assert body["text"] == f"jobctl: job {job_id} (hooked) COMPLETED" == body["content"]
    text = jobctl("describe", str(job_id), check=True).stdout
    assert "secret-token" not in text  # a webhook's path is its secret: describe shows the host only
    assert "secret-token" not in jobctl("describe", str(job_id), "--json", check=True).stdout
    assert "notify webhook http://127.0.0.1:" in text


def test_config_notify_applies_to_every_job_and_event_callback_is_a_command(jobctl, tmp_path):
    out = tmp_path / "all.txt"
    jobctl.config("notify.command", f"'echo config $JOBCTL_JOB_NAME $JOBCTL_STATE >> {out}'")
    jobctl.config("notify.on", "[COMPLETED, FAILED]")
    plain = jobctl.launch(write_job(tmp_path, "plain", "run: 'true'\n"))
    sky = jobctl.launch(
        write_job(tmp_path, "sky", f"run: exit 1\nevent_callback: echo callback $JOBCTL_STATE >> {out}\n")
    )
    jobctl("wait", str(plain), str(sky))
    wait_until(settled(jobctl, plain), 30, "the config's notification")
    wait_until(settled(jobctl, sky, 2), 30, "the event_callback and the config's notification")
    assert sorted(out.read_text().splitlines()) == sorted(
        ["config plain COMPLETED", "config sky FAILED", "callback FAILED"]
    )


def test_delivery_survives_kill_9_of_the_supervisor_between_the_end_and_the_delivery(jobctl, tmp_path):
    """The end is recorded (with its delivery) while the supervisor is frozen, then it is killed with -9
    before it could deliver anything: the next supervisor delivers."""
    out, go = tmp_path / "once.txt", tmp_path / "go"
    job = write_job(
        tmp_path,
        "crash",
        f"run: 'while [ ! -e {go} ]; do sleep 0.05; done'\n"
        f"notify: {{command: 'echo \"$JOBCTL_JOB_ID $JOBCTL_STATE\" >> {out}'}}\n",
    )
    job_id = jobctl.launch(job)
    jobctl.wait_state(job_id, "ACTIVE")
    pid = supervisor_pid(jobctl.home)
    supervisor = psutil.Process(pid)
    wait_until(lambda: supervisor.status() in ("sleeping", "idle"), 15, "the supervisor to be idle")
    os.kill(pid, signal.SIGSTOP)
    try:
        # the job ends; a command records its end (and the delivery) while the supervisor cannot act
        go.touch()
        wait_until(lambda: (jobctl.home / "state" / "logs" / str(job_id) / "1" / "result.json").exists(), 15, "the end")
        assert jobctl.job(job_id)["state"] == "COMPLETED"
        pending = notifications(jobctl, job_id)
        assert [n["outcome"] for n in pending] == ["pending"] and pending[0]["tries"] == []
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 15, "the kill")
    assert not out.exists()
    jobctl("status", check=True)  # any command brings a supervisor back while deliveries are pending
    found = wait_until(settled(jobctl, job_id), 30, "the delivery by the next supervisor")
    assert [n["outcome"] for n in found] == ["delivered"]
    assert out.read_text() == f"{job_id} COMPLETED\n"


def test_webhook_interrupted_by_kill_9_is_tried_again_by_the_next_supervisor(jobctl, tmp_path, hook):
    """The supervisor and its delivery process die with -9 while the POST is in flight (no answer yet)."""
    hook.release.clear()
    job_id = jobctl.launch(write_job(tmp_path, "inflight", f"run: 'true'\nnotify: {{webhook: '{hook.url}'}}\n"))
    assert hook.arrived.wait(30), "the first POST never came"
    pid = supervisor_pid(jobctl.home)
    doomed = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    for victim in doomed:
        os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: all(not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in doomed), 15, "kills"
    )
    assert [n["outcome"] for n in notifications(jobctl, job_id)] == ["pending"]
    hook.release.set()
    jobctl("status", check=True)
    found = wait_until(settled(jobctl, job_id), 30, "the delivery by the next supervisor")
    assert [n["outcome"] for n in found] == ["delivered"]
    assert len(hook.bodies) == 2 and hook.bodies[0] == hook.bodies[1]  # at least once: the lost try, then one
    assert hook.bodies[1]["id"] == job_id and hook.bodies[1]["state"] == "COMPLETED"


def test_failed_webhook_is_retried_with_backoff_then_delivered(jobctl, tmp_path, hook):
    hook.status = 500
    job_id = jobctl.launch(write_job(tmp_path, "flaky", f"run: 'true'\nnotify: {{webhook: '{hook.url}'}}\n"))
    found = wait_until(tries_failed(jobctl, job_id, 1), 30, "the first failed try")
    first = found[0]["tries"][0]
    assert first["message"].endswith("answered HTTP 500")
    hook.status = 200
    found = wait_until(settled(jobctl, job_id), 30, "the second try")
    tries = found[0]["tries"]
    assert [t["ok"] for t in tries] == [False, True] and len(hook.bodies) == 2
    gap = _seconds(tries[1]["at"]) - _seconds(tries[0]["at"])
    assert 4 <= gap <= 20  # the first backoff is 5 s
    text = jobctl("describe", str(job_id), check=True).stdout
    assert "(COMPLETED): failed, answered HTTP 500 (try 1 of 5, will retry)" in text


def _seconds(iso_text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso_text).timestamp()


def test_commands_that_hang_fail_or_flood_never_change_the_job(jobctl, tmp_path):
    marker = tmp_path / "hang.pid"
    job = write_job(
        tmp_path,
        "badhooks",
        "run: 'true'\n"
        "notify:\n"
        f"  - command: 'echo $$ > {marker}; exec sleep 300'\n"
        "  - command: 'echo something went wrong; exit 1'\n"
        "  - command: 'head -c 10000000 /dev/zero | tr \"\\0\" x; echo; echo last words'\n",
    )
    started = time.monotonic()
    job_id = jobctl.launch(job)
    jobctl("wait", str(job_id), check=True)
    found = wait_until(each_tried(jobctl, job_id), 40, "a try of each")
    hang, fail, flood = found  # in the order of the job file
    assert time.monotonic() - started < 35  # bounded: 10 s a try
    assert hang["tries"][0]["message"] == "command timed out after 10s (killed)"
    hung = int(marker.read_text())
    wait_until(lambda: not psutil.pid_exists(hung), 10, "the hanging hook to be killed")
    assert fail["tries"][0]["message"] == "command failed (exit 1): something went wrong"
    assert flood["outcome"] == "delivered" and flood["tries"][0]["message"] == "command ran (exit 0)"
    assert hang["outcome"] == "pending" and len(hang["tries"]) == 1 and hang["next_try_at"]  # tried again later
    assert fail["outcome"] == "pending" and not any(t["ok"] for t in fail["tries"])
    job_doc = jobctl.job(job_id)
    assert job_doc["status"] == "COMPLETED" and job_doc["exit_code"] == 0
    text = jobctl("describe", str(job_id), check=True).stdout
    assert text.count("command timed out after 10s") == 1  # one event per failed try
    assert text.count("command failed (exit 1)") == len(jobctl.job(job_id)["notifications"][1]["tries"])
    # the supervisor is unharmed: the next job runs
    assert jobctl("launch", str(write_job(tmp_path, "after", "run: 'true'\n")), "--wait").returncode == 0


def test_webhooks_that_refuse_time_out_or_fail_never_change_the_job(jobctl, tmp_path, hook):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    slow = Hook()
    slow.release.clear()  # never answers
    failing = Hook(status=500)
    try:
        job = write_job(
            tmp_path,
            "badwebhooks",
            "run: exit 2\n"
            "notify:\n"
            f"  - webhook: 'http://127.0.0.1:{closed}/x'\n"
            f"  - webhook: '{slow.url}'\n"
            f"  - webhook: '{failing.url}'\n",
        )
        job_id = jobctl.launch(job)
        assert jobctl("wait", str(job_id)).returncode == 2
        found = wait_until(each_tried(jobctl, job_id), 40, "a try of each")
        messages = sorted(n["tries"][0]["message"] for n in found)
        assert any(m.endswith("failed: Connection refused") for m in messages), messages
        assert any(m.endswith("timed out after 10s") for m in messages), messages
        assert any(m.endswith("answered HTTP 500") for m in messages), messages
        assert jobctl.job(job_id)["status"] == "FAILED (exit 2)"
    finally:
        slow.close()
        failing.close()


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ("{on: [FINISHED], command: x}", ":3: notify.on: unknown state 'FINISHED'"),
        ("{on: CANCELLED, command: x}", "notify.on: unknown state 'CANCELLED' (did you mean \"KILLED\"?)"),
        ("{webhook: 'file:///etc/passwd'}", ":3: notify.webhook: expected an http:// or https:// URL, got file:"),
        ("{webhook: 'ftp://example.com/x'}", "notify.webhook: expected an http:// or https:// URL, got ftp:"),
        ("{webhook: 'https://'}", "notify.webhook: expected an http:// or https:// URL with a host"),
        ("{on: [FAILED]}", ":3: notify: expected a command or a webhook"),
        ("{comand: x}", 'notify.comand: unknown key (did you mean "command"?)'),
        ("[{command: x}, {webhook: 'gopher://x'}]", "notify[1].webhook: expected an http:// or https:// URL"),
        ("yes", "notify: expected a mapping of on, command, webhook"),
    ],
)
def test_bad_notify_is_refused_at_launch_with_file_line_and_key(jobctl, tmp_path, notify, expected):
    job = write_job(tmp_path, "bad", f"name: bad\n# a comment line\nnotify: {notify}\nrun: 'true'\n")
    proc = jobctl("launch", str(job))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and str(job) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert count_jobs(jobctl.home) == 0


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("notify.on", "BOGUS", "unknown state 'BOGUS'"),
        ("notify.webhook", "ftp://example.com", "expected an http:// or https:// URL"),
        ("notify.command", "''", "expected a shell command"),
    ],
)
def test_bad_notify_settings_are_refused(jobctl, key, value, expected):
    proc = jobctl("config", "set", key, value)
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr
    config = jobctl.home / "config.toml"
    assert not config.exists() or "notify" not in config.read_text()  # nothing was written
