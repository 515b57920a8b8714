"""`jobctl dashboard` (SPEC section 13): a real server on 127.0.0.1, real jobs, a real browser.

The API is read over HTTP from the server the command starts; the pages are loaded in headless
Chromium (Debian's `chromium`, driven by Playwright) when it is installed, and a screenshot of
each page is kept in $JOBCTL_TEST_ARTIFACTS or test-artifacts/dashboard/.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import REPO, write_job

CHROMIUM = os.environ.get("JOBCTL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("JOBCTL_TEST_ARTIFACTS") or REPO / "test-artifacts" / "dashboard")


class Dashboard:
    """A `jobctl dashboard` process and a small HTTP client for it."""

    def __init__(self, jobctl, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=jobctl.env,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        if not ready:
            self.proc.kill()
            raise AssertionError("the dashboard printed no URL within 30 s")
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:") and "/?token=" in self.url, self.url
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port
        self.token = parts.query.split("token=", 1)[1]
        self.base = f"http://{parts.netloc}"

    def request(
        self, method: str, path: str, *, token: str | None = "header", headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """`token`: 'header' (X-Jobctl-Token), 'cookie', 'query', None (none) or a wrong value to send."""
        sent = dict(headers or {})
        if token == "header":
            sent["X-Jobctl-Token"] = self.token
        elif token == "cookie":
            sent["Cookie"] = f"jobctl_token_{self.port}={self.token}"
        elif token == "query":
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        elif token is not None:
            sent["X-Jobctl-Token"] = token
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, headers=sent)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, path: str, status: int = 200):
        code, _, body = self.request("GET", path)
        assert code == status, (path, code, body[:500])
        return json.loads(body)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"the dashboard did not stop on Ctrl-C within 20 s: {err}") from None
        return self.proc.returncode, err


@pytest.fixture
def dashboard(jobctl):
    started: list[Dashboard] = []

    def start(*args: str) -> Dashboard:
        d = Dashboard(jobctl, *args)
        started.append(d)
        return d

    yield start
    for d in started:
        code, err = d.stop()
        assert code == 0 and "Traceback" not in err, err


def finished(jobctl, job_id: int, timeout: float = 30.0) -> dict:
    from helpers import wait_until as until

    return until(
        lambda: (j := jobctl.job(job_id))["state"] in ("COMPLETED", "FAILED", "KILLED") and j,
        timeout,
        f"job {job_id} to end",
    )


def db_path(jobctl) -> Path:
    return jobctl.home / "data" / "jobctl.db"


# -- the command -----------------------------------------------------------------------------------


def test_dashboard_is_imported_only_by_its_command(jobctl):
    """`status` and `launch` never import the dashboard (no cost to their latency)."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('DASHBOARD=%s\\n' % "
        "any(m.startswith('jobctl.cli.dashboard') for m in sys.modules)))\n"
        "import jobctl.cli.main\n"
        "assert 'jobctl.cli.dashboard' not in sys.modules\n"
        "sys.argv = ['jobctl'] + sys.argv[1:]\n"
        "jobctl.cli.main.main()\n"
    )
    for args in (["status"], ["status", "--json"], ["launch", "--dry-run", "-"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=jobctl.env, timeout=60, input=""
        )
        assert "DASHBOARD=False" in proc.stderr, (args, proc.stderr)


def test_prints_url_with_token_and_stops_cleanly_on_ctrl_c(jobctl, dashboard):
    d = dashboard()
    assert len(d.token) >= 30
    code, err = d.stop()
    assert code == 0, err
    assert "Traceback" not in err and "stopped" in err
    assert "warning" not in err  # loopback: no warning


def test_listening_beyond_loopback_warns(jobctl):
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobctl", "dashboard", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=jobctl.env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready
        url = proc.stdout.readline()
        assert url.startswith("http://0.0.0.0:") and "token=" in url
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "warning: listening on 0.0.0.0: the dashboard is reachable from the network" in err
    assert "Traceback" not in err


def test_port_in_use_and_bad_port_are_one_line_errors(jobctl, dashboard):
    d = dashboard()
    proc = jobctl("dashboard", "--port", str(d.port), timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{d.port}" in proc.stderr and "Traceback" not in proc.stderr
    assert "(choose another with --port)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = jobctl("dashboard", "--port", "70000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# -- the token ---------------------------------------------------------------------------------------


def test_requests_without_the_right_token_get_403_and_nothing_else(jobctl, dashboard, tmp_path):
    job_id = jobctl.launch(write_job(tmp_path, "secretive-name", "run: echo hi\n"), "--wait")
    d = dashboard()
    for path in (
        "/",
        "/jobs",
        f"/job/{job_id}",
        "/timeline",
        "/usage",
        "/api/jobs",
        "/api/table",
        f"/api/jobs/{job_id}",
        f"/api/jobs/{job_id}/logs",
        "/static/app.js",
        "/nope",
    ):
        for token in (None, "wrong-token", d.token[:-1]):
            code, _, body = d.request("GET", path, token=token)
            assert code == 403, (path, token, code)
            assert b"secretive" not in body and b"{" not in body, body
        code, _, body = d.request("GET", path + ("&" if "?" in path else "?") + "token=wrong")
        assert code == 403
    cookie = {"Cookie": f"jobctl_token_{d.port}=wrong"}
    assert d.request("GET", "/api/jobs", token=None, headers=cookie)[0] == 403
    for how in ("header", "cookie", "query"):
        code, _, body = d.request("GET", "/api/jobs", token=how)
        assert code == 200 and b"secretive-name" in body, how


def test_first_load_keeps_the_token_in_a_cookie_and_drops_it_from_the_address(jobctl, dashboard):
    d = dashboard()
    code, headers, _ = d.request("GET", "/?token=" + d.token + "&state=FAILED", token=None)
    assert code == 303
    assert headers["location"] == "/?state=FAILED"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"jobctl_token_{d.port}={d.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    code, headers, body = d.request("GET", "/", token="cookie")
    assert code == 200 and b'<table id="jobs"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


# -- the API: the same documents as --json ----------------------------------------------------------


def test_api_returns_the_documents_of_status_and_describe_json(jobctl, dashboard, tmp_path):
    ok = jobctl.launch(write_job(tmp_path, "fine", "run: echo fine\nlabels: {team: vision}\n"), "--wait")
    bad = jobctl.launch(write_job(tmp_path, "broken", "run: exit 3\n"))
    assert finished(jobctl, bad)["status"] == "FAILED (exit 3)"
    d = dashboard()
    assert d.json("/api/jobs") == json.loads(jobctl("status", "--json", check=True).stdout)
    assert d.json("/api/jobs?state=FAILED") == json.loads(
        jobctl("status", "--state", "FAILED", "--json", check=True).stdout
    )
    assert [j["id"] for j in d.json("/api/jobs?label=team=vision")] == [ok]
    assert [j["id"] for j in d.json("/api/jobs?user=nobody-like-this")] == []
    for job_id in (ok, bad):
        assert d.json(f"/api/jobs/{job_id}") == jobctl.job(job_id)
    table = d.json("/api/table")
    rows = {r["id"]: r for r in table["rows"]}
    assert rows[bad]["cells"]["STATUS"] == "FAILED (exit 3)"
    assert rows[ok]["cells"]["RESOURCES"] == "1x(1CPU, 1GiMEM)"
    assert table["columns"] == ["ID", "NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION"]
    # bad input: the CLI's message, as JSON, with 400 / 404
    code, _, body = d.request("GET", "/api/jobs?state=RUNNING")
    assert code == 400 and 'unknown state RUNNING (did you mean "ACTIVE"?' in json.loads(body)["error"]
    code, _, body = d.request("GET", "/api/jobs/99999")
    assert code == 404 and json.loads(body) == {"error": "no job 99999"}
    assert d.request("GET", "/api/timeline?range=year")[0] == 400
    assert d.request("GET", "/api/usage?since=soon")[0] == 400


def test_logs_come_in_bounded_pieces_that_add_up_to_the_file(jobctl, dashboard, tmp_path):
    # multi-byte characters, so that pieces cut at 64 KiB must not split one
    job = write_job(tmp_path, "chatty", 'run: |\n  for i in $(seq 1 9000); do echo "line $i: é€😀 <b>x</b>"; done\n')
    job_id = jobctl.launch(job, "--wait")
    log = (jobctl.home / "state" / "logs" / str(job_id) / "1" / "rank0.log").read_bytes()
    assert len(log) > 3 * 65536
    d = dashboard()
    text, offset, pieces = "", 0, 0
    while True:
        doc = d.json(f"/api/jobs/{job_id}/logs?rank=0&offset={offset}")
        assert len(doc["text"].encode()) <= 65536 and "\ufffd" not in doc["text"]
        text += doc["text"]
        pieces += 1
        offset = doc["next_offset"]
        if not doc["more"]:
            break
    assert text == log.decode() and pieces >= 4 and doc["finished"] is True
    tail = d.json(f"/api/jobs/{job_id}/logs")  # no offset: the end of the log, from a line start
    assert tail["offset"] > 0 and log[tail["offset"] - 1 : tail["offset"]] == b"\n"
    assert d.request("GET", f"/api/jobs/{job_id}/logs?rank=3")[0] == 400
    assert d.request("GET", f"/api/jobs/{job_id}/logs?attempt=9")[0] == 400


def test_html_in_names_labels_and_logs_is_text(jobctl, dashboard, tmp_path):
    evil = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=1>"
    job = write_job(tmp_path, "evil", f"run: echo '{evil}'\nlabels: {{note: '{evil}'}}\n")
    job_id = jobctl.launch(job, "--wait")
    # names are checked at launch; one that got into the database another way is still only text
    with sqlite3.connect(db_path(jobctl)) as conn:
        conn.execute("UPDATE jobs SET name = ? WHERE id = ?", (evil, job_id))
    d = dashboard()
    assert d.json("/api/jobs")[0]["labels"]["note"] == evil  # JSON carries the text as it is
    assert d.json(f"/api/jobs/{job_id}/logs")["text"] == evil + "\n"
    for path in ("/timeline?range=hour", "/usage?since=1d", "/", f"/job/{job_id}"):
        code, headers, body = d.request("GET", path)
        assert code == 200 and headers["content-type"].startswith("text/html")
        page = body.decode()
        assert "<script>window" not in page and "<img src=x" not in page, path
    page = d.request("GET", "/timeline?range=hour")[2].decode()
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page


# -- control -------------------------------------------------------------------------------------------


def test_control_is_refused_without_the_flag_or_the_token(jobctl, dashboard, tmp_path):
    job_id = jobctl.launch(write_job(tmp_path, "sleeper", "run: sleep 120\n"))
    jobctl.wait_state(job_id, "ACTIVE", timeout=30)
    read_only = dashboard()
    for how in ("header", "cookie", None):
        code, _, body = read_only.request("POST", f"/api/jobs/{job_id}/kill", token=how)
        assert code == 403, how
    assert b"read-only" in read_only.request("POST", f"/api/jobs/{job_id}/kill")[2]
    assert read_only.request("PUT", f"/api/jobs/{job_id}/kill")[0] == 405
    assert read_only.request("PUT", f"/api/jobs/{job_id}/kill", token=None)[0] == 403
    assert read_only.request("GET", f"/api/jobs/{job_id}/kill")[0] == 405
    assert jobctl.state(job_id) == "ACTIVE"

    control = dashboard("--allow-control")
    # a cookie alone is not enough for a POST (another page could make the browser send it)
    assert control.request("POST", f"/api/jobs/{job_id}/kill", token="cookie")[0] == 403
    assert control.request("POST", f"/api/jobs/{job_id}/kill", token="not-it")[0] == 403
    assert control.request("POST", f"/api/jobs/{job_id}/explode")[0] == 405
    assert jobctl.state(job_id) == "ACTIVE"
    code, _, body = control.request("POST", f"/api/jobs/{job_id}/stop")
    assert code == 200 and json.loads(body)[0]["state"] == "SUSPENDED"
    code, _, body = control.request("POST", f"/api/jobs/{job_id}/start")
    assert code == 200 and json.loads(body)[0]["state"] == "ACTIVE"
    code, _, body = control.request("POST", f"/api/jobs/{job_id}/kill")
    assert code == 200 and json.loads(body)[0] == {
        "id": job_id,
        "name": "sleeper",
        "ok": True,
        "message": f"job {job_id} killed",
        "state": "KILLED",
        "selector": str(job_id),
    }
    assert finished(jobctl, job_id)["status"].startswith("KILLED (by ")
    code, _, body = control.request("POST", f"/api/jobs/{job_id}/stop")  # refused as the CLI refuses it
    assert code == 409 and "only running or waiting jobs can be stopped" in json.loads(body)[0]["message"]
    code, _, body = control.request("POST", f"/api/jobs/{job_id}/retry")
    assert code == 200 and json.loads(body)[0]["state"] in ("PENDING", "BLOCKED")
    assert control.request("POST", "/api/jobs/99999/kill")[0] == 409


# -- the timeline ----------------------------------------------------------------------------------------


def three_jobs_on_two_gpus(jobctl, tmp_path) -> list[int]:
    jobctl.config("capacity.accelerators", "{H100 = 2}")
    jobctl.config("capacity.cpus", "4")
    # each holds its GPU until `go` exists: the first two run side by side and the third waits for
    # one of theirs, however slow the launches are
    gate = f"while [ ! -e {tmp_path}/go ]; do sleep 0.05; done"
    job = write_job(
        tmp_path,
        "gpu-task",
        f"resources: {{accelerators: 'H100:1'}}\nrun: echo $CUDA_VISIBLE_DEVICES; {gate}; sleep 1\n",
    )
    ids = [jobctl.launch(job) for _ in range(3)]
    (tmp_path / "go").touch()
    for job_id in ids:
        assert finished(jobctl, job_id, timeout=60)["state"] == "COMPLETED"
    return ids


def assert_no_overlap(bars: list[tuple[str, float, float]]) -> dict[str, int]:
    by_lane: dict[str, list[tuple[float, float]]] = {}
    for lane, start, end in bars:
        assert end >= start
        by_lane.setdefault(lane, []).append((start, end))
    for lane, spans in by_lane.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end - 1e-6, f"bars overlap on {lane}: {spans}"
    return {lane: len(spans) for lane, spans in by_lane.items()}


def test_timeline_puts_three_jobs_on_two_gpus_without_overlap(jobctl, dashboard, tmp_path):
    ids = three_jobs_on_two_gpus(jobctl, tmp_path)
    d = dashboard()
    doc = d.json("/api/timeline?range=hour")
    assert [lane["key"] for lane in doc["lanes"] if lane["kind"] == "gpu"] == ["gpu:H100:0", "gpu:H100:1"]
    gpu_bars = [b for b in doc["bars"] if b["lane"].startswith("gpu:")]
    assert sorted(b["job_id"] for b in gpu_bars) == ids
    counts = assert_no_overlap([(b["lane"], b["start"], b["end"]) for b in gpu_bars])
    assert sorted(counts.values()) == [1, 2]  # two ran side by side, the third after one of them
    assert_no_overlap([(b["lane"], b["start"], b["end"]) for b in doc["bars"]])
    assert {b["state"] for b in doc["bars"]} == {"COMPLETED"}
    for range_name in ("hour", "day", "week"):
        assert d.request("GET", f"/timeline?range={range_name}")[0] == 200


def test_timeline_shows_a_preempted_attempt_apart_from_the_last(jobctl, dashboard, tmp_path):
    jobctl.config("capacity.accelerators", "{H100 = 1}")
    jobctl.config("kill.grace", "2s")
    low = jobctl.launch(
        write_job(
            tmp_path,
            "low",
            "resources: {accelerators: 'H100:1'}\nrun: if [ \"$JOBCTL_ATTEMPT\" = 1 ]; then sleep 60; fi; echo done\n",
        )
    )
    jobctl.wait_state(low, "ACTIVE", timeout=30)
    high = jobctl.launch(
        write_job(tmp_path, "high", "priority: 10\nresources: {accelerators: 'H100:1'}\nrun: sleep 1\n")
    )
    assert finished(jobctl, high, timeout=60)["state"] == "COMPLETED"
    assert finished(jobctl, low, timeout=60)["state"] == "COMPLETED"
    d = dashboard()
    bars = [b for b in d.json("/api/timeline?range=5m")["bars"] if b["lane"] == "gpu:H100:0"]
    assert_no_overlap([(b["lane"], b["start"], b["end"]) for b in bars])
    got = [(b["job_id"], b["attempt"], b["state"]) for b in sorted(bars, key=lambda b: b["start"])]
    assert got == [(low, 1, "SUSPENDED"), (high, 1, "COMPLETED"), (low, 2, "COMPLETED")]
    assert sorted(bars, key=lambda b: b["start"])[0]["status"] == "attempt 1 preempted"


# -- in a real browser ---------------------------------------------------------------------------------


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture
def browser():
    sync_playwright = _browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, d: Dashboard, path: str = "/"):
    """A page opened as a person opens the printed URL (the token in the address, once)."""
    # bypass_csp only lets the test's own probes (wait_for_function) run; the pages need no eval
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(  # a poll cut short by leaving the page is aborted: not a failure
        "requestfailed",
        lambda req: None if "ERR_ABORTED" in (req.failure or "") else errors.append(f"{req.url}: {req.failure}"),
    )
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(d.base) else outside.append(req.url))
    page.goto(d.base + path + ("&" if "?" in path else "?") + f"token={d.token}")
    page.errors, page.outside = errors, outside  # type: ignore[attr-defined]
    return page


def shoot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


def test_browser_four_pages_on_fifty_jobs_and_a_row_that_changes_live(jobctl, dashboard, browser, tmp_path):
    jobctl.config("capacity.cpus", "4")
    jobctl.config("capacity.accelerators", "{H100 = 2}")
    flag = tmp_path / "go"
    quick = write_job(tmp_path, "sweep", "run: echo task $JOBCTL_ARRAY_INDEX; sleep 0.2\nlabels: {team: vision}\n")
    failing = write_job(tmp_path, "flaky", "run: echo trying; exit 3\nretries: 1\n")
    gpu = write_job(
        tmp_path, "train", "resources: {accelerators: 'H100:1'}\nrun: for i in 1 2 3; do echo step $i; sleep 1; done\n"
    )
    waiting = write_job(
        tmp_path,
        "waiter",
        f"run: |\n  echo waiting for the flag\n  while [ ! -e {flag} ]; do sleep 0.05; done\n  echo finished\n",
    )
    jobctl("launch", str(quick), "--array", "45", check=True)
    flaky = jobctl.launch(failing)
    jobctl.launch(gpu)
    jobctl.launch(gpu)
    jobctl.launch(gpu)
    live = jobctl.launch(waiting)
    assert json.loads(jobctl("status", "--all", "--json", check=True).stdout).__len__() == 50
    jobctl.wait_state(live, "ACTIVE", timeout=90)
    d = dashboard()

    page = new_page(browser, d, "/?all=1")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 50", timeout=20000)
    row = page.locator(f'#jobs tbody tr[data-id="{live}"]')
    assert row.locator('td[data-col="STATUS"]').inner_text() == "ACTIVE"
    assert row.locator('td[data-col="RESOURCES"]').inner_text() == "1x(1CPU, 1GiMEM)"
    assert page.locator("#jobs thead th").all_inner_texts() == [
        "ID",
        "NAME",
        "STATUS",
        "RESOURCES",
        "SUBMITTED",
        "START TIME",
        "END TIME",
        "DURATION",
    ]
    shoot(page, "jobs")  # while the last job runs
    # the page notes when the row changes; the test notes when the database does
    page.evaluate(
        """id => {
        const cell = () => document.querySelector(`#jobs tbody tr[data-id="${id}"] td[data-col="STATUS"]`);
        new MutationObserver(() => {
            if (!window.__changedAt && cell() && cell().textContent === 'COMPLETED') { window.__changedAt = Date.now(); }
        }).observe(document.querySelector('#jobs tbody'), {subtree: true, childList: true, characterData: true});
    }""",
        live,
    )
    recorded: list[float] = []

    def watch_db() -> None:
        deadline = time.time() + 60
        with sqlite3.connect(db_path(jobctl)) as conn:
            while time.time() < deadline:
                if conn.execute("SELECT state FROM jobs WHERE id = ?", (live,)).fetchone()[0] == "COMPLETED":
                    recorded.append(time.time())
                    return
                time.sleep(0.01)

    watcher = threading.Thread(target=watch_db)
    watcher.start()
    flag.touch()
    watcher.join()
    assert recorded, "the job did not complete"
    page.wait_for_function("window.__changedAt !== undefined", timeout=15000)
    lag = page.evaluate("window.__changedAt") / 1000 - recorded[0]
    print(f"row changed {lag:.2f} s after the database did")
    assert lag < 2.0, f"the row changed {lag:.2f} s after the job completed"
    assert (
        page.locator(f'#jobs tbody tr[data-id="{live}"] td[data-col="STATUS"]').get_attribute("class") == "st-COMPLETED"
    )
    # filters
    page.select_option("#f-state", "FAILED")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 1", timeout=10000)
    assert "state=FAILED" in page.url
    page.select_option("#f-state", "")
    page.fill("#f-label", "team=vision")
    page.dispatch_event("#f-label", "change")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 45", timeout=10000)
    page.fill("#f-label", "")
    page.dispatch_event("#f-label", "change")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 50", timeout=10000)

    # Job: describe, events, and the log as it is followed
    for job_id in range(1, 51):
        finished(jobctl, job_id, timeout=90)
    page.goto(f"{d.base}/job/{live}")
    page.wait_for_function("document.getElementById('log').textContent.includes('finished')", timeout=15000)
    assert page.locator("#job-status").inner_text() == "COMPLETED"
    assert "PENDING" in page.locator("#events").inner_text()
    assert page.locator("#log").inner_text().startswith("waiting for the flag")
    shoot(page, "job")

    for range_name in ("hour", "5m"):  # the 5-minute view last: the screenshot
        page.goto(f"{d.base}/timeline?range={range_name}")
        bars = page.eval_on_selector_all(
            "rect.bar",
            "rs => rs.map(r => [r.dataset.lane, +r.getAttribute('x'), +r.getAttribute('x') + +r.getAttribute('width')])",
        )
        assert len(bars) >= 50
        assert_no_overlap([(lane, x0, x1) for lane, x0, x1 in bars])
    # a retried job: a bar per attempt, the first coloured by how it ended, the last by the job's state
    attempts = page.eval_on_selector_all(
        f'rect.bar[data-job="{flaky}"]', "rs => rs.map(r => [+r.dataset.attempt, r.dataset.state])"
    )
    assert sorted(set(map(tuple, attempts))) == [(1, "FAILED"), (2, "FAILED")]
    shoot(page, "timeline")

    page.goto(f"{d.base}/usage?since=1d")
    assert page.locator(".card .v").first.inner_text() == "50"
    assert page.locator("svg.chart").count() >= 3
    shoot(page, "usage")
    assert page.errors == [] and page.outside == []  # type: ignore[attr-defined]


