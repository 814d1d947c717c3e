"""Notifications through apprise: a consumer of the event stream that never holds up the loop.

`emit()` (called in the trading loop) only formats a short message, scrubs every secret out of
it and puts it on a bounded queue without waiting. One worker thread sends each message to every
configured URL, each send with its own timeout: apprise's socket timeouts, and beyond them a
deadline the worker enforces itself by sending from a short-lived thread it stops waiting for.
A dead, slow or hanging endpoint therefore costs the loop nothing and loses nothing but messages,
each loss a warning in the log: a full queue drops the new message; a failed send drops it for
that URL. There are no retries: a late fill message is worth less than a loop on time.

The URLs hold tokens, so they appear only in apprise's privacy form (`tgram://1...t/...`), and
apprise's own log records are kept out of the process's logs (they are read only for a failure's
reason, then scrubbed like every other line).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from core.events import (
    DaemonFatal,
    DaemonStarted,
    DaemonStopped,
    DailySummary,
    Event,
    ExitBlocked,
    HaltCleared,
    HaltTripped,
    OrderFilled,
    PositionExited,
    StartupRefused,
)

log = structlog.get_logger("notify")

QUEUE_SIZE = 100
MAX_ABANDONED_SENDS = 8      # sends past their deadline still running; beyond this, messages are dropped
CLOSE_WAIT_SECONDS = 5.0     # at exit, how long the last messages (stopped, fatal) may take to go out
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    title: str
    body: str
    level: str = "info"      # apprise notify types: info, success, warning, failure


@dataclass(frozen=True, slots=True)
class SendResult:
    url: str                 # privacy form
    ok: bool
    detail: str


# ---------------------------------------------------------------------- formatting
def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f" ({value:+.2%})"


def format_message(event: Event, mode: str) -> Message | None:
    """The message for a notifiable event, or None for the internal ones."""
    tag = f"[trading-daemon {mode}]"
    if isinstance(event, OrderFilled):
        return Message(event.KIND, f"{tag} filled {event.side.upper()} {event.qty:g} {event.symbol} @ {event.price:.2f}",
                       f"{event.side} {event.qty:g} {event.symbol} at {event.price:.4f} ({event.order_status}, "
                       f"{event.cumulative_qty:g} filled in all)\nreason: {event.reason}\n"
                       f"order: {event.client_order_id}\nat: {event.at.isoformat()}")
    if isinstance(event, PositionExited):
        return Message(event.KIND, f"{tag} exited {event.symbol} ({event.reason}): P&L {_signed(event.pnl)}"
                                   f"{_pct(event.pnl_pct)}",
                       f"sold {event.qty:g} {event.symbol}: entry {_money(event.entry_price)}, exit "
                       f"{_money(event.exit_price)}\nround trip P&L {_signed(event.pnl)}{_pct(event.pnl_pct)}\n"
                       f"reason: {event.reason}\nheld {event.entry_session or '?'} .. {event.exit_session}",
                       "success" if (event.pnl or 0.0) >= 0 else "warning")
    if isinstance(event, HaltTripped):
        return Message(event.KIND, f"{tag} HALT {event.kind}: no new entries",
                       f"{event.reason}\nsession {event.session}. Exits continue. "
                       "See `trading-daemon status`.", "warning")
    if isinstance(event, HaltCleared):
        return Message(event.KIND, f"{tag} halt {event.kind} cleared", f"{event.reason}\nentries are allowed again")
    if isinstance(event, StartupRefused):
        lines = "\n".join(f"- {d}" for d in event.differences) or event.message
        return Message(event.KIND, f"{tag} start-up refused: the state does not match the broker",
                       f"The daemon is not trading.\n{lines}\nRead the differences, then restart (or use "
                       "--accept-broker-state).", "failure")
    if isinstance(event, DaemonStarted):
        halts = f"\nactive halts: {', '.join(event.active_halts)}" if event.active_halts else ""
        return Message(event.KIND, f"{tag} started{' (dry run: no orders are sent)' if event.dry_run else ''}",
                       f"trading-daemon {event.version}, {event.positions} positions, {event.open_orders} open "
                       f"orders{halts}")
    if isinstance(event, DaemonStopped):
        return Message(event.KIND, f"{tag} stopped", f"{event.reason}; {event.iterations} iterations")
    if isinstance(event, DaemonFatal):
        return Message(event.KIND, f"{tag} exiting on an error",
                       f"{event.error_type}: {event.error}\nUnder systemd it is restarted unless the exit code is "
                       "2 (configuration) or 3 (refused to trade).", "failure")
    if isinstance(event, ExitBlocked):
        return Message(event.KIND, f"{tag} exit of {event.symbol} blocked: action needed",
                       f"{event.reason}\nsession {event.session}. The daemon retries at every iteration.", "warning")
    if isinstance(event, DailySummary):
        positions = "\n".join(f"  {p.symbol} {p.qty:g}  value {_money(p.market_value)}  P&L {_signed(p.unrealised_pnl)}"
                              for p in event.positions) or "  none"
        requests = ", ".join(f"{api} {n}" for api, n in event.requests) or "none"
        return Message(event.KIND, f"{tag} daily summary {event.session}: equity {_money(event.equity)}, day "
                                   f"{_signed(event.day_pnl)}{_pct(event.day_pnl_pct)}",
                       f"equity {_money(event.equity)}, cash {_money(event.cash)}, day P&L {_signed(event.day_pnl)}"
                       f"{_pct(event.day_pnl_pct)}\npositions ({len(event.positions)}):\n{positions}\n"
                       f"orders today: {event.orders_submitted} submitted, {event.orders_filled} filled\n"
                       f"requests since the last summary: {requests}")
    return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without the configured secrets, then through the process-wide `redact` (the keys any
    gateway of this process holds, and a key cut off at the end of a truncated message)."""
    from core.runtime.logging_setup import redact

    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redact(text)


