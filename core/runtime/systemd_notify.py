"""A tiny, dependency-free sd_notify(3) client.

systemd's `Type=notify` and `WatchdogSec=` talk to the service through one AF_UNIX datagram socket
named in `$NOTIFY_SOCKET`: the service sends `READY=1` once it is up, `WATCHDOG=1` to prove it is
alive, `STATUS=...` for `systemctl status`, and `STOPPING=1` on the way out. We implement it with the
stdlib rather than `python-systemd`/`sdnotify`, because it is twenty lines and a C extension
is one more thing to install on the server.

Rules the daemon relies on:
- Without `$NOTIFY_SOCKET` (a terminal, tests, cron) every call is a no-op returning False.
- A notification can never take the trading loop down, nor block it: the socket is non-blocking
  (a manager whose queue is full loses a ping), and socket errors are logged at debug and
  reported as False. A lost ping is systemd's problem to notice, not ours to crash on.
- `sent` counts delivered messages per kind (`READY`, `WATCHDOG`, `STATUS`, `STOPPING`...) and
  `attempted` counts every call, delivered or not, so tests can assert that the loop pinged, or
  that it did not while stalled, with or without a real socket.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Mapping

import structlog

log = structlog.get_logger("systemd_notify")


def _socket_address(raw: str | None) -> str | None:
    """Turn `$NOTIFY_SOCKET` into an address for `socket.sendto`, or None if we cannot use it."""
    if not raw:
        return None
    if raw.startswith("@"):
        # Abstract namespace: systemd writes '@', the kernel wants a leading NUL byte.
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    # systemd >= 253 may hand out "vsock:CID:PORT" (VMs); a host service never sees one. Stay inert.
    log.debug("notify_socket_unsupported", address=raw)
    return None


def _kinds(message: str) -> list[str]:
    """`READY=1\\nSTATUS=x` -> ['READY', 'STATUS']: one count per assignment in the datagram."""
    return [line.split("=", 1)[0] for line in message.splitlines() if line.strip()]


class SystemdNotifier:
    """Send sd_notify messages to the service manager, if there is one."""

    def __init__(self, socket_path: str | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        # `environ` is read on every call rather than copied, so a test can set WATCHDOG_USEC later.
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        raw = socket_path if socket_path is not None else self._environ.get("NOTIFY_SOCKET")
        self.address: str | None = _socket_address(raw)
        self.sent: Counter[str] = Counter()
        self.attempted: Counter[str] = Counter()
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # ------------------------------------------------------------------ the messages
    def ready(self) -> bool:
        return self.notify("READY=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        # A newline would start a new assignment in the datagram, so a status stays on one line.
        return self.notify("STATUS=" + " ".join(str(text).splitlines()))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def notify(self, message: str) -> bool:
        """Send one datagram. True if the manager got it; False (never an exception) otherwise."""
        kinds = _kinds(message)
        self.attempted.update(kinds)
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec by default
                # Never wait on the manager: with its queue full (a stalled or busy PID 1), a blocking
                # sendto would hang the trading loop. EAGAIN is an OSError: the ping is lost, not the loop.
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            # Drop the socket so the next call starts clean (e.g. after ENOBUFS or a manager restart).
            log.debug("sd_notify_failed", message=message[:80], error=str(exc))
            self.close()
            return False
        self.sent.update(kinds)
        return True

    # ------------------------------------------------------------------ watchdog settings
    def watchdog_interval(self) -> float | None:
        """`WatchdogSec=` in seconds if the watchdog is armed for this very process, else None.

        systemd sets `$WATCHDOG_USEC` and `$WATCHDOG_PID`; a child process that inherited them must
        not believe it is being watched, hence the pid check. Ping at no more than half of this.
        """
        raw_usec = self._environ.get("WATCHDOG_USEC")
        if not raw_usec:
            return None
        try:
            usec = int(raw_usec)
        except ValueError:
            log.debug("watchdog_usec_invalid", value=raw_usec)
            return None
        if usec <= 0:
            return None
        raw_pid = self._environ.get("WATCHDOG_PID")
        if raw_pid:
            try:
                if int(raw_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __repr__(self) -> str:
        return f"SystemdNotifier(address={self.address!r}, sent={dict(self.sent)})"