def test_browser_timeline_three_jobs_two_gpus_and_escaped_text(jobctl, dashboard, browser, tmp_path):
    ids = three_jobs_on_two_gpus(jobctl, tmp_path)
    evil = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=1>"
    job = write_job(tmp_path, "evil", f"run: echo '{evil}'\nlabels: {{note: '{evil}'}}\n")
    bad = jobctl.launch(job, "--wait")
    with sqlite3.connect(db_path(jobctl)) as conn:
        conn.execute("UPDATE jobs SET name = ? WHERE id = ?", (evil, bad))
    d = dashboard()
    page = new_page(browser, d, "/timeline?range=5m")
    bars = page.eval_on_selector_all(
        "rect.bar",
        "rs => rs.map(r => [r.dataset.lane, +r.dataset.job, +r.getAttribute('x'), +r.getAttribute('x') + +r.getAttribute('width')])",
    )
    gpu = [(lane, x0, x1) for lane, job_id, x0, x1 in bars if lane.startswith("gpu:")]
    assert sorted(job_id for lane, job_id, _, _ in bars if lane.startswith("gpu:")) == ids
    assert sorted(assert_no_overlap(gpu).values()) == [1, 2]
    assert_no_overlap([(lane, x0, x1) for lane, _, x0, x1 in bars])
    title = page.locator(f'rect.bar[data-job="{ids[0]}"] title').first.text_content()
    assert title.startswith(f"gpu-task (job {ids[0]}), attempt 1: COMPLETED")
    shoot(page, "timeline-3-jobs-2-gpus")
    page.locator(f'rect.bar[data-job="{ids[2]}"]').first.click()  # a click opens the job
    page.wait_for_url(f"**/job/{ids[2]}")

    for path in ("/", f"/job/{bad}", "/timeline?range=hour", "/usage?since=1d"):
        page.goto(d.base + path)
        if path == "/":
            page.wait_for_function(f"document.querySelector('#jobs tbody tr[data-id=\"{bad}\"]')", timeout=10000)
            cell = page.locator(f'#jobs tbody tr[data-id="{bad}"] td[data-col="NAME"]')
            assert cell.inner_text() == evil
        if path.startswith("/job/"):
            page.wait_for_function("document.getElementById('log').textContent.length > 0", timeout=10000)
            assert page.locator("#log").inner_text().strip() == evil
            assert page.locator("#job-name").inner_text() == evil
            assert evil in page.locator("#summary").inner_text()
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 1  # app.js alone
    assert page.errors == [] and page.outside == []  # type: ignore[attr-defined]


