"""Two ways to run the jobctl CLI against one home, with the same interface.

`Jobctl` starts a real `python -m jobctl` process per call: use it wherever processes matter (the
supervisor, runners, signals, crashes, terminals, exit by signal).

`InProcessJobctl` runs the same entry point, `jobctl.cli.main.main`, inside the test process, with
stdin/stdout/stderr and the environment swapped by `typer.testing.CliRunner.isolation`. It is for
calls where a process adds nothing (usage errors, --help, dry runs, config, completions, rendering
of what the database holds) and costs a fraction of an interpreter start.

Why `main()` and not `CliRunner().invoke(app, ...)`: `main()` is where errors become one line and
an exit code (Typer runs with standalone_mode=False there, so click's usage errors, JobctlError and
unexpected exceptions all reach it). `invoke(app)` bypasses it: a usage error prints click's
multi-line "Usage: ... Try ... Error:" box, and a JobctlError ends as an exception with exit 1. So
the in-process runner calls `main()` with `sys.argv` set, as the `jobctl` script does, and turns
SystemExit and uncaught exceptions into an exit status and stderr text the way the interpreter does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.waiting import wait_until


class Jobctl:
    """Runs the real CLI, one `python -m jobctl` process per call, against one home."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {**os.environ, "JOBCTL_HOME": str(home), "NO_COLOR": "1"}
        self.env.pop("JOBCTL_DEBUG", None)

    def __call__(
        self,
        *args: str,
        check: bool | None = None,
        timeout: float = 60,
        input: str | None = None,
        env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        proc = self.run(list(args), env={**self.env, **(env or {})}, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"jobctl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run(
        self, args: list[str], env: dict[str, str], timeout: float, input: str | None
    ) -> subprocess.CompletedProcess:
        """One CLI call with exactly this environment; (exit status, stdout, stderr)."""
        return subprocess.run(
            [sys.executable, "-m", "jobctl", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            input=input,
        )

    def launch(self, path: Path | str, *args: str) -> int:
        proc = self("launch", str(path), *args, check=True)
        return int(proc.stdout.split()[0])

    def job(self, job_id: int | str) -> dict[str, Any]:
        proc = self("describe", str(job_id), "--json", check=True)
        return json.loads(proc.stdout)

    def state(self, job_id: int | str) -> str:
        return self.job(job_id)["state"]

    def wait_state(self, job_id: int | str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        return wait_until(
            lambda: (j := self.job(job_id))["state"] in states and j, timeout, f"job {job_id} to reach {states}"
        )

    def config(self, key: str, value: str) -> None:
        self("config", "set", key, value, check=True)


class InProcessJobctl(Jobctl):
    """The CLI's entry point run inside this process (see the module docstring for when to use it).

    Only for commands that start no process: a `launch` of a job that gets recorded, `wait`,
    `logs -f` or `supervisor start` belong to `Jobctl`. `timeout` is enforced with SIGALRM and
    raises subprocess.TimeoutExpired, as for a child process.
    """

    def run(
        self, args: list[str], env: dict[str, str], timeout: float, input: str | None
    ) -> subprocess.CompletedProcess:
        from typer.testing import CliRunner

        from jobctl.cli.main import main
        from jobctl.home import paths

        # the environment of the call is exactly `env`, as for a child process: unset what it lacks
        overrides: dict[str, str | None] = {key: None for key in os.environ if key not in env}
        overrides.update(env)
        saved_argv, saved_caller_umask, saved_hook = sys.argv, paths.CALLER_UMASK, sys.excepthook
        saved_umask = os.umask(0o077)  # main() sets the umask of the process: put this one's back after
        os.umask(saved_umask)
        runner = CliRunner()
        with runner.isolation(input=input, env=overrides) as (out, err, _):
            # isolation() fixes click's help width at 80; a child process with a pipe for stdout gets
            # the terminal-size fallback instead (80 columns, so text wrapped at 78): use that
            sys.modules[type(runner).isolation.__module__].formatting.FORCED_WIDTH = None
            sys.argv = ["jobctl", *args]
            saved_alarm = signal.signal(signal.SIGALRM, _time_out)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = _exit_status(exc)
            except _CallTimedOut:
                raise subprocess.TimeoutExpired(["jobctl", *args], timeout) from None
            except BaseException:  # the interpreter hands an uncaught exception to sys.excepthook, then exits 1
                sys.excepthook(*sys.exc_info())
                code = 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, saved_alarm)
                sys.argv, sys.excepthook = saved_argv, saved_hook  # Typer installs its own hook
                os.umask(saved_umask)
                paths.CALLER_UMASK = saved_caller_umask
                sys.stdout.flush()
                sys.stderr.flush()
            stdout = out.getvalue().decode("utf-8", errors="replace")
            stderr = err.getvalue().decode("utf-8", errors="replace")
        return subprocess.CompletedProcess(["jobctl", *args], code, stdout, stderr)


class _CallTimedOut(BaseException):
    """Raised in the test process when an in-process call outlives its timeout (a BaseException, so
    that the CLI's own `except Exception` does not turn it into an error message)."""


def _time_out(signum: int, frame: object) -> None:
    raise _CallTimedOut


def _exit_status(exc: SystemExit) -> int:
    """The status a process exiting with this SystemExit would have (a message is printed, exit 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1
