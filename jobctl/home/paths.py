"""Where things live (SPEC section 6).

Default paths come from platformdirs; `JOBCTL_HOME=DIR` puts every one of them under DIR, so tests
and users who want several isolated queues can have them. Folders are created owner-only (0700).

A home only its owner controls (SPEC section 14): every folder jobctl uses, and the files it keeps
at their top, must be what they claim (a folder, not a symlink to one), owned by the caller (or by
root, see `trusted_owners`) and not writable by group or others. Anything else is refused with one
line before a byte is read from it: whoever can change those folders could run code as their owner.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

APP = "jobctl"
CALLER_UMASK: int | None = None  # the umask jobctl was started with (it then works under 077); jobs get it


class Paths(NamedTuple):
    """Where a home keeps its database, logs, settings and supervisor files."""

    data: Path  # the SQLite file lives here
    state: Path  # logs
    config: Path  # config.toml
    runtime: Path  # supervisor socket, lock, pid
    shared: bool = False  # a home of a shared queue (SPEC section 12): root's supervisor owns it

    @property
    def shared_marker(self) -> Path:
        """The file that makes a home shared: readable by everyone, written by root (see jobctl/supervisor/shared.py)."""
        return self.runtime / "shared.json"

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
        return fallback_socket_dir() / f"{digest}.sock"

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

    def folders(self) -> tuple[Path, ...]:
        """Every folder jobctl reads or writes, outermost first (the runtime folder's parent too:
        platformdirs may put it in /tmp, where anyone can create it first)."""
        seen: list[Path] = []
        for folder in (self.config, self.data, self.state, self.logs, self.runtime.parent, self.runtime):
            if folder not in seen:
                seen.append(folder)
        return tuple(seen)

    def files(self) -> tuple[Path, ...]:
        db = self.db
        return (
            self.config_file,
            db,
            db.with_name(db.name + "-wal"),
            db.with_name(db.name + "-shm"),
            self.lock,
            self.supervisor_log,
        )

    def check(self) -> None:
        """Refuse (UnsafePath, one line) a folder or file that someone else could change; missing ones pass."""
        if self.shared and os.getuid() != 0:  # a user of a shared home reaches only its top and its socket folder
            for folder in (self.config, self.runtime):
                check_private(folder, folder=True)
            check_private(self.shared_marker, folder=False)
            return
        for folder in self.folders():
            check_private(folder, folder=True)
        for file in self.files():
            check_private(file, folder=False)
        fallback = fallback_socket_dir()
        if self.socket.parent == fallback:
            check_private(fallback, folder=True, private=True)

    def ensure(self) -> None:
        from jobctl.errors import StoreError

        self.check()  # before creating anything inside a folder someone else controls
        for folder in (self.data, self.state, self.logs, self.config, self.runtime):
            try:
                make_private_dir(folder)
            except FileExistsError:
                raise StoreError(f"{folder}: exists and is not a folder") from None
            except OSError as exc:
                if folder.is_dir():
                    continue  # e.g. a read-only file system: reading may still work
                raise StoreError(f"{folder}: cannot create ({exc.strerror})") from None
        self.check()


def trusted_owners() -> set[int]:
    """The users who may own jobctl's folders: the caller, and root (who can act as the caller
    anyway; the shared mode of SPEC section 12 keeps its home root-owned)."""
    return {os.getuid(), 0}


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_private(path: Path, *, folder: bool, private: bool = False) -> bool:
    """Raise UnsafePath when `path` exists and another user could change it; False when it is missing.

    `private`: a folder only its owner may even read (0700), such as the socket folder in /tmp.
    """
    import stat

    from jobctl.errors import UnsafePath

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UnsafePath(f"{path}: cannot check it ({exc.strerror}); jobctl uses only folders it can check") from None
    hint = "jobctl refuses folders and files another user could change (see README: Security)"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path}: is a symbolic link where a {'folder' if folder else 'file'} was expected; {hint}")
    if folder and not stat.S_ISDIR(st.st_mode):  # a mistake more often than an attack: say only what it is
        raise UnsafePath(f"{path}: exists and is not a folder (JOBCTL_HOME and its folders must be folders)")
    if not folder and not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{path}: is not a regular file (jobctl keeps its state in regular files there)")
    if st.st_uid not in trusted_owners():
        raise UnsafePath(f"{path}: owned by {_owner_name(st.st_uid)}, not by you; {hint}")
    if st.st_mode & (0o077 if private else 0o022):
        mode = stat.filemode(st.st_mode)
        raise UnsafePath(
            f"{path}: {'is not private' if private else 'writable by group or others'} ({mode}); "
            f"run `chmod {'700' if private else 'go-w'} {path}` if that is right; {hint}"
        )
    return True


def fallback_socket_dir() -> Path:
    """Where the socket goes when its path is too long for AF_UNIX: a private folder in /tmp."""
    return Path(f"/tmp/jobctl-{os.getuid()}")


def make_private_dir(path: Path) -> None:
    """Create a 0700 folder (and its missing parents), then check it is the caller's own."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private(path, folder=True, private=path == fallback_socket_dir())


def resolve(env: Mapping[str, str] | None = None) -> Paths:
    env = os.environ if env is None else env
    home = env.get("JOBCTL_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        shared = os.path.exists(root / "run" / "shared.json")  # one stat: the home of a shared queue
        paths = Paths(root / "data", root / "state", root, root / "run", shared)
        paths.check()
        return paths
    import platformdirs

    dirs = platformdirs.PlatformDirs(APP, appauthor=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        runtime = Path(dirs.user_runtime_dir)
    paths = Paths(Path(dirs.user_data_dir), Path(dirs.user_state_dir), Path(dirs.user_config_dir), runtime)
    paths.check()
    return paths