def test_browser_control_buttons_act_as_the_cli(jobctl, dashboard, browser, tmp_path):
    job_id = jobctl.launch(write_job(tmp_path, "sleeper", "run: sleep 120\n"))
    jobctl.wait_state(job_id, "ACTIVE", timeout=30)
    read_only = dashboard()
    page = new_page(browser, read_only, f"/job/{job_id}")
    page.wait_for_function("document.getElementById('job-status').textContent === 'ACTIVE'", timeout=15000)
    assert page.locator("#controls button").count() == 0  # read-only: no buttons
    page.context.close()

    d = dashboard("--allow-control")
    page = new_page(browser, d, f"/job/{job_id}")
    page.wait_for_function("document.getElementById('job-status').textContent === 'ACTIVE'", timeout=15000)
    assert page.locator("#controls button").all_inner_texts() == ["stop", "start", "kill", "retry"]
    page.click('#controls button[data-verb="start"]')  # refused, as `jobctl start` refuses it
    page.wait_for_function("document.getElementById('control-result').className === 'result bad'", timeout=15000)
    assert "only SUSPENDED jobs can be started" in page.locator("#control-result").inner_text()
    page.click('#controls button[data-verb="kill"]')
    page.wait_for_function(f"document.getElementById('control-result').textContent === 'job {job_id} killed'")
    page.wait_for_function("document.getElementById('job-status').textContent.startsWith('KILLED (by ')", timeout=15000)
    assert finished(jobctl, job_id)["state"] == "KILLED"
    assert page.errors == [] and page.outside == []  # type: ignore[attr-defined]
