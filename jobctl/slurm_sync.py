"""Placeholder until the Slurm backend lands: every call says so in one line."""

from __future__ import annotations

from jobctl.errors import BackendError


def _missing(*_args, **_kwargs):
    raise BackendError("the slurm backend is not available in this build")


submit = refresh = backend_for = _missing
