"""How jobs are shown: `logs` as bytes, the status table at any width, names, describe, RESOURCES.

Everything runs the real CLI against a private home; the table is read through a real pseudo-terminal
so that Rich sees a terminal of the given size, as a user's shell would give it. Dry runs, refused
launches and the rendering of finished jobs (describe, a piped table) run the CLI's entry point
in-process (`jobctl_inproc`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import count_jobs, wait_until, write_job


def run_bytes(jobctl, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI with stdout kept as bytes (text mode would turn `\\r` into newlines)."""
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, env=jobctl.env, timeout=timeout)


def log_path(jobctl, job_id: int, rank: int = 0, attempt: int = 1) -> Path:
    return jobctl.home / "state" / "logs" / str(job_id) / str(attempt) / f"rank{rank}.log"


# -- logs: the bytes, in bounded memory ------------------------------------------------------------


def test_logs_print_the_bytes_the_job_wrote(jobctl, tmp_path):
    job = write_job(
        tmp_path,
        "bytes",
        "run: |\n  printf 'a\\rb\\r\\n'\n  printf '\\xff\\xfe'\n"
        "  head -c 3000000 /dev/urandom\n  printf 'tail-without-newline'\n",
    )
    job_id = jobctl.launch(job, "--wait")
    written = log_path(jobctl, job_id).read_bytes()
    assert written.startswith(b"a\rb\r\n\xff\xfe") and len(written) > 3_000_000
    proc = run_bytes(jobctl, "logs", str(job_id))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == written
    # following a finished job prints the same bytes, nothing added
    proc = run_bytes(jobctl, "logs", str(job_id), "-f")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == written


