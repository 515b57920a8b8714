"""Secret values of a job: where they live while the job is not finished (SPEC section 14).

Values of `--env NAME`, `--env-file`, envs declared null and `secrets:` are never written to the
database, `specs.body` or `plan.json`. `launch` writes them, one JSON object per job file of the
launch (an array shares one), to `<data>/secrets/<token>.json` (0600, in a 0700 folder), and the
job's row keeps only their names and the token. The runner reads the file when an attempt starts
and passes the values to the workers in their environment. The file is removed once no job that
uses it is unfinished: the supervisor looks at every pass (and `launch` too), both inside their
write transaction, so a launch's file is never taken for an orphan before its jobs are committed.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobctl.home.paths import Paths, make_private_dir

if TYPE_CHECKING:
    from jobctl.store.database import Store
from jobctl.store.records import loads


def folder(paths: Paths) -> Path:
    return paths.data / "secrets"


def write(paths: Paths, values: dict[str, str]) -> str:
    """A new secrets file; returns its token (the file's name)."""
    from jobctl.home.statefiles import write_private

    make_private_dir(folder(paths))
    token = _random.token_hex(16)
    write_private(folder(paths) / f"{token}.json", json.dumps(values))
    return token


def path_of(paths: Paths, envs: str | dict[str, Any] | None) -> Path | None:
    """The secrets file of a job, from its `envs` column (None when it has no secrets)."""
    data = loads(envs, {}) if isinstance(envs, (str, type(None))) else envs
    token = data.get("secrets") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token.isalnum():
        return None
    return folder(paths) / f"{token}.json"


def read(paths: Paths, envs: str | None) -> dict[str, str]:
    """The secret values of a job; {} when it has none. Raises FileNotFoundError when its file was removed."""
    from jobctl.home.statefiles import read_json

    path = path_of(paths, envs)
    if path is None:
        return {}
    values = read_json(path)
    if values is None:
        raise FileNotFoundError(path)
    return {str(k): str(v) for k, v in values.items()}


def remove(paths: Paths, token: str) -> None:
    try:
        os.unlink(folder(paths) / f"{token}.json")
    except FileNotFoundError:
        pass


class Sweeper:
    """Removes the secrets files no unfinished job uses. Call inside a write transaction.

    Cheap when no file exists (one scandir); else one pass over the unfinished jobs (an index), as
    the supervisor's tick already makes to count them.
    """

    def __init__(self, paths: Paths):
        self.paths = paths

    def sweep(self, store: Store) -> None:
        try:
            names = [e.name for e in os.scandir(folder(self.paths)) if e.name.endswith(".json")]
        except FileNotFoundError:
            return
        if not names:
            return
        live = set()
        for envs in store.live_secret_envs():
            path = path_of(self.paths, envs)
            if path is not None:
                live.add(path.name)
        for name in names:
            if name not in live:
                remove(self.paths, name.removesuffix(".json"))
