"""Atomic, private file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never half of either, even after a crash mid-write.
Files are created 0600: state is nobody else's business.

A process killed between creating its temp file and the rename leaves the temp file behind
(`.candidates.json.k3j9x_2a.tmp`, say). Each successful write removes such leftovers of earlier
writes of the same file, safely: only names of exactly this writer's pattern for this file, only
regular files (never a link or a directory), only ones untouched for STALE_TEMP_SECONDS (a write
takes milliseconds, so an hour-old temp file belongs to no live writer), and never the file itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path

STALE_TEMP_SECONDS = 3600.0
TEMP_SUFFIX = ".tmp"
# tempfile.mkstemp puts 8 characters from this alphabet between prefix and suffix.
_RANDOM_PART = r"[a-z0-9_]{8}"


def open_temp_file(path: Path) -> tuple[int, str]:
    """A new private temp file next to `path` (fd, name), named `.{name}.XXXXXXXX.tmp`."""
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = open_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    remove_stale_temp_files(path)


def remove_stale_temp_files(path: Path, *, older_than_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete what killed writers of `path` left behind (see the module docstring); returns them.

    Best effort: a file that vanishes or cannot be removed is skipped, never an error for the write.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM_PART}{re.escape(TEMP_SUFFIX)}")
    cutoff = time.time() - older_than_s
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if name == path.name or not pattern.fullmatch(name):
            continue
        candidate = path.parent / name
        try:
            info = candidate.lstat()  # lstat: a symlink is judged as the link, and never followed
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                continue
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed
