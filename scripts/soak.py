"""Soak benchmark: the real daemon stack under injected faults for a bounded span of wall-clock time.

What runs: the real `Orchestrator` loop with its agents, a `StateStore` (SQLite) and the state-dir
lock in a temporary directory, the real `AlpacaGateway` over the unchanged alpaca-py SDK, and the
in-process scanner at each simulated 16:05 New York, against the simulated Alpaca market on
127.0.0.1. The clock is a `SimClock`: every sleep of the loop (the interval between iterations,
back-off, waiting for the open, rate-limit waits) jumps simulated time instead of waiting, so half
an hour of wall time covers many simulated sessions.

Faults: every request gets a fault with probability `--fault-rate` (default 0.10, seeded RNG),
spread over 500, 503, 504, 429 (with an `X-RateLimit-Reset`), a dropped connection and a hang longer
than the client's request timeout (`--request-timeout`, default 0.5 s, so a hang costs little wall
time). An order POST gets a fault with probability `--order-fault-rate` (default 0.25; order POSTs
are rare, so the ambiguous outcomes need a higher share to be exercised), and for it the kinds also
include `accept_then_drop` and `504_after_accept` (the broker created the order, the client never
learns) and a hang after which the server still creates the order.

Nothing beyond loopback: an audit hook refuses (and counts) any socket connection or name lookup
that is not 127.0.0.1 / ::1 / localhost.

Printed at the end (and a progress line every ~10 s of wall time): iterations, simulated sessions,
faults injected by kind, faults survived, orders, duplicates, peak requests per minute per API in
simulated time (sliding 60 s window over the server's request log), the server's own 429 count,
and RSS at start, end and peak. Exit status 1 if any client_order_id exists more than once at the
broker, if a peak reaches the rate limit, if the sim server hit an internal error, if anything
tried to leave loopback, or if an unhandled exception escaped the loop.

    .venv/bin/python scripts/soak.py                 # 30 minutes
    .venv/bin/python scripts/soak.py --seconds 60    # what `make test` runs (tests/e2e/test_soak.py)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RATE_WINDOW_SECONDS = 60.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
ORDERS_PATH = "/v2/orders"

# Weights of the fault kinds any request can get, and of those only an order POST can get.
GENERAL_FAULTS: dict[str, float] = {"500": 2, "503": 2, "504": 2, "429": 2, "drop": 2, "hang": 0.5}
ORDER_FAULTS: dict[str, float] = {"accept_then_drop": 2, "504_after_accept": 2, "hang": 1}


# ---------------------------------------------------------------------------- measurements
def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RateStats:
    """Peak requests in any sliding 60 s window of simulated time, per API, folded from request logs."""

    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self.peak: dict[str, int] = {}
        self.peak_at: dict[str, datetime] = {}
        self.total: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.order_post_faults: Counter[str] = Counter()
        self.order_posts = 0

    def fold(self, records: list[Any]) -> None:
        for record in records:
            api = record.api
            stamp = record.sim_time.timestamp()
            window = self._windows.setdefault(api, deque())
            while window and window[0] <= stamp - RATE_WINDOW_SECONDS:
                window.popleft()
            window.append(stamp)
            self.total[api] += 1
            if len(window) > self.peak.get(api, 0):
                self.peak[api] = len(window)
                self.peak_at[api] = record.sim_time
            is_order_post = record.method == "POST" and record.path == ORDERS_PATH
            self.order_posts += is_order_post
            if record.fault is not None:
                self.faults[record.fault] += 1
                if is_order_post:
                    self.order_post_faults[record.fault] += 1


@dataclass
class LoopStats:
    """What the wrapped loop steps saw."""

    iterations_ok: int = 0
    iterations_failed: int = 0          # raised a TradingDaemonError: the loop backed off and went on
    faulted_iterations_ok: int = 0      # hit >= 1 fault and still completed
    faulted_iterations_failed: int = 0  # hit >= 1 fault, failed, loop backed off and went on
    faulted_clock_checks: int = 0       # GET /v2/clock hit a fault (retried or backed off)
    scans: int = 0
    faulted_scans: int = 0
    sessions: set[date] = field(default_factory=set)
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def survived(self) -> int:
        return (self.faulted_iterations_ok + self.faulted_iterations_failed + self.faulted_clock_checks
                + self.faulted_scans)


class LoopbackGuard:
    """`sys.addaudithook`: refuse any connection or name lookup that is not loopback."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.enabled = True

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.enabled:
            return
        host: Any = None
        if event == "socket.connect" and len(args) >= 2 and isinstance(args[1], tuple) and args[1]:
            host = args[1][0]
        elif event == "socket.getaddrinfo" and args:
            host = args[0]
        else:
            return
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        if host is None or str(host) in LOOPBACK:
            return
        self.refused.append(f"{event} {host}")
        raise ConnectionRefusedError(f"soak: refusing to contact {host!r}: loopback only")


