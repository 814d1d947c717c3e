"""structlog configuration: JSON lines for journald and files, readable console lines on a TTY.

Every event passes through `redact_secrets`, which replaces any configured secret value wherever
it appears in an event, as a last line of defence (nothing should log a key in the first place).
The same `redact` guards the state database (core/state/database.py): secrets are the keys given to
`configure_logging` plus every key an `AlpacaGateway` was built with (`register_secrets`), so a
process that holds a key redacts it even before, or without, configuring its logs.

Under systemd, when the log stream is the journal (`$JOURNAL_STREAM` names its device and inode),
each line starts with its syslog priority, `<3>` error ... `<7>` debug: journald strips the prefix
and files the line at that priority, so `journalctl -p warning` shows exactly the warnings.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_SECRETS: list[str] = []
_REGISTERED: list[str] = []  # keys in use by this process (AlpacaGateway), kept across configure_logging
REDACTED = "***"
# A message cut to a length (an error text stored truncated) can end in the first characters of a
# key; a tail of at least this many characters that starts a key is redacted too.
MIN_REDACTED_TAIL = 4


def register_secrets(values: Iterable[str]) -> None:
    """Add secrets to redact everywhere in this process (logs and the state database), for good."""
    for value in values:
        if value and value not in _REGISTERED:
            _REGISTERED.append(value)


def _secrets() -> list[str]:
    return [*_SECRETS, *(s for s in _REGISTERED if s not in _SECRETS)]


def redact(text: str) -> str:
    """`text` with every secret (and a truncated key at its end) replaced by `***`."""
    secrets = _secrets()
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), MIN_REDACTED_TAIL - 1, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + REDACTED
                break
    return text


def redact_nested(value: Any) -> Any:
    """`redact` every string in `value`, inside dicts, lists and tuples too."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_nested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_nested(v) for v in value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _SECRETS and not _REGISTERED:
        return event_dict
    return {key: redact_nested(value) for key, value in event_dict.items()}


# syslog(3) priorities of structlog's method names.
SYSLOG_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7,
                   "msg": 6}


def writes_to_journal(stream: Any, environ: Any = None) -> bool:
    """True if `stream` is the journal stream systemd connected ($JOURNAL_STREAM is "device:inode")."""
    raw = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in raw.split(":", 1))
        info = os.fstat(stream.fileno())
    except (ValueError, TypeError, AttributeError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class SyslogPrefix:
    """Wraps a renderer: each rendered line gets its `<priority>` prefix for journald."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        priority = SYSLOG_PRIORITY.get(method_name, SYSLOG_PRIORITY.get(str(event_dict.get("level", "")), 6))
        return f"<{priority}>{self._renderer(logger, method_name, event_dict)}"


class JournalErrorStream:
    """stderr for the journal: a line printed without a priority (the CLI's `trading-daemon: ...`
    refusals and errors) is filed as an error (`<3>`); lines that carry one keep it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._at_line_start = True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self._at_line_start and not (len(piece) > 2 and piece[0] == "<" and piece[1].isdigit()
                                            and piece[2] == ">"):
                out.append("<3>")
            out.append(piece)
            self._at_line_start = piece.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure_logging(level: str = "INFO", *, json_output: bool | None = None, secrets: Iterable[str] = (),
                      stream: Any = None) -> None:
    _SECRETS[:] = [s for s in secrets if s]
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    if writes_to_journal(stream):
        renderer = SyslogPrefix(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
