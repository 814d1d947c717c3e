"""structlog configuration: JSON lines for journald and files, readable console lines on a TTY.

Every event passes through `redact_secrets`, which replaces any configured secret value wherever
it appears in an event, as a last line of defence (nothing should log a key in the first place).
The same `redact` guards the state database (core/state/store.py): secrets are the keys given to
`configure_logging` plus every key an `AlpacaGateway` was built with (`register_secrets`), so a
process that holds a key redacts it even before, or without, configuring its logs.
"""

from __future__ import annotations

import logging
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


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _SECRETS and not _REGISTERED:
        return event_dict
    return {key: _scrub(value) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", *, json_output: bool | None = None, secrets: Iterable[str] = (),
                      stream: Any = None) -> None:
    _SECRETS[:] = [s for s in secrets if s]
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
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
