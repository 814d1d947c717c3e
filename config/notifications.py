"""Parsing and validating the notification settings: `NOTIFY_URLS` and `NOTIFY_EVENTS`.

`NOTIFY_URLS` holds one or more apprise URLs separated by spaces or commas (apprise's own rule,
so a comma inside a `mailto://...?to=a,b` query stays inside its URL). Each URL is checked with
apprise when the configuration is loaded, so a typo stops every command with exit 2 instead of
surfacing months later as a silently lost message. The URLs carry tokens and passwords, so they
are secrets: an error names the entry's position and scheme, never the URL itself, and
`notify_url_secrets()` gives the fragments that log redaction must hide.
"""

from __future__ import annotations

import re

NOTIFY_EVENT_NAMES: tuple[str, ...] = (
    "order_filled", "position_exited", "halt_tripped", "halt_cleared", "startup_refused",
    "started", "stopped", "fatal", "daily_summary", "exit_blocked",
)
ALL_EVENTS = "all"
EXAMPLE_URLS = "e.g. json://127.0.0.1:8080/, ntfy://my-topic, tgram://BOT_TOKEN/CHAT_ID, mailto://user:pass@host"
# Path segments and query values at least this long are treated as tokens for redaction. Shorter
# ones (a chat id, "POST") would make redaction replace ordinary words in every log line.
MIN_SECRET_FRAGMENT = 8


def parse_notify_events(raw: str) -> tuple[str, ...]:
    """`all` or a comma/space separated list of event names -> the names, in canonical order."""
    names = [name.strip().lower() for name in re.split(r"[,\s]+", raw) if name.strip()]
    if not names:
        raise ValueError(f"expected '{ALL_EVENTS}' or a comma-separated list of: {', '.join(NOTIFY_EVENT_NAMES)}")
    if ALL_EVENTS in names:
        if len(names) > 1:
            raise ValueError(f"'{ALL_EVENTS}' cannot be combined with other names")
        return NOTIFY_EVENT_NAMES
    unknown = [name for name in names if name not in NOTIFY_EVENT_NAMES]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}: expected '{ALL_EVENTS}' or some of "
                         f"{', '.join(NOTIFY_EVENT_NAMES)}")
    return tuple(name for name in NOTIFY_EVENT_NAMES if name in names)


def split_notify_urls(raw: str) -> list[str]:
    from apprise.utils.parse import parse_urls

    return [str(url) for url in parse_urls(raw) if str(url).strip()]


def _scheme(url: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else ""


def validate_notify_urls(raw: str) -> list[str]:
    """Every URL in `raw`, each accepted by apprise; ValueError naming the first bad entry otherwise.

    The message never quotes the URL (it may hold a token): it gives the entry's number and scheme.
    """
    from apprise import Apprise
    from apprise.manager_plugins import NotificationManager

    urls = split_notify_urls(raw)
    if not urls:
        raise ValueError(f"expected one or more apprise URLs ({EXAMPLE_URLS}), or nothing to switch "
                         "notifications off")
    known = NotificationManager()
    for number, url in enumerate(urls, start=1):
        scheme = _scheme(url)
        where = f"entry {number} of {len(urls)}"
        if not scheme:
            raise ValueError(f"{where} is not a URL (no scheme://): expected an apprise URL, {EXAMPLE_URLS}")
        if scheme not in known:
            raise ValueError(f"{where} has the unknown scheme '{scheme}://': expected an apprise URL, {EXAMPLE_URLS}")
        if Apprise.instantiate(url) is None:
            raise ValueError(f"{where} ('{scheme}://...') is not a valid {scheme}:// URL: check it against "
                             f"apprise's documentation for {scheme}://")
    return urls


def notify_url_secrets(raw: str) -> list[str]:
    """Fragments of the URLs that must never be logged: each whole URL, user, password, and every
    path segment or query value long enough to be a token."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    secrets: list[str] = []
    for url in split_notify_urls(raw):
        secrets.append(url)
        try:
            parts = urlsplit(url)
            candidates = [parts.username or "", parts.password or ""]
        except ValueError:
            continue
        # The "host" of many schemes is a token (tgram://BOT:TOKEN/..., ntfy://TOPIC): unless it is a
        # real host name or address, treat it (and each ':' piece of it) like a path segment.
        netloc_host = parts.netloc.rsplit("@", 1)[-1]
        if not _is_host(netloc_host):
            candidates += [netloc_host, *netloc_host.split(":")]
        candidates += [unquote(part) for part in parts.path.split("/")]
        candidates += [value for _, value in parse_qsl(parts.query)]
        secrets += [c for c in candidates if len(c) >= MIN_SECRET_FRAGMENT]
    return list(dict.fromkeys(secrets))


def _is_host(netloc: str) -> bool:
    host = netloc.rsplit(":", 1)[0] if not netloc.startswith("[") else netloc
    return host == "localhost" or host.startswith("[") or "." in host