# ---------------------------------------------------------------------- apprise plumbing
class _AppriseLogTap(logging.Handler):
    """Keeps apprise's last warning per thread (a failure's reason) instead of printing it."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.local.last = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log record must not break a send
            self.local.last = "apprise reported an error"


_TAP = _AppriseLogTap()


def _quiet_apprise() -> None:
    logger = logging.getLogger("apprise")
    if _TAP not in logger.handlers:
        logger.addHandler(_TAP)
    logger.propagate = False


class _Service:
    def __init__(self, url: str, timeout_s: float) -> None:
        from apprise import Apprise

        plugin = Apprise.instantiate(url)
        if plugin is None:  # validated with the configuration; a URL that stopped parsing is still refused
            raise ValueError("a NOTIFY_URLS entry is not a valid apprise URL")
        plugin.socket_connect_timeout = min(timeout_s, 5.0)
        plugin.socket_read_timeout = timeout_s
        self.plugin = plugin
        self.url = str(plugin.url(privacy=True)).split("?", 1)[0]  # the query is only apprise's defaults

    def send(self, message: Message) -> tuple[bool, str]:
        _TAP.local.last = ""
        try:
            ok = bool(self.plugin.notify(body=message.body, title=message.title, notify_type=message.level))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is a failed send, not a dead worker
            return False, f"{type(exc).__name__}: {exc}"
        return ok, "" if ok else (getattr(_TAP.local, "last", "") or "the endpoint did not accept it")


# ---------------------------------------------------------------------- the consumer
class Notifier:
    def __init__(self, urls: list[str], selected: Iterable[str], *, mode: str, timeout_s: float,
                 secrets: Iterable[str] = (), queue_size: int = QUEUE_SIZE) -> None:
        _quiet_apprise()
        self.selected = frozenset(selected)
        self.mode = mode
        self.timeout_s = timeout_s
        self._secrets = [s for s in secrets if s]
        self.services = [_Service(url, timeout_s) for url in urls]
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._abandoned: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._given_up = threading.Event()   # close() stopped waiting: what is still queued is not sent
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    # -------------------------------------------------------------- loop side
    def emit(self, event: Event) -> None:
        if event.KIND not in self.selected:
            return
        message = format_message(event, self.mode)
        if message is None:
            return
        self.enqueue(message)

    def enqueue(self, message: Message) -> bool:
        message = Message(message.kind, scrub(message.title, self._secrets), scrub(message.body, self._secrets),
                          message.level)
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning("notification_dropped", kind=message.kind, reason=f"queue full ({self._queue.maxsize} "
                        "messages waiting): the endpoints are down or too slow")
            return False
        return True

    # -------------------------------------------------------------- worker side
    def start(self) -> Notifier:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="notifier", daemon=True)
            self._thread.start()
        return self

    def _work(self) -> None:
        while True:
            message = self._queue.get()
            if message is None or self._given_up.is_set():
                return
            for service in self.services:
                try:
                    self._deliver(service, message)
                except Exception as exc:  # noqa: BLE001 - the worker outlives any one message
                    log.warning("notification_failed", url=service.url, kind=message.kind,
                                reason=f"{type(exc).__name__}: {exc}"[:300], effect="this message is lost")

    def _deliver(self, service: _Service, message: Message) -> None:
        result = self.send_one(service, message)
        with self._lock:
            if result.ok:
                self.sent += 1
            else:
                self.failed += 1
        if not result.ok:
            log.warning("notification_failed", url=result.url, kind=message.kind, reason=result.detail,
                        effect="this message is lost for this URL; the daemon carries on")

    def send_one(self, service: _Service, message: Message) -> SendResult:
        """Send with a deadline the worker enforces even if a plugin ignores its socket timeouts."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if len(self._abandoned) >= MAX_ABANDONED_SENDS:
            return SendResult(service.url, False, f"{len(self._abandoned)} earlier sends are still hanging")
        outcome: list[tuple[bool, str]] = []
        sender = threading.Thread(target=lambda: outcome.append(service.send(message)), name="notify-send",
                                  daemon=True)
        started = time.monotonic()
        sender.start()
        sender.join(self.timeout_s + 1.0)
        if sender.is_alive():
            self._abandoned.append(sender)
            return SendResult(service.url, False, f"no answer within {self.timeout_s:g}s")
        ok, detail = outcome[0] if outcome else (False, "the send ended without a result")
        if not ok and time.monotonic() - started >= self.timeout_s * 0.95:
            detail = f"no answer within {self.timeout_s:g}s ({detail})"
        return SendResult(service.url, ok, scrub(detail, self._secrets)[:300])

    def send_now(self, message: Message) -> list[SendResult]:
        """Send synchronously to every URL (notify-test), each with its deadline."""
        message = Message(message.kind, scrub(message.title, self._secrets), scrub(message.body, self._secrets),
                          message.level)
        return [self.send_one(service, message) for service in self.services]

    def close(self, wait_s: float = CLOSE_WAIT_SECONDS) -> None:
        """Let the queued messages go out for at most `wait_s` in all, then stop waiting for the worker."""
        if self._thread is None:
            return
        deadline = time.monotonic() + max(wait_s, 0.0)
        try:
            self._queue.put(None, timeout=max(wait_s, 0.0))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._given_up.set()
            left = self._queue.qsize()
            log.warning("notifications_not_sent", count=left, reason=f"the endpoints did not take them within "
                                                                    f"{wait_s:g}s of shutting down")
        self._thread = None


def notify_test_message(mode: str) -> Message:
    return Message("test", f"[trading-daemon {mode}] test notification",
                   "This is a test from `trading-daemon notify-test`. If you read this, notifications work.")


def build_notifier(config: Any, mode: str) -> Notifier | None:
    """The notifier for the configuration, or None when NOTIFY_URLS is empty."""
    if config.notify_urls is None:
        return None
    from config.notifications import split_notify_urls

    urls = split_notify_urls(config.notify_urls.get_secret_value())
    return Notifier(urls, config.notify_events, mode=mode, timeout_s=config.notify_timeout_seconds,
                    secrets=config.secret_values())
