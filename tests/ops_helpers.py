"""An in-process daemon wired exactly as `trading-daemon run` wires it (core.operations.Operations
around the Orchestrator), on the simulated market: for the notification, metrics and status-page
tests that need a daemon that is still running while they look at it.

Also: small loopback HTTP receivers for notifications (one that records JSON posts, one that holds
every connection open without answering).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from core.clock import SimClock
from core.market_calendar import NEW_YORK, get_market_calendar
from core.operations import Operations
from core.orchestrator import IterationResult, Orchestrator, ScheduledTask
from core.sim import SimMarket, start_sim_market
from core.state.store import StateStore
from tests.conftest import gateway_for, make_config

CAL = get_market_calendar()
FIRST_SESSION = date(2025, 6, 2)
# Trades from the first session on: the whole universe, a shallow entry threshold, short holds.
TRADING_CONFIG: dict[str, Any] = {"use_scanner": False, "entry_z": 1.0, "max_holding_sessions": 2,
                                  "loop_interval_seconds": 900.0, "request_timeout_seconds": 5.0}


@dataclass
class OpsDaemon:
    config: AppConfig
    market: SimMarket
    clock: SimClock
    gateway: Any
    store: StateStore
    ops: Operations
    orchestrator: Orchestrator
    results: list[IterationResult] = field(default_factory=list)

    def run_sessions(self, count: int, first: date = FIRST_SESSION) -> list[date]:
        """Run the loop through `count` sessions, each until 16:10 New York (after the daily summary)."""
        sessions = [first if CAL.is_session(first) else CAL.next_session(first)]
        while len(sessions) < count:
            sessions.append(CAL.next_session(sessions[-1]))
        for session in sessions:
            self.run_until(datetime.combine(session, dtime(16, 10), tzinfo=NEW_YORK))
        return sessions

    def run_until(self, until: datetime) -> None:
        original = self.orchestrator.run_iteration

        def recorded(**kwargs: Any) -> IterationResult:
            result = original(**kwargs)
            self.results.append(result)
            return result

        self.orchestrator.run_iteration = recorded  # type: ignore[method-assign]  # observe, not replace
        try:
            self.orchestrator.run(until=until)
        finally:
            self.orchestrator.run_iteration = original  # type: ignore[method-assign]


@contextmanager
def ops_daemon(tmp_path: Path, *, start: datetime | None = None, scanner: bool = False,
               **overrides: Any) -> Iterator[OpsDaemon]:
    clock = SimClock(start or datetime.combine(FIRST_SESSION, dtime(9, 0), tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=42, initial_cash=10_000.0)
    config = make_config(tmp_path, **{**TRADING_CONFIG, **overrides})
    gateway = gateway_for(market, config)
    store = StateStore(Path(config.state_dir), clock)
    try:
        with Operations(config, store=store, gateway=gateway, clock=clock, calendar=CAL, mode="simulated",
                        dry_run=False, announce=lambda _: None) as ops:
            tasks = ops.scheduled_tasks()
            if scanner:  # as `run --sim` does: candidates.json at 16:05, and once before the first session
                from scripts.scan_opportunities import scan

                tasks.append(ScheduledTask("scanner", 16, 5, lambda now: scan(config, gateway, clock, CAL), CAL,
                                           clock.now()))
                scan(config, gateway, clock, CAL)
            orchestrator = Orchestrator(config, gateway, store, clock, calendar=CAL, events=ops.events,
                                        scheduled=tasks)
            orchestrator.startup()
            ops.started(orchestrator)
            yield OpsDaemon(config, market, clock, gateway, store, ops, orchestrator)
    finally:
        store.close()
        market.stop()


# ---------------------------------------------------------------------- notification receivers
class JsonReceiver:
    """Records every JSON body POSTed to it (apprise's json:// plugin), on 127.0.0.1."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"json://127.0.0.1:{self.port}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        with self._lock:
            return [str(m.get("title", "")) for m in self.messages]

    def wait_for(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in title for title in self.titles()):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingEndpoint:
    """Accepts connections and never answers (for `hold_s` seconds), like a stuck webhook."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"json://127.0.0.1:{self.port}/"
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._held.append(conn)  # read nothing, answer nothing, until closed

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
