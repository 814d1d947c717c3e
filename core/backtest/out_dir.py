"""The output directory of `backtest`, `sweep` and `download`, checked before any work is done.

Each command creates its `--out` directory now, with its parents, so that a path that is a file, or a
place it cannot write, is one clear message at once, not a failure after a long run.
"""

from __future__ import annotations

import os
from pathlib import Path


def out_dir_problem(path: Path, flag: str = "--out") -> str | None:
    """Create `path` (and its parents) if absent; what is wrong with it as an output directory, or None."""
    if path.exists() and not path.is_dir():
        return f"{flag} {path}: is a file: expected a directory (created if absent)"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{flag} {path}: cannot create the directory: {exc.strerror or exc}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{flag} {path}: the directory is not writable by this user"
    return None
