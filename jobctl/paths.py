"""Where things live (SPEC section 6).

Default paths come from platformdirs; `JOBCTL_HOME=DIR` puts every one of them under DIR, so tests
and users who want several isolated queues can have them. Folders are created owner-only (0700).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP = "jobctl"


@dataclass(frozen=True)
class Paths:
    data: Path  # the SQLite file lives here
    state: Path  # logs
    config: Path  # config.toml
    runtime: Path  # supervisor socket, lock, pid

    @property
    def db(self) -> Path:
        return self.data / "jobctl.db"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def config_file(self) -> Path:
        return self.config / "config.toml"

    @property
    def socket(self) -> Path:
        path = self.runtime / "supervisor.sock"
        if len(os.fsencode(path)) < 100:
            return path
        # AF_UNIX paths are limited to ~107 bytes: fall back to a private folder in /tmp.
        import hashlib

        digest = hashlib.sha1(os.fsencode(self.runtime)).hexdigest()[:16]
        return Path(f"/tmp/jobctl-{os.getuid()}") / f"{digest}.sock"

    @property
    def lock(self) -> Path:
        return self.runtime / "supervisor.lock"

    @property
    def supervisor_log(self) -> Path:
        return self.state / "supervisor.log"

    def job_dir(self, job_id: int) -> Path:
        return self.logs / str(job_id)

    def attempt_dir(self, job_id: int, attempt: int) -> Path:
        return self.logs / str(job_id) / str(attempt)

    def ensure(self) -> None:
        from jobctl.errors import StoreError

        for folder in (self.data, self.state, self.logs, self.config, self.runtime):
            try:
                make_private_dir(folder)
            except FileExistsError:
                raise StoreError(f"{folder}: exists and is not a folder") from None
            except OSError as exc:
                if folder.is_dir():
                    continue  # e.g. a read-only file system: reading may still work
                raise StoreError(f"{folder}: cannot create ({exc.strerror})") from None


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def resolve(env: dict[str, str] | None = None) -> Paths:
    env = os.environ if env is None else env
    home = env.get("JOBCTL_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(root / "data", root / "state", root, root / "run")
    import platformdirs

    dirs = platformdirs.PlatformDirs(APP, appauthor=False)
    runtime = Path(dirs.user_runtime_dir)
    return Paths(Path(dirs.user_data_dir), Path(dirs.user_state_dir), Path(dirs.user_config_dir), runtime)
