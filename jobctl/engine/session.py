"""A `Session` (jobctl/backends/base.py) over an open store, for the supervisor; the CLI's is
`Service` (jobctl/app/session.py)."""

from __future__ import annotations

import json
from typing import Any

from jobctl.backends.base import Session
from jobctl.home.config import Config
from jobctl.home.paths import Paths
from jobctl.store.database import Store
from jobctl.store.records import Job

__all__ = ["Session", "StoreSession"]


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
