"""Which failures of the state's storage pass by themselves, and which need a person.

A full disk, an I/O error, or a database another process holds locked or busy passes (space is
freed, the other process finishes): the command fails with exit 1 and systemd starts it again. A
damaged database, one written by a newer release, or a STATE_DIR that cannot exist (exit 3 and 2)
does not, and a restart loop would only hide it.
"""

from __future__ import annotations

import errno
import sqlite3

from core.domain.errors import StateDirUnusableError, StateError, StateUnavailableError

# SQLite's primary result codes (the low byte of an extended code) that pass by themselves.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL = 5, 6, 7, 10, 13
_TRANSIENT_SQLITE = frozenset({SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL})
_TRANSIENT_TEXT = ("database or disk is full", "disk i/o error", "database is locked", "database table is locked",
                   "database is busy", "out of memory")
_TRANSIENT_ERRNO = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EAGAIN, errno.EBUSY,
                              errno.ENOMEM})
_UNUSABLE_DIR_ERRNO = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, StateUnavailableError):
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _TRANSIENT_SQLITE:
            return True
        return any(text in str(exc).lower() for text in _TRANSIENT_TEXT)
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNO
    return False


def state_failure(message: str, exc: BaseException) -> StateError:
    """The StateError for `exc`: StateUnavailableError when it passes by itself (see the module doc)."""
    if is_transient(exc):
        return StateUnavailableError(f"{message} (a passing failure of the storage: free space or wait, and "
                                     "the daemon starts again)")
    return StateError(message)


def state_dir_failure(state_dir: object, exc: OSError) -> StateError:
    """Creating or locking STATE_DIR failed: a bad setting (exit 2) unless the failure passes by itself."""
    if is_transient(exc):
        return state_failure(f"cannot use STATE_DIR={state_dir}: {exc.strerror or exc}", exc)
    if exc.errno in _UNUSABLE_DIR_ERRNO:
        return StateDirUnusableError(f"STATE_DIR={state_dir} cannot be used: {exc.strerror or exc} "
                                     f"({exc.filename or state_dir}); expected a directory this user can create "
                                     "and write, e.g. /var/lib/trading-daemon")
    return StateError(f"cannot use STATE_DIR={state_dir}: {exc}")
