"""Benchmark: what the operator's side channels cost the trading loop.

The same simulated sessions (real orchestrator, agents, state store and alpaca-py SDK against the
simulated market on 127.0.0.1; the whole universe, so there are fills) run four ways:
  off        no notifications, no HTTP server (the events go to the in-memory figures and the equity history)
  on         NOTIFY_URLS to a local JSON receiver + HTTP_PORT, with a client fetching the page and
             /metrics after every iteration
  hanging    NOTIFY_URLS to an endpoint that accepts connections and never answers (sends wait 30 s)
  dead       NOTIFY_URLS to a closed port
For each it prints the loop thread's CPU and wall time per iteration (median, p95, max), the
requests of steady iterations, and the notification outcomes.
Run: `.venv/bin/python scripts/bench_operations.py [--sessions N]`.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date, datetime
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _receiver() -> tuple[ThreadingHTTPServer, list[Any]]:
    got: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def _hanging() -> tuple[socket.socket, list[socket.socket]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return sock, held


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(mode: str, sessions: int) -> dict[str, Any]:
    from config.settings import get_config
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.clock import SimClock
    from core.domain.market_calendar import NEW_YORK, get_market_calendar
    from core.operations import Operations
    from core.orchestrator import Orchestrator
    from core.runtime.logging_setup import configure_logging
    from core.sim import start_sim_market
    from core.state.store import StateStore

    configure_logging("ERROR")
    calendar = get_market_calendar()
    first = date(2025, 6, 2)
    clock = SimClock(datetime.combine(first, dtime(9, 0), tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=42)
    receiver, got = _receiver()
    hang, held = _hanging()
    overrides: dict[str, Any] = {"use_scanner": False, "entry_z": 1.0, "max_holding_sessions": 2,
                                 "loop_interval_seconds": 900.0}
    if mode == "on":
        overrides.update(notify_urls=f"json://127.0.0.1:{receiver.server_address[1]}/", http_port=0)
    elif mode == "hanging":
        overrides.update(notify_urls=f"json://127.0.0.1:{hang.getsockname()[1]}/", notify_timeout_seconds=30.0)
    elif mode == "dead":
        overrides.update(notify_urls=f"json://127.0.0.1:{_free_port()}/", notify_timeout_seconds=2.0)
    wall: list[float] = []
    cpu: list[float] = []
    steady: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = get_config(env_file=None, state_dir=Path(tmp), candidates_path=Path(tmp) / "c.json", **overrides)
        gateway = AlpacaGateway(config, clock, api_key=market.api_key, secret_key=market.secret_key,
                                trading_url=market.url, data_url=market.url)
        store = StateStore(Path(tmp), clock)
        started = time.monotonic()
        with Operations(config, store=store, gateway=gateway, clock=clock, calendar=calendar, mode="simulated",
                        dry_run=False, announce=lambda _: None) as ops:
            orch = Orchestrator(config, gateway, store, clock, calendar=calendar, events=ops.events,
                                scheduled=ops.scheduled_tasks())
            orch.startup()
            ops.started(orch)
            original = orch.run_iteration

            def measured(**kwargs: Any) -> Any:
                c0 = time.thread_time()
                result = original(**kwargs)
                cpu.append(time.thread_time() - c0)
                wall.append(result.duration_s)
                if not result.submitted and not result.signals:
                    steady.append(sum(result.requests.values()))
                if ops.http is not None:  # a client watching the page and scraping while the loop runs
                    for path in ("", "metrics"):
                        urllib.request.urlopen(ops.http.url + path, timeout=10).read()
                return result

            orch.run_iteration = measured  # type: ignore[method-assign]
            session = first
            for _ in range(sessions):
                orch.run(until=datetime.combine(session, dtime(16, 10), tzinfo=NEW_YORK))
                session = calendar.next_session(session)
            notifier = ops.notifier
            loop_s = time.monotonic() - started
        total_s = time.monotonic() - started
        store.close()
    market.stop()
    receiver.shutdown()
    hang.close()
    for conn in held:
        conn.close()

    def p95(values: list[float]) -> float:
        return sorted(values)[int(0.95 * (len(values) - 1))]

    return {
        "mode": mode, "iterations": len(wall), "wall_ms": (statistics.median(wall) * 1e3, p95(wall) * 1e3,
                                                          max(wall) * 1e3),
        "cpu_ms": (statistics.median(cpu) * 1e3, p95(cpu) * 1e3), "steady_requests": sorted(set(steady)),
        "sent": notifier.sent if notifier else 0, "failed": notifier.failed if notifier else 0,
        "dropped": notifier.dropped if notifier else 0, "received": len(got), "loop_s": loop_s, "total_s": total_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    print(f"{'mode':<8} {'iters':>5} {'wall ms median/p95/max':>24} {'loop CPU ms median/p95':>23} "
          f"{'steady req':>10} {'sent/failed/dropped':>20} {'run s':>6} {'+exit s':>7}")
    for mode in ("off", "on", "hanging", "dead"):
        r = run(mode, args.sessions)
        wall = "/".join(f"{v:.1f}" for v in r["wall_ms"])
        cpu = "/".join(f"{v:.1f}" for v in r["cpu_ms"])
        outcome = f"{r['sent']}/{r['failed']}/{r['dropped']}"
        print(f"{mode:<8} {r['iterations']:>5} {wall:>24} {cpu:>23} {str(r['steady_requests']):>10} {outcome:>20} "
              f"{r['loop_s']:>6.1f} {r['total_s'] - r['loop_s']:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