def conditional_probabilities(rate: float, weights: dict[str, float]) -> list[tuple[str, float]]:
    """Per-fault probabilities for FaultInjector's first-match order so that kind k fires with
    unconditional probability rate * w_k / sum(w)."""
    total = sum(weights.values())
    left = 1.0
    out: list[tuple[str, float]] = []
    for kind, weight in weights.items():
        share = rate * weight / total
        p = min(1.0, share / left) if left > 0 else 0.0
        if p > 0:
            out.append((kind, p))
        left -= share
    return out


def inject_faults(server: Any, rate: float, order_rate: float, hang_seconds: float, rng_reset: int) -> None:
    faults = server.faults
    if order_rate > rate:
        # Order POSTs first: the general faults below also match them, so these take the difference.
        extra = (order_rate - rate) / (1.0 - rate) if rate < 1.0 else 0.0
        for kind, p in conditional_probabilities(extra, ORDER_FAULTS):
            params: dict[str, Any] = {"seconds": hang_seconds} if kind == "hang" else {}
            faults.inject(kind, method="POST", path_prefix=ORDERS_PATH, count=None, probability=p, **params)
    for kind, p in conditional_probabilities(rate, GENERAL_FAULTS):
        params = {}
        if kind == "hang":
            params = {"seconds": hang_seconds}
        elif kind == "429":
            params = {"reset_in": rng_reset}
        faults.inject(kind, count=None, probability=p, **params)


def fired(server: Any) -> int:
    return sum(f.fired for f in server.faults.active)


