"""Issue: hostile input and hostile environments, through the real CLI. Always one line, never a traceback.

Refused files and selectors run the CLI's entry point in-process (`jobctl_inproc`, with the same
timeouts); full and read-only disks run real processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from helpers import InProcessJobctl, Jobctl, count_jobs, write_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def assert_clean_refusal(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\xff\xfe binary garbage \x00",
        b"run: caf\xe9\n",  # latin-1, not UTF-8
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        b"g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nrun: x\n",
        b"run: x\n" + b"[" * 5000 + b"]" * 5000 + b"\n",
        b"run: x\nresources:\n  cpus: -4\n",
        b"run: x\nresources:\n  memory: 99999999999999999999999999TiB\n",
        b"run: x\nnum_nodes: 1e400\n",
        b"? [a, b]\n: c\nrun: x\n",
        b"1: 2\nrun: x\n",
        b"run: !!python/object/apply:os.system ['touch /tmp/jobctl-pwned']\n",
        b"- just\n- a list\n",
        b"",
    ],
)
def test_hostile_job_files_are_refused_cleanly(jobctl_inproc, home, content):
    path = home / "hostile.yaml"
    path.write_bytes(content)
    proc = jobctl_inproc("launch", str(path), timeout=30)
    assert_clean_refusal(proc)
    assert str(path) in proc.stderr
    assert count_jobs(home) == 0
    assert not Path("/tmp/jobctl-pwned").exists()


def test_a_50_mb_file_is_refused_quickly(jobctl_inproc, home):
    path = home / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(b"run: x\n")
        handle.write(b"# padding\n" * 5_000_000)
    started = time.monotonic()
    proc = jobctl_inproc("launch", str(path))
    assert time.monotonic() - started < 10
    assert_clean_refusal(proc)
    assert "MiB" in proc.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_cli(jobctl_inproc, home, blob):
    path = home / "fuzz.yaml"
    path.write_bytes(blob)
    proc = jobctl_inproc("launch", "--dry-run", str(path), timeout=30)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1
    assert count_jobs(home) == 0


@pytest.mark.parametrize("selector", ["$(touch /tmp/jobctl-pwned)", "`id`", "a;b", "; rm -rf /", "../../etc/passwd"])
def test_odd_selectors_are_unknown_jobs(jobctl_inproc, selector):
    proc = jobctl_inproc("describe", selector)
    assert_clean_refusal(proc, code=1)
    assert not Path("/tmp/jobctl-pwned").exists()


def test_a_missing_home_is_created(tmp_path):
    home = tmp_path / "does" / "not" / "exist"
    jobctl = InProcessJobctl(home)
    proc = jobctl("status", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert (home / "data" / "jobctl.db").exists()


def test_a_home_that_is_a_file_is_a_clear_error(tmp_path):
    home = tmp_path / "file"
    home.write_text("not a folder")
    proc = InProcessJobctl(home)("status")
    assert_clean_refusal(proc, code=1)
    assert proc.stderr.strip() == (
        f"error: {home}: exists and is not a folder (JOBCTL_HOME and its folders must be folders)"
    )


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, "2m"):
        pytest.skip("needs root and tmpfs mounts to simulate a full or read-only disk")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_gives_a_clear_message_and_loses_nothing(small_disk):
    jobctl = Jobctl(small_disk / "home")
    job = write_job(small_disk, "j", "run: 'true'\n")
    job_id = jobctl.launch(job, "--wait")
    jobctl("supervisor", "stop", check=True)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(small_disk / "filler", "wb") as handle:
        try:
            handle.write(b"\0" * free)
        except OSError:
            pass
    proc = jobctl("launch", str(job), "--array", "50")
    assert_clean_refusal(proc, code=1)
    assert "disk is full" in proc.stderr
    (small_disk / "filler").unlink()
    assert jobctl.state(job_id) == "COMPLETED"
    rows = json.loads(jobctl("status", "--all", "--json", check=True).stdout)
    assert [r["id"] for r in rows] == [job_id]
    with sqlite3.connect(small_disk / "home" / "data" / "jobctl.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_read_only_home_still_shows_status_and_refuses_writes(small_disk):
    jobctl = Jobctl(small_disk / "home")
    job = write_job(small_disk, "j", "run: 'true'\n")
    job_id = jobctl.launch(job, "--wait")
    jobctl("supervisor", "stop", check=True)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if remount.returncode != 0:
        pytest.skip("cannot remount read-only here")
    try:
        assert jobctl.state(job_id) == "COMPLETED"
        proc = jobctl("launch", str(job))
        assert_clean_refusal(proc, code=1)
        assert "read-only" in proc.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], capture_output=True)