def test_logs_follow_streams_carriage_returns_live(jobctl, tmp_path):
    gate = tmp_path / "go"
    job = write_job(
        tmp_path,
        "progress",
        f"run: |\n  printf '10%%\\r'\n  while [ ! -e {gate} ]; do sleep 0.05; done\n  printf '100%%\\r\\n\\xff'\n",
    )
    job_id = jobctl.launch(job)
    follower = subprocess.Popen(
        [sys.executable, "-m", "jobctl", "logs", str(job_id), "-f"],
        env=jobctl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # the partial line `10%\r` arrives before the job writes a newline
        first = wait_until(lambda: os.read(follower.stdout.fileno(), 100), timeout=30, what="the first bytes")
        assert first == b"10%\r"
        gate.touch()
        rest, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert first + rest == b"10%\r100%\r\n\xff" == log_path(jobctl, job_id).read_bytes()


def test_logs_tail_counts_lines_from_the_end(jobctl, tmp_path):
    job = write_job(tmp_path, "lines", "run: seq 1 200000\n")
    job_id = jobctl.launch(job, "--wait")
    assert run_bytes(jobctl, "logs", str(job_id), "--tail", "3").stdout == b"199998\n199999\n200000\n"
    assert run_bytes(jobctl, "logs", str(job_id), "--tail", "1").stdout == b"200000\n"
    assert run_bytes(jobctl, "logs", str(job_id), "--tail", "0").stdout == b""
    whole = log_path(jobctl, job_id).read_bytes()
    assert run_bytes(jobctl, "logs", str(job_id), "--tail", "999999").stdout == whole
    # a last line without a newline is a line; \r is not a line break
    log_path(jobctl, job_id).write_bytes(b"one\ntwo\rtwo-b\nthree")
    assert run_bytes(jobctl, "logs", str(job_id), "--tail", "2").stdout == b"two\rtwo-b\nthree"


def test_logs_of_several_ranks_are_prefixed_per_line(jobctl, tmp_path):
    job = write_job(tmp_path, "ranks", "num_nodes: 2\nrun: printf 'x\\ry\\n\\xff\\nend'\n")
    job_id = jobctl.launch(job, "--wait")
    out = run_bytes(jobctl, "logs", str(job_id)).stdout
    assert out == b"".join(b"[rank %d] x\ry\n[rank %d] \xff\n[rank %d] end\n" % (r, r, r) for r in (0, 1))
    assert run_bytes(jobctl, "logs", str(job_id), "--rank", "1").stdout == b"x\ry\n\xff\nend"
    followed = run_bytes(jobctl, "logs", str(job_id), "-f").stdout
    assert sorted(followed.splitlines()) == sorted(out.splitlines())


def test_logs_of_a_large_file_use_bounded_memory(jobctl, tmp_path):
    job_id = jobctl.launch(write_job(tmp_path, "big", "run: echo small\n"), "--wait")
    big = log_path(jobctl, job_id)
    block = os.urandom(1 << 20)
    with open(big, "wb") as handle:
        for _ in range(120):
            handle.write(block)
    # the peak RSS of the `logs` process alone, measured by a fresh parent that waits for nothing else
    probe = (
        "import resource, subprocess, sys\n"
        "for args in (['logs', sys.argv[1]], ['logs', sys.argv[1], '-f'], ['logs', sys.argv[1], '--tail', '5']):\n"
        "    subprocess.run([sys.executable, '-m', 'jobctl', *args], stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(job_id)], capture_output=True, text=True, env=jobctl.env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    peak_mib = int(proc.stdout) / 1024
    assert peak_mib < 100, f"jobctl logs of a 120 MiB log peaked at {peak_mib:.0f} MiB"


# -- the status table at any width ---------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
SWEEP = "very-long-sweep-name-for-hyperparameter-search-x1"  # 50 characters


def run_in_terminal(
    jobctl, *args: str, columns: int, lines: int = 50, until: bytes | None = None, timeout: float = 60
) -> str:
    """Run the CLI on a real pseudo-terminal of `columns` x `lines`; its screen output without escapes.

    With `until`, stop it with Ctrl-C (SIGINT) once that text has been shown (for `--watch`)."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {**jobctl.env, "COLUMNS": str(columns), "LINES": str(lines)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobctl", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    data = b""
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                data += chunk
            elif proc.poll() is not None:
                break
            if until is not None and not interrupted and data.count(until) >= 2:
                proc.send_signal(signal.SIGINT)
                interrupted = True
        else:
            raise AssertionError(f"jobctl {' '.join(args)} did not finish on the terminal:\n{data.decode()}")
        assert proc.wait(timeout=30) == 0, data.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return ANSI.sub("", data.decode()).replace("\r\n", "\n")


def check_table(text: str, columns: int, jobs: list[dict]) -> dict[int, str]:
    """Every line fits; every job has a row with its ID, a name and its whole STATUS. Returns the names."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    wide = [line for line in lines if len(line) > columns]
    assert not wide, f"lines wider than {columns}:\n" + "\n".join(wide)
    header = next(line for line in lines if line.startswith("ID"))
    assert header.split()[:3] == ["ID", "NAME", "STATUS"], header
    names = {}
    for job in jobs:
        row = next((line for line in lines if line.split()[:1] == [str(job["id"])]), None)
        assert row is not None, f"no row for job {job['id']} at {columns} columns:\n{text}"
        assert f"  {job['status']}" in row, f"STATUS of job {job['id']} cut at {columns} columns: {row!r}"
        names[job["id"]] = row.split()[1]
    return names


def launch_mixed_jobs(jobctl, tmp_path) -> list[dict]:
    sweep = write_job(tmp_path, "sweep", f"name: {SWEEP}\nsetup: exit 3\nrun: echo never\n")
    jobctl("launch", str(sweep), "--array", "3", check=True)
    small = write_job(tmp_path, "small", "run: exit 5\nresources: {memory: 64MiB, cpus: 0.5}\n")
    last = jobctl.launch(small)
    two = write_job(tmp_path, "two", "num_nodes: 2\nrun: echo $JOBCTL_NODE_RANK\n")
    jobctl.launch(two)
    jobctl.wait_state(last + 1, "COMPLETED", timeout=30)
    for job_id in range(1, last + 1):
        jobctl.wait_state(job_id, "FAILED", timeout=30)
    return json.loads(jobctl("status", "--json", check=True).stdout)


def test_status_keeps_id_name_and_status_at_every_width(jobctl, jobctl_inproc, tmp_path):
    jobs = launch_mixed_jobs(jobctl, tmp_path)
    sweep_ids = sorted(j["id"] for j in jobs if j["name"].startswith(SWEEP))
    assert {j["status"] for j in jobs} >= {"FAILED (setup failed)", "FAILED (exit 5)", "COMPLETED"}
    for columns in (80, 100, 120, 200):
        for how in ("terminal", "COLUMNS"):
            if how == "terminal":
                text = run_in_terminal(jobctl, "status", "--expand", columns=columns)  # every array task
            else:  # piped, with COLUMNS set: Rich honours it
                text = jobctl_inproc("status", "--expand", env={"COLUMNS": str(columns)}, check=True).stdout
            names = check_table(text, columns, jobs)
            sweep_names = [names[i] for i in sweep_ids]
            assert len(set(sweep_names)) == 3, f"array tasks look alike at {columns} columns: {sweep_names}"
            for index, name in enumerate(sweep_names):
                assert name.endswith(f"-{index}"), name
                if "…" in name:
                    head, tail = name.split("…")
                    assert SWEEP.startswith(head) and f"{SWEEP}-{index}".endswith(tail)
                else:
                    assert name == f"{SWEEP}-{index}"
    # a wide terminal shows every column and every name whole
    text = run_in_terminal(jobctl, "status", "--expand", columns=200)
    assert "END TIME" in text and "DURATION" in text and f"{SWEEP}-2" in text


def test_status_watch_fits_a_narrow_terminal(jobctl, tmp_path):
    jobs = launch_mixed_jobs(jobctl, tmp_path)
    text = run_in_terminal(jobctl, "status", "--watch", "--expand", columns=80, lines=24, until=b"COMPLETED")
    frames = text.split("User: ")
    assert len(frames) >= 3, text  # drawn, then redrawn in place at least once
    check_table("User: " + frames[-1], 80, jobs)


def test_status_shows_memory_readably(jobctl, jobctl_inproc, tmp_path):
    sizes = {"64MiB": "64MiMEM", "1536MiB": "1.5GiMEM", "4GiB": "4GiMEM", "1GiB": "1GiMEM"}
    ids = {}
    for size in sizes:
        job = write_job(tmp_path, f"m{size}", f"run: 'true'\nresources: {{memory: {size}, cpus: 0.1}}\n")
        ids[size] = jobctl.launch(job, "--dry-run") if False else None
        proc = jobctl_inproc("launch", str(job), "--dry-run", check=True)
        assert f"1x(0.1CPU, {sizes[size]})" in proc.stdout, proc.stdout
    job = write_job(tmp_path, "tiny", "run: 'true'\nresources: {memory: 64MiB}\n")
    job_id = jobctl.launch(job)
    table = jobctl("status", check=True).stdout
    assert "1x(1CPU, 64MiMEM)" in table
    assert jobctl.job(job_id)["resources"]["memory_gib"] == 0.062  # JSON keeps GiB as a number


def test_a_long_table_says_how_many_rows_it_leaves_out(jobctl, tmp_path):
    jobctl.config("capacity.cpus", "1")
    job = write_job(tmp_path, "many", "run: sleep 300\nresources: {cpus: 1}\n")
    jobctl("launch", str(job), "--array", "600", check=True)
    wait_until(
        lambda: '"ACTIVE"' in jobctl("status", "--state", "ACTIVE", "--json").stdout, timeout=30, what="one job to run"
    )
    running = json.loads(jobctl("status", "--state", "ACTIVE", "--json", check=True).stdout)[0]["id"]
    text = jobctl("status", "--expand", check=True).stdout  # every task of the array, not its summary row
    rows = [line for line in text.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) == 500
    assert any(line.split()[0] == str(running) for line in rows), "the running job must stay in view"
    assert "... and 100 more (100 PENDING): see --limit N, --state, --json" in text
    assert len(json.loads(jobctl("status", "--json", check=True).stdout)) == 600
    full = jobctl("status", "--expand", "--limit", "1000", check=True).stdout
    assert "more" not in full and len([l for l in full.splitlines() if l.split()[:1] and l.split()[0].isdigit()]) == 600


# -- names that can always be told apart and found -----------------------------------------------------


def test_a_number_is_refused_as_a_name(jobctl, jobctl_inproc, tmp_path, home):
    job = write_job(tmp_path, "plain", "run: echo hi\n")
    proc = jobctl_inproc("launch", str(job), "--name", "12")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == 'error: --name: a name cannot be a number ("12"); it would read as a job ID'
    numbered = write_job(tmp_path, "numbered", "name: 2024\nrun: echo hi\n")
    proc = jobctl_inproc("launch", str(numbered))
    assert proc.returncode == 2 and "numbered.yaml: name: a name cannot be a number" in proc.stderr
    assert "Traceback" not in proc.stderr and count_jobs(home) == 0
    # a file called 12.yaml gets a name that is not a number, and `status NAME` finds it
    job_id = jobctl.launch(write_job(tmp_path, "12", "run: echo hi\n"))
    assert jobctl.job(job_id)["name"] == "job-12"
    assert json.loads(jobctl("status", "job-12", "--json", check=True).stdout)[0]["id"] == job_id


def test_array_names_must_fit_the_name_limit_with_their_suffix(jobctl, jobctl_inproc, tmp_path, home):
    job = write_job(tmp_path, "plain", "run: echo hi\n")
    proc = jobctl_inproc("launch", str(job), "--name", "a" * 127, "--array", "10")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "up to 129 characters" in proc.stderr and "shorten it to 126 characters" in proc.stderr
    assert jobctl_inproc("launch", str(job), "--name", "a" * 127, "--array", "10", "--dry-run").returncode == 2
    assert count_jobs(home) == 0
    jobctl("launch", str(job), "--name", "a" * 126, "--array", "10", check=True)
    names = [j["name"] for j in json.loads(jobctl("status", "--json", check=True).stdout)]
    assert max(len(n) for n in names) == 128 and len(set(names)) == 10


# -- describe and the result line -----------------------------------------------------------------------


def test_describe_shows_everything_the_spec_sets(jobctl, jobctl_inproc, tmp_path):
    job = write_job(
        tmp_path,
        "full",
        "setup: echo preparing\nrun: exit 5\nretries: 1\ntimeout: 2h\n"
        "queue_timeout: 90s\nlabels: {team: vision, stage: dev}\n",
    )
    proc = jobctl("launch", str(job), "--wait")
    assert proc.returncode == 5
    # the result line does not repeat the reason: `FAILED (exit 5)`, not `FAILED (exit 5): exit 5`
    assert proc.stderr.strip().splitlines()[-1] == f"job {proc.stdout.split()[0]} (full): FAILED (exit 5)"
    text = jobctl_inproc("describe", "full", check=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if re.match(r"^[A-Z][a-z ]+:\s", line))
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["Retries"].startswith("1")
    assert fields["Timeout"] == "2h (7200s) per attempt"
    assert fields["Queue timeout"] == "1m 30s (90s)"
    assert fields["Labels"] == "stage=dev, team=vision"
    assert "\nSetup:\n  echo preparing\n" in text
    # times to the second, in the fields and in the timeline
    stamp = r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d[AP]M"
    assert re.fullmatch(stamp, fields["Submitted"]) and re.fullmatch(stamp, fields["Ended"])
    events = text.split("\nEvents:\n", 1)[1].splitlines()
    assert events and all(re.match(rf"  {stamp}  ", e) for e in events), events
    attempts = text.split("\nAttempts:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [a.split(":")[0].strip() for a in attempts] == ["1", "2"]
    # nothing set, nothing invented
    plain = jobctl.launch(write_job(tmp_path, "plain", "run: 'true'\n"), "--wait")
    text = jobctl_inproc("describe", str(plain), check=True).stdout
    assert "Setup:" not in text and re.search(r"^Timeout:\s+-$", text, re.M) and re.search(r"^Labels:\s+-$", text, re.M)
