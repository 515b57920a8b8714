"""One exception family. The CLI maps every JobctlError to a one-line message and an exit code."""

from __future__ import annotations


class JobctlError(Exception):
    """Base of every error jobctl reports to a user. `exit_code` follows SPEC section 4."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(JobctlError):
    """Bad usage: a wrong option value, a selector that makes no sense (exit 2)."""

    exit_code = 2


class JobFileError(UsageError):
    """An invalid job file. The message names the file, the line and the key."""

    def __init__(self, path: str, line: int | None, key: str | None, problem: str):
        self.path, self.line, self.key, self.problem = path, line, key, problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class DoesNotFit(UsageError):
    """A request that can never fit the capacity of the backend (exit 2)."""


class NotFound(JobctlError):
    """An unknown job ID or name (exit 1)."""


class StateError(JobctlError):
    """A command that does not fit the job's state (exit 1)."""


class StoreError(JobctlError):
    """The database cannot be opened, is locked for too long, is full, or is from a newer jobctl."""


class BackendError(JobctlError):
    """A backend (local processes, Slurm) refused or failed an operation."""


class UnsafePath(JobctlError):
    """A jobctl folder or file that another user could change (SPEC section 14): refused (exit 1)."""
