"""One trading-daemon per state directory.

Two daemons on one state database would both reconcile, both decide and both submit: duplicate
orders. `StateDirLock` takes an exclusive, non-blocking OS lock (flock via `filelock`) on
`STATE_DIR/trading-daemon.lock` for the life of the process.

Why these choices:
- A kernel lock, not a marker file: it is released when the process dies, even by `kill -9` or
  the systemd watchdog's SIGABRT, so a crash never leaves a stale lock that blocks the restart.
  For the same reason we refuse filelock's silent fallback to a marker file where `flock` is not
  supported (some network filesystems): better an error than a lock that outlives its holder.
- Non-blocking: a second instance must fail now with a clear message, not queue behind the first
  and start trading the moment the first one stops.
- The lock file is never deleted; unlinking a flock'ed path lets a third process lock a new inode
  while the second still holds the old one.
- `trading-daemon.pid` next to it holds the holder's pid, only for operators (`cat`, `kill`); the
  lock file is what counts. Both are 0600, like every other state file.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from core.domain.errors import StateError
from core.state.failures import state_dir_failure, state_failure

LOCK_FILE_NAME = "trading-daemon.lock"
PID_FILE_NAME = "trading-daemon.pid"
FILE_MODE = 0o600


def _filelock_options() -> dict[str, Any]:
    """Options for `FileLock`, keeping only those this filelock version knows (pyproject allows >=3.13)."""
    wanted: dict[str, Any] = {
        "mode": FILE_MODE,
        "thread_local": False,  # a signal handler or another thread may end the process; one lock per process
        "fallback_to_soft": False,  # see module docstring: never a lock that survives its holder
        "preserve_lock_file": True,
    }
    accepted = inspect.signature(FileLock.__init__).parameters
    return {name: value for name, value in wanted.items() if name in accepted}


def _dir_display(path: Path) -> str:
    """`var` -> `var/`: the way the operator wrote STATE_DIR, and obviously a directory."""
    return os.path.join(str(path), "")


class StateDirLock:
    """Exclusive lock on a state directory. Use as a context manager, or `acquire()`/`release()`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.lock_path = self.state_dir / LOCK_FILE_NAME
        self.pid_path = self.state_dir / PID_FILE_NAME
        self._lock: FileLock | None = None

    @property
    def is_held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def holder_pid(self) -> int | None:
        """The pid recorded by the current (or last) holder, if the pid file is readable."""
        try:
            return int(self.pid_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def acquire(self) -> StateDirLock:
        if self.is_held:
            return self
        # 0700: the state directory holds the order book; nobody else needs to list it.
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise state_dir_failure(_dir_display(self.state_dir), exc) from None
        lock = FileLock(str(self.lock_path), **_filelock_options())
        try:
            lock.acquire(timeout=0)
        except Timeout:
            pid = self.holder_pid()
            held_by = f", pid {pid}" if pid is not None else ""
            raise StateError(
                f"another trading-daemon is already running with STATE_DIR={_dir_display(self.state_dir)} "
                f"(lock file {self.lock_path}{held_by}); stop it first, or give this one its own STATE_DIR"
            ) from None
        except OSError as exc:
            raise state_failure(f"cannot lock STATE_DIR={_dir_display(self.state_dir)} "
                                f"(lock file {self.lock_path}): {exc}", exc) from None
        self._lock = lock
        try:
            # filelock applies `mode` only when it creates the file; an older file keeps its bits.
            if self.lock_path.stat().st_mode & 0o777 != FILE_MODE:
                os.chmod(self.lock_path, FILE_MODE)
            self._write_pid_file()
        except OSError as exc:
            self.release()
            raise state_failure(f"cannot write {self.pid_path}: {exc}", exc) from None
        return self

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            # Only our own pid: never remove what a newer holder wrote.
            if self.holder_pid() == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.pid_path.unlink()
        finally:
            lock.release(force=True)

    def _write_pid_file(self) -> None:
        # Temp file + rename so an operator never reads an empty or half-written pid.
        tmp = self.pid_path.with_name(f".{PID_FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is filtered by the umask and ignored for an old file
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, self.pid_path)

    def __enter__(self) -> StateDirLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StateDirLock({str(self.state_dir)!r}, held={self.is_held})"