# ---------------------------------------------------------------------------- the run
def soak(args: argparse.Namespace) -> dict[str, Any]:
    from config.settings import get_config
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.daily_scan import scan
    from core.domain.clock import SimClock
    from core.domain.errors import TradingDaemonError
    from core.domain.market_calendar import NEW_YORK, get_market_calendar
    from core.orchestrator import Orchestrator, ScheduledTask
    from core.runtime.logging_setup import configure_logging
    from core.runtime.process_lock import StateDirLock
    from core.sim import start_sim_market
    from core.state.store import StateStore

    guard = LoopbackGuard()
    sys.addaudithook(guard)
    wall_budget = args.seconds if args.seconds is not None else args.minutes * 60.0
    rss_boot = rss_mb()
    calendar = get_market_calendar()
    first = args.start if calendar.is_session(args.start) else calendar.next_session(args.start)
    clock = SimClock(datetime.combine(first, datetime.min.time().replace(hour=9), tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=args.seed, initial_cash=args.cash,
                              rate_limit_per_minute=args.rate_limit)
    if not market.url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"soak: the simulated market is not on loopback: {market.url}")
    server = market.server
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    state_dir = tmp / "state"
    log_path = tmp / "daemon.log"
    rates = RateStats()
    loop = LoopStats()
    result: dict[str, Any] = {"unhandled": None}
    log_file = log_path.open("a", encoding="utf-8")
    try:
        configure_logging(args.log_level, json_output=True, stream=log_file)
        config = get_config(
            env_file=None, state_dir=state_dir, candidates_path=state_dir / "candidates.json",
            loop_interval_seconds=args.loop_interval, request_timeout_seconds=args.request_timeout,
            api_rate_limit_per_minute=args.rate_limit, sim_seed=args.seed, sim_initial_cash=args.cash,
            alpaca_trading_url=market.url, alpaca_data_url=market.url,
        )
        gateway = AlpacaGateway(config, clock, api_key=market.api_key, secret_key=market.secret_key,
                                trading_url=market.url, data_url=market.url)
        with StateDirLock(state_dir), StateStore(state_dir, clock) as store:
            def scanner(now: datetime) -> Any:
                before = fired(server)
                loop.scans += 1
                try:
                    return scan(config, gateway, clock, calendar)
                finally:
                    loop.faulted_scans += fired(server) > before

            task = ScheduledTask("scanner", 16, 5, scanner, calendar, clock.now())
            orch = Orchestrator(config, gateway, store, clock, calendar=calendar, scheduled=[task])
            _install_signal_handlers(orch, result)
            scan(config, gateway, clock, calendar)  # as if yesterday's 16:05 scan had run
            orch.startup()
            _wrap_loop(orch, server, loop, calendar, TradingDaemonError)
            inject_faults(server, args.fault_rate, args.order_fault_rate, args.hang_seconds, args.reset_in)

            rss_start = rss_mb()
            sim_start = clock.now()
            started = time.monotonic()
            next_report = started + args.progress_every
            chunk = timedelta(seconds=args.chunk_sim_seconds)
            rss_samples: list[float] = [rss_start]
            try:
                while time.monotonic() - started < wall_budget and not orch.stopping:
                    until = clock.now() + chunk
                    if until.date() >= calendar.last_session - timedelta(days=14):
                        result["stopped"] = "reached the end of the market calendar"
                        break
                    orch.run(until=until)
                    rates.fold(_take_log(server))
                    if time.monotonic() >= next_report:
                        next_report += args.progress_every
                        rss_samples.append(rss_mb())
                        _progress(time.monotonic() - started, clock.now(), orch, loop, rates, server)
            except Exception as exc:  # noqa: BLE001 - the soak's whole point: report, exit non-zero
                result["unhandled"] = "".join(traceback.format_exception(exc))
            elapsed = time.monotonic() - started
            rates.fold(_take_log(server))
            server.faults.clear()
            broker_orders = market.exchange.all_orders()
            result.update(_order_figures(market, broker_orders, store))
            result.update({
                "wall_seconds": elapsed, "sim_start": sim_start, "sim_end": clock.now(),
                "iterations": orch.iterations_run, "loop": loop, "rates": rates,
                "rate_limited_count": server.rate_limited_count, "server_errors": list(server.errors),
                "rss_boot": rss_boot, "rss_start": rss_start, "rss_end": rss_mb(), "rss_peak": peak_rss_mb(),
                "rss_samples": rss_samples, "log_bytes": log_path.stat().st_size,
                "db_bytes": sum(p.stat().st_size for p in state_dir.glob("trading.db*")),
                "pending_intents": len(store.pending_intents()),
                "limiter_waited_s": gateway.limiter.waited_seconds,
            })
    finally:
        log_file.close()
        result["events"] = _tally_events(log_path)
        market.stop()
        guard.enabled = False
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            result["kept"] = str(tmp)
    result["refused"] = list(guard.refused)
    return result


def _install_signal_handlers(orch: Any, result: dict[str, Any]) -> None:
    def handler(signum: int, _frame: Any) -> None:
        result["stopped"] = f"{signal.Signals(signum).name} received"
        orch.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _tally_events(log_path: Path) -> Counter[str]:
    """Counts of the daemon's fault-handling events in its JSON event log."""
    wanted = {"order_submit_ambiguous", "order_deferred", "order_unresolved", "order_lookup_failed",
              "loop_backoff", "iteration_failed", "scheduled_task_failed", "order_rejected", "order_vanished"}
    events: Counter[str] = Counter()
    try:
        with log_path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    events["unparsable log line"] += 1
                    continue
                name = event.get("event")
                if name == "order_placed":
                    events[f"order_placed:{event.get('how')}"] += 1
                elif name in wanted:
                    events[name] += 1
    except OSError:
        pass
    return events


