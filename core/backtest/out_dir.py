"""The output directory of `backtest`, `sweep` and `download`, checked before any work is done.

A path that is a file, or under a file, or in a place this user cannot write, is one clear message at
once, not a failure after a long run. Nothing is created here: a run that stops on bad input leaves no
empty directory behind; the command creates the directory when it writes its first file.
"""

from __future__ import annotations

import os
from pathlib import Path


def out_dir_problem(path: Path, flag: str = "--out") -> str | None:
    """What is wrong with `path` as an output directory (existing, or to be created), or None."""
    if path.exists():
        if not path.is_dir():
            return f"{flag} {path}: is a file: expected a directory (created if absent)"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{flag} {path}: the directory is not writable by this user"
        return None
    ancestor = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not ancestor.is_dir():
        return f"{flag} {path}: cannot create the directory: {ancestor} is a file"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{flag} {path}: cannot create the directory: {ancestor} is not writable by this user"
    return None
