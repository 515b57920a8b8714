"""How jobs are shown: `logs` as bytes, the status table at any width, names, describe, RESOURCES.

Everything runs the real CLI against a private home; the table is read through a real pseudo-terminal
so that Rich sees a terminal of the given size, as a user's shell would give it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_until, write_job


def run_bytes(jobctl, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI with stdout kept as bytes (text mode would turn `\\r` into newlines)."""
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, env=jobctl.env,
                          timeout=timeout)


def log_path(jobctl, job_id: int, rank: int = 0, attempt: int = 1) -> Path:
    return jobctl.home / "state" / "logs" / str(job_id) / str(attempt) / f"rank{rank}.log"


# -- logs: the bytes, in bounded memory ------------------------------------------------------------

def test_logs_print_the_bytes_the_job_wrote(jobctl, tmp_path):
    job = write_job(tmp_path, "bytes", "run: |\n  printf 'a\\rb\\r\\n'\n  printf '\\xff\\xfe'\n"
                                       "  head -c 3000000 /dev/urandom\n  printf 'tail-without-newline'\n")
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
    job = write_job(tmp_path, "progress", f"run: |\n  printf '10%%\\r'\n  while [ ! -e {gate} ]; do sleep 0.05; done\n"
                                          "  printf '100%%\\r\\n\\xff'\n")
    job_id = jobctl.launch(job)
    follower = subprocess.Popen([sys.executable, "-m", "jobctl", "logs", str(job_id), "-f"], env=jobctl.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    probe = ("import resource, subprocess, sys\n"
             "for args in (['logs', sys.argv[1]], ['logs', sys.argv[1], '-f'], ['logs', sys.argv[1], '--tail', '5']):\n"
             "    subprocess.run([sys.executable, '-m', 'jobctl', *args], stdout=subprocess.DEVNULL, check=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(job_id)], capture_output=True, text=True, env=jobctl.env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    peak_mib = int(proc.stdout) / 1024
    assert peak_mib < 100, f"jobctl logs of a 120 MiB log peaked at {peak_mib:.0f} MiB"
