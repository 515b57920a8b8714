"""What the engine's Slurm side needs from whoever calls it: the home's paths, its config and an
open store. The CLI's `Service` (jobctl/app/session.py) is one; the supervisor uses `StoreSession`."""

from __future__ import annotations

import json
from typing import Any, Protocol

from jobctl.home.config import Config
from jobctl.home.paths import Paths
from jobctl.store.database import Store
from jobctl.store.records import Job


class Session(Protocol):
    paths: Paths

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config: ...

    def spec_of(self, row: Job) -> dict[str, Any]: ...


class StoreSession:
    """A Session over a store that is already open (the supervisor's); the config is read once, lazily."""

    def __init__(self, paths: Paths, store: Store):
        self.paths = paths
        self._store = store
        self._config: Config | None = None

    @property
    def store(self) -> Store:
        return self._store

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = Config.load(self.paths.config_file)
        return self._config

    def spec_of(self, row: Job) -> dict[str, Any]:
        return dict(json.loads(self.store.spec_body(row.spec_id)))