def _take_log(server: Any) -> list[Any]:
    # The loop is single-threaded and between chunks no request is in flight from it, so nothing
    # lands between the copy and the clear (a timed-out request was logged when it arrived).
    records = list(server.request_log)
    server.clear_log()
    return records


def _wrap_loop(orch: Any, server: Any, loop: LoopStats, calendar: Any, daemon_error: type[Exception]) -> None:
    """Count faults per loop step without changing what the loop does."""
    run_iteration: Callable[..., Any] = orch.run_iteration
    view: Callable[..., Any] = orch.market_clock.view

    def iteration(*a: Any, **kw: Any) -> Any:
        before = fired(server)
        if kw.get("market_open"):
            loop.sessions.add(calendar.current_or_next_session(orch.clock.now()))
        try:
            out = run_iteration(*a, **kw)
        except daemon_error as exc:
            loop.iterations_failed += 1
            loop.failure_kinds[type(exc).__name__] += 1
            loop.faulted_iterations_failed += fired(server) > before
            raise
        loop.iterations_ok += 1
        loop.faulted_iterations_ok += fired(server) > before
        return out

    def clock_view(now: datetime) -> Any:
        before = fired(server)
        try:
            return view(now)
        finally:
            loop.faulted_clock_checks += fired(server) > before

    orch.run_iteration = iteration
    orch.market_clock.view = clock_view


def _order_figures(market: Any, broker_orders: list[Any], store: Any) -> dict[str, Any]:
    by_cid = Counter(o.client_order_id for o in broker_orders)
    dup_cids = {cid: n for cid, n in by_cid.items() if n > 1}
    # The exchange's own count of orders ever created per client_order_id (rejected ones included).
    created_twice = {cid for cid in by_cid if market.exchange.orders_for_client_id(cid) > 1}
    # One decision = strategy, signal session, symbol, side (the client_order_id without its hash).
    decisions = Counter(o.client_order_id.rsplit("-", 1)[0] for o in broker_orders)
    dup_decisions = {d: n for d, n in decisions.items() if n > 1}
    statuses = Counter(str(getattr(o.status, "value", o.status)) for o in broker_orders)
    store_cids = {o.client_order_id for o in store.all_orders()}
    return {
        "orders": len(broker_orders), "order_statuses": dict(statuses),
        "duplicates": len(dup_cids) + len(created_twice - set(dup_cids)) + len(dup_decisions),
        "duplicate_detail": {"client_order_id": dup_cids, "created_twice": sorted(created_twice),
                             "decision": dup_decisions},
        "orders_unknown_to_store": len(set(by_cid) - store_cids),
        "store_orders": len(store_cids),
    }


def _progress(elapsed: float, now: datetime, orch: Any, loop: LoopStats, rates: RateStats, server: Any) -> None:
    peak = max(rates.peak.values(), default=0)
    print(f"[{elapsed:7.1f}s] sim {now:%Y-%m-%d %H:%M}Z  iterations {orch.iterations_run}  "
          f"sessions {len(loop.sessions)}  faults {sum(rates.faults.values())}  survived {loop.survived}  "
          f"failed-iterations {loop.iterations_failed}  peak req/min {peak}  "
          f"429s {server.rate_limited_count}  RSS {rss_mb():.1f} MB", flush=True)


