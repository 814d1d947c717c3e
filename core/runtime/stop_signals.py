"""SIGTERM and SIGINT ask the daemon to stop: the iteration in progress ends, nothing new starts."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


def install_stop_handlers(stop: Callable[[str], None]) -> None:
    """Call `stop(signal name)` on SIGTERM (systemd's stop) and SIGINT (Ctrl-C)."""
    def handler(signum: int, _frame: Any) -> None:
        stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
