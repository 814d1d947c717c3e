"""Progress for long research work (download, sweep): a rich bar on a terminal, plain lines when
the output is not a terminal (CI, a pipe, a log file)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_reporter(total: int, label: str, stream: Any = None, *, lines: int = 50) -> Iterator[Callable[[str], None]]:
    """Yields `step(description)`, called once per finished unit of work. Without a terminal, at most
    about `lines` plain lines are printed (and always the last one)."""
    stream = stream or sys.stderr
    if total and stream.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), console=Console(file=stream), transient=True) as bar:
            task = bar.add_task("", total=total)
            yield lambda text: bar.update(task, advance=1, description=text)
        return
    done = 0
    every = max(1, total // max(lines, 1))

    def step(text: str) -> None:
        nonlocal done
        done += 1
        if done % every == 0 or done == total:
            print(f"{label}: {done}/{total} {text}", file=stream, flush=True)

    yield step