# ---------------------------------------------------------------------------- report
def report(args: argparse.Namespace, r: dict[str, Any]) -> int:
    rates: RateStats | None = r.get("rates")
    loop: LoopStats | None = r.get("loop")
    if rates is None or loop is None:
        print("soak: the run did not start", file=sys.stderr)
        if r.get("unhandled"):
            print(r["unhandled"], file=sys.stderr)
        return 1
    limit = args.rate_limit
    peak = max(rates.peak.values(), default=0)
    faults = sum(rates.faults.values())
    total_requests = sum(rates.total.values())
    span = r["sim_end"] - r["sim_start"]
    print()
    print("Soak summary")
    print(f"  wall time           {r['wall_seconds']:.1f} s (budget {_budget(args):g} s)"
          + (f"; stopped early: {r['stopped']}" if r.get("stopped") else ""))
    print(f"  simulated time      {r['sim_start']:%Y-%m-%d %H:%M}Z .. {r['sim_end']:%Y-%m-%d %H:%M}Z "
          f"({span.total_seconds() / 86400:.1f} days), loop every {args.loop_interval:g} s simulated")
    print(f"  iterations          {r['iterations']} ({loop.iterations_ok} completed, "
          f"{loop.iterations_failed} failed and backed off: {dict(loop.failure_kinds)})")
    print(f"  simulated sessions  {len(loop.sessions)}; scanner runs {loop.scans}")
    print(f"  requests            {total_requests} ({dict(rates.total)}), order POSTs {rates.order_posts}")
    print(f"  faults injected     {faults} ({faults / max(total_requests, 1):.1%} of requests): "
          + ", ".join(f"{k} {v}" for k, v in sorted(rates.faults.items())))
    print(f"    on order POSTs    {sum(rates.order_post_faults.values())} of {rates.order_posts}: "
          + (", ".join(f"{k} {v}" for k, v in sorted(rates.order_post_faults.items())) or "none"))
    print(f"  faults survived     {loop.survived} loop steps hit a fault and the loop went on "
          f"({loop.faulted_iterations_ok} iterations completed, {loop.faulted_iterations_failed} iterations "
          f"failed and backed off, {loop.faulted_clock_checks} clock checks, {loop.faulted_scans} scans)")
    print(f"  orders              {r['orders']} at the broker {r['order_statuses']}; {r['store_orders']} in the "
          f"state database; {r['orders_unknown_to_store']} unknown to it; pending intents {r['pending_intents']}")
    print(f"  duplicates          {r['duplicates']}"
          + (f" {r['duplicate_detail']}" if r["duplicates"] else " (no client_order_id or decision twice at the broker)"))
    print("  peak requests/min   " + ", ".join(f"{api} {n} at {rates.peak_at[api]:%Y-%m-%d %H:%M:%S}Z"
                                                for api, n in sorted(rates.peak.items()))
          + f" (limit {limit}, sliding 60 s of simulated time)")
    print(f"  server 429s         {r['rate_limited_count']} sent by the server's own limiter "
          f"(client limiter waited {r['limiter_waited_s']:.0f} s simulated)")
    events: Counter[str] = r.get("events") or Counter()
    print("  fault handling      " + (", ".join(f"{k} {v}" for k, v in sorted(events.items())) or "no events")
          + " (from the daemon's event log)")
    samples = r["rss_samples"]
    print(f"  RSS                 start {r['rss_start']:.1f} MB, end {r['rss_end']:.1f} MB "
          f"(change {r['rss_end'] - r['rss_start']:+.1f} MB), peak {r['rss_peak']:.1f} MB; "
          f"at 25/50/75% {' / '.join(f'{samples[int(len(samples) * q)]:.1f}' for q in (0.25, 0.5, 0.75))} MB")
    print(f"  disk                state database {r['db_bytes'] / 1e6:.1f} MB, event log {r['log_bytes'] / 1e6:.1f} MB")
    print(f"  loopback only       {len(r['refused'])} non-loopback connection attempts"
          + (f": {r['refused'][:5]}" if r["refused"] else ""))
    problems = []
    if r["duplicates"]:
        problems.append(f"{r['duplicates']} duplicate orders")
    if peak >= limit:
        problems.append(f"peak {peak} requests/min >= limit {limit}")
    if r["server_errors"]:
        problems.append(f"{len(r['server_errors'])} simulated-server internal errors")
        print(r["server_errors"][0], file=sys.stderr)
    if r["refused"]:
        problems.append("non-loopback connection attempts")
    if r.get("unhandled"):
        problems.append("an unhandled exception escaped the loop")
        print(r["unhandled"], file=sys.stderr)
    print(f"  result              {'FAIL: ' + '; '.join(problems) if problems else 'PASS'}")
    if args.json:
        Path(args.json).write_text(json.dumps(_json_figures(r, peak), indent=2, default=str) + "\n")
    return 1 if problems else 0


