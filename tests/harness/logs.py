"""The daemon's structlog events, as a test reads them: JSON lines written to a buffer
(`json_log`), or the dicts `structlog.testing.capture_logs()` collects."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from core.runtime.logging_setup import configure_logging


@contextmanager
def json_log(level: str = "INFO") -> Iterator[io.StringIO]:
    """The daemon's logging configured as in production (JSON lines), into a buffer; reset afterwards."""
    buffer = io.StringIO()
    configure_logging(level, json_output=True, stream=buffer)
    try:
        yield buffer
    finally:
        reset_logging()


def reset_logging() -> None:
    """Forget a test's logging configuration (its stream, which pytest closes, and its secrets)."""
    configure_logging("INFO", stream=sys.stderr)
    structlog.reset_defaults()


def events(source: io.StringIO | Iterable[dict[str, Any]], name: str | None = None) -> list[dict[str, Any]]:
    """The events called `name` (all if None), in order, from a JSON-lines buffer or captured dicts."""
    if isinstance(source, io.StringIO):
        source = [json.loads(line) for line in source.getvalue().splitlines() if line.startswith("{")]
    return [e for e in source if name is None or e.get("event") == name]
