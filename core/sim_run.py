"""`trading-daemon run` on the built-in simulated market (what `make run` shows).

The real orchestrator loop, real agents and the real alpaca-py SDK run against the simulated
market on 127.0.0.1, on a simulated clock that jumps instead of waiting. The scanner runs at each
simulated 16:05 New York. Sim state lives in STATE_DIR/sim and is started afresh each run; a dry
run (`run --once --dry-run` without keys) uses STATE_DIR/sim-dry-run instead, so it never deletes
an earlier simulated run. Progress is one line per session; the JSON event log goes to
daemon.log in that directory. The summary prints the `status` command that shows the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import AppConfig
from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, MarketCalendar, get_market_calendar

if TYPE_CHECKING:
    from core.broker.factory import MarketConnection
    from core.orchestrator import Orchestrator
    from core.state.store import StateStore

DEFAULT_SIM_START = date(2025, 6, 2)
DEFAULT_SIM_SESSIONS = 20


# Sessions of history the simulated market must have before the first simulated session (the bars the
# strategies look back over, with room to spare).
SIM_HISTORY_SESSIONS = 260


def sim_window_error(sim_start: date | None, sessions: int | None, once: bool) -> str | None:
    """Why `--sim-start` / `--sessions` cannot be simulated (one message naming the value), or None."""
    calendar = get_market_calendar()
    if sessions is not None and sessions < 1:
        return f"--sessions {sessions}: expected a whole number of simulated sessions >= 1"
    earliest = _earliest_start(calendar)
    latest = calendar.previous_session(calendar.last_session)   # a next open must exist after the last one
    first = sim_start or DEFAULT_SIM_START
    if not earliest <= first <= latest:
        return (f"--sim-start {first}: expected a date from {earliest} to {latest} (the simulated market's "
                f"calendar, with {SIM_HISTORY_SESSIONS} sessions of history before the start)")
    if not calendar.is_session(first):
        first = calendar.next_session(first)
    count = 1 if once else (sessions or DEFAULT_SIM_SESSIONS)
    last_possible = calendar.session_distance(first, latest) + 1
    if count > last_possible:
        return (f"--sessions {count}: from {first} the simulated market's calendar has {last_possible} sessions "
                f"left (it ends {calendar.last_session}); expected at most {last_possible}")
    return None


def _earliest_start(calendar: MarketCalendar) -> date:
    day = calendar.first_session
    for _ in range(SIM_HISTORY_SESSIONS):
        day = calendar.next_session(day)
    return day


def sim_config(config: AppConfig, *, dry_run: bool = False) -> AppConfig:
    sim_dir = Path(config.state_dir) / ("sim-dry-run" if dry_run else "sim")
    return config.model_copy(update={"state_dir": sim_dir, "candidates_path": sim_dir / "candidates.json"})


def run_simulated(config: AppConfig, args: argparse.Namespace) -> int:
    from core.runtime.process_lock import StateDirLock

    # One instance per STATE_DIR, simulated runs included. The lock is on STATE_DIR itself and is
    # taken BEFORE the sim directory inside it is wiped: the sim directory's own lock file is deleted
    # with it, so a second run would otherwise remove a running daemon's state and start anyway.
    with StateDirLock(Path(config.state_dir)):
        return _run_simulated(config, args)


def _run_simulated(config: AppConfig, args: argparse.Namespace) -> int:
    from core.broker.factory import connect
    from core.broker_time import BrokerTimeClock
    from core.daily_scan import scan
    from core.operations import Operations
    from core.orchestrator import Orchestrator, ScheduledTask
    from core.runtime.logging_setup import configure_logging
    from core.runtime.process_lock import StateDirLock
    from core.runtime.stop_signals import install_stop_handlers
    from core.state.store import StateStore

    calendar = get_market_calendar()
    config = sim_config(config, dry_run=args.dry_run)
    state_dir = Path(config.state_dir)
    first = args.sim_start or DEFAULT_SIM_START
    if not calendar.is_session(first):
        first = calendar.next_session(first)
    sessions_wanted = 1 if args.once else (args.sessions or DEFAULT_SIM_SESSIONS)
    sessions = [first]
    while len(sessions) < sessions_wanted:
        sessions.append(calendar.next_session(sessions[-1]))

    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, mode=0o700)
    # 0600 like every other state file (the umask could make it world-readable).
    log_fd = os.open(state_dir / "daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(log_fd, 0o600)
    log_file = os.fdopen(log_fd, "a", encoding="utf-8")
    configure_logging(config.log_level, json_output=True, secrets=config.secret_values(), stream=log_file)

    start = datetime.combine(first, time(9, 45) if args.once else time(9, 0), tzinfo=NEW_YORK)
    clock = SimClock(start)
    connection = connect(config, clock=clock, force_sim=True)
    # The daemon's one time base (its rows, its figures, its decisions), as in `run` on a real account.
    daemon_clock = BrokerTimeClock(clock, config.max_clock_skew_seconds)
    print(f"Simulating {len(sessions)} session(s) {sessions[0]} .. {sessions[-1]} with "
          f"${config.sim_initial_cash:,.0f}; loop every {config.loop_interval_seconds:g}s of simulated time; "
          f"event log {state_dir / 'daemon.log'}", flush=True)
    if args.dry_run:
        print(f"Dry run: nothing is sent; its state is in {state_dir}, and an earlier simulated run in "
              f"{state_dir.parent / 'sim'} is kept.", flush=True)
    try:
        with StateDirLock(state_dir), StateStore(state_dir, daemon_clock) as store, \
                Operations(config, store=store, gateway=connection.gateway, clock=daemon_clock, calendar=calendar,
                           mode="simulated", dry_run=args.dry_run, announce=lambda text: print(text, flush=True)) as ops:
            scanner = ScheduledTask("scanner", 16, 5, lambda now: scan(config, connection.gateway, clock, calendar),
                                    calendar, clock.now())
            orchestrator = Orchestrator(config, connection.gateway, store, daemon_clock, calendar=calendar,
                                        dry_run=args.dry_run, scheduled=[] if args.once else [scanner, *ops.scheduled_tasks()],
                                        events=ops.events)
            install_stop_handlers(orchestrator.request_stop)
            scan(config, connection.gateway, clock, calendar)  # as if yesterday's 16:05 scan had run
            orchestrator.startup()
            ops.started(orchestrator)
            if args.once:
                orchestrator.run(once=True)
                _print_iteration(orchestrator)
            else:
                _run_sessions(orchestrator, connection, sessions, args.iterations)
            _print_summary(orchestrator, connection, store, config)
    finally:
        connection.close()
        log_file.close()
    return 0


def _run_sessions(orchestrator: Orchestrator, connection: MarketConnection, sessions: list[date],
                  max_iterations: int | None) -> None:
    gateway = connection.gateway
    print(f"{'session':<11} {'iters':>5} {'orders':>6} {'positions':>9} {'equity':>12} {'req/iter':>8}  candidates")
    for session in sessions:
        until = datetime.combine(session, time(16, 10), tzinfo=NEW_YORK)
        before_iters = orchestrator.iterations_run
        before_orders = len(orchestrator.store.all_orders())
        before_requests = sum(gateway.stats.by_api_total.values())
        remaining = None if max_iterations is None else max_iterations - orchestrator.iterations_run
        if remaining is not None and remaining <= 0:
            break
        orchestrator.run(until=until, max_iterations=None if remaining is None else orchestrator.iterations_run + remaining)
        if orchestrator.stopping:
            break
        iters = orchestrator.iterations_run - before_iters
        requests = sum(gateway.stats.by_api_total.values()) - before_requests
        equity = _equity(connection)
        positions = len(orchestrator.store.book())
        orders = len(orchestrator.store.all_orders()) - before_orders
        cands = _candidates(orchestrator)
        print(f"{session.isoformat():<11} {iters:>5} {orders:>6} {positions:>9} {equity:>12,.2f} "
              f"{(requests / iters) if iters else 0:>8.2f}  {cands}", flush=True)


def _equity(connection: MarketConnection) -> float:
    return float(connection.gateway.get_account().equity)


def _candidates(orchestrator: Orchestrator) -> str:
    import json

    path = Path(orchestrator.config.candidates_path)
    try:
        symbols = list(json.loads(path.read_text()).get("symbols", []))
        return ",".join(symbols[:8]) + (f" +{len(symbols) - 8}" if len(symbols) > 8 else "")  # the table's width
    except (OSError, ValueError):
        return "-"


def _print_iteration(orchestrator: Orchestrator) -> None:
    result = orchestrator.last_result
    if result is None:
        print("No iteration completed.")
        return
    print(f"Iteration {result.number}: market {'open' if result.market_open else 'closed'}, "
          f"{len(result.focus)} focus symbols, {result.signals} signals, {result.submitted} orders submitted, "
          f"{result.dry_run} dry-run orders, {result.rejected} rejected, requests {result.requests}")
    if result.execution is not None:
        for spec in result.execution.dry_run:
            print(f"  dry run: would send {spec.describe()}")
    if orchestrator.dry_run:
        print("  (a dry run: nothing was sent; the iteration is marked dry_run in the state database)")


def _print_summary(orchestrator: Orchestrator, connection: MarketConnection, store: StateStore,
                   config: AppConfig) -> None:
    account = connection.gateway.get_account()
    positions = connection.gateway.get_positions()
    orders = store.all_orders()
    per_iter = [sum(json_requests.values()) for json_requests in _iteration_requests(store)]
    print()
    print("Summary")
    print(f"  iterations          {orchestrator.iterations_run}")
    print(f"  orders              {len(orders)} ({sum(1 for o in orders if o.status.value == 'filled')} filled)")
    print(f"  open positions      {len(positions)}"
          + (": " + ", ".join(f"{s} {p.qty:g} @ {p.avg_entry_price:.2f}" for s, p in sorted(positions.items()))
             if positions else ""))
    pnl = account.equity - config.sim_initial_cash
    print(f"  equity              {account.equity:,.2f} (P&L {pnl:+,.2f}, {pnl / config.sim_initial_cash:+.2%})")
    if per_iter:
        steady = statistics.median(per_iter)
        print(f"  requests/iteration  mean {statistics.fmean(per_iter):.2f}, median {steady:g}, max {max(per_iter)}")
    print(f"  state database      {Path(config.state_dir) / 'trading.db'}")
    print(f"  see it with         {status_command(config)}")


def status_command(sim: AppConfig) -> str:
    """The exact command that shows this simulated run: `status --sim`, or `--state-dir` for a dry run.

    The program is named as it was invoked (`.venv/bin/trading-daemon` under `make run`), and the
    settings that chose the directory are repeated, so the line works when pasted as it is."""
    import shlex
    import sys

    program = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "trading-daemon" else "trading-daemon"
    parts = [shlex.quote(program)]
    if "--env-file" in sys.argv[1:-1]:
        parts += ["--env-file", shlex.quote(sys.argv[sys.argv.index("--env-file") + 1])]
    state_dir = Path(sim.state_dir)
    if state_dir.name == "sim":
        prefix = f"STATE_DIR={shlex.quote(str(state_dir.parent))} " if "STATE_DIR" in os.environ else ""
        return prefix + " ".join(parts + ["status", "--sim"])
    return " ".join(parts + ["status", "--state-dir", shlex.quote(str(state_dir))])


def _iteration_requests(store: StateStore) -> list[dict[str, int]]:
    return [r for r in store.iteration_requests() if r]