def _json_figures(r: dict[str, Any], peak: int) -> dict[str, Any]:
    rates: RateStats = r["rates"]
    loop: LoopStats = r["loop"]
    return {
        "wall_seconds": r["wall_seconds"], "iterations": r["iterations"], "iterations_failed": loop.iterations_failed,
        "sessions": len(loop.sessions), "faults": sum(rates.faults.values()), "faults_by_kind": dict(rates.faults),
        "order_post_faults": dict(rates.order_post_faults), "survived": loop.survived, "orders": r["orders"],
        "duplicates": r["duplicates"], "peak_per_minute": dict(rates.peak), "peak": peak,
        "rate_limited_count": r["rate_limited_count"], "requests": dict(rates.total),
        "rss_start_mb": r["rss_start"], "rss_end_mb": r["rss_end"], "rss_peak_mb": r["rss_peak"],
        "server_errors": len(r["server_errors"]), "refused": r["refused"], "unhandled": r.get("unhandled"),
        "events": dict(r.get("events") or {}), "pending_intents": r["pending_intents"],
    }


def _budget(args: argparse.Namespace) -> float:
    return float(args.seconds) if args.seconds is not None else args.minutes * 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock span (default 30)")
    p.add_argument("--seconds", type=float, default=None, help="wall-clock span in seconds (overrides --minutes)")
    p.add_argument("--fault-rate", type=float, default=0.10, help="share of requests that get a fault (0.10)")
    p.add_argument("--order-fault-rate", type=float, default=0.25,
                   help="share of order POSTs that get a fault, incl. accept-then-drop and 504-after-accept (0.25)")
    p.add_argument("--seed", type=int, default=7, help="seed for the market and the fault RNG (7)")
    p.add_argument("--loop-interval", type=float, default=300.0, help="simulated seconds between iterations (300)")
    p.add_argument("--request-timeout", type=float, default=0.5, help="client request timeout, wall s (0.5)")
    p.add_argument("--hang-seconds", type=float, default=0.8, help="how long a hang fault holds, wall s (0.8)")
    p.add_argument("--reset-in", type=int, default=5, help="X-RateLimit-Reset of an injected 429, sim s (5)")
    p.add_argument("--rate-limit", type=int, default=200, help="requests per minute per API (200)")
    p.add_argument("--start", type=date.fromisoformat, default=date(2020, 1, 2), help="first simulated session (2020-01-02)")
    p.add_argument("--cash", type=float, default=100_000.0, help="initial cash (100000)")
    p.add_argument("--chunk-sim-seconds", type=float, default=1800.0, help=argparse.SUPPRESS)
    p.add_argument("--progress-every", type=float, default=10.0, help="wall seconds between progress lines")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary state directory and event log")
    args = p.parse_args(argv)
    if not 0.0 <= args.fault_rate < 1.0 or not 0.0 <= args.order_fault_rate < 1.0:
        p.error("--fault-rate and --order-fault-rate must be in [0, 1)")
    if args.request_timeout >= args.hang_seconds:
        p.error("--hang-seconds must exceed --request-timeout (a hang must time the client out)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"Soak: {_budget(args):g} s of wall time, fault rate {args.fault_rate:.0%} "
          f"(order POSTs {args.order_fault_rate:.0%}), seed {args.seed}, loop every {args.loop_interval:g} s "
          f"simulated, request timeout {args.request_timeout:g} s, limit {args.rate_limit}/min per API", flush=True)
    try:
        result = soak(args)
    except Exception:  # noqa: BLE001 - set-up failed: say so, exit non-zero
        traceback.print_exc()
        return 1
    return report(args, result)


if __name__ == "__main__":
    sys.exit(main())
