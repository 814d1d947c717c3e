"""`trading-daemon` command line. Every subcommand validates the configuration first.

Exit codes: 0 ok; 1 runtime failure (one message), including a passing failure of the state's storage
(disk full, I/O error, database locked or busy: systemd starts it again); 2 bad configuration or
arguments (a STATE_DIR that cannot be created); 3 refused to trade (a damaged database, one from a
newer release, reconciliation failed, live trading without both opt-ins, another instance running).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ops_commands import add_state_dir_arguments, add_status_arguments

# The parser imports only the standard library and argument modules, so `--help` and a bad argument
# answer at once; the configuration (pydantic), the agents and the backtest load after parsing.
if TYPE_CHECKING:
    from config.settings import AppConfig

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
DEFAULT_ENV_FILE = ".env"
STRATEGY_COMMANDS = frozenset({"run", "scan", "backtest", "strategies"})
QUICK_EXIT_COMMANDS = frozenset({"backtest"})   # run as a program, these end without interpreter teardown


def _print_settings(config: AppConfig, out: Any = None) -> None:
    from config.settings import describe_config

    out = out or sys.stdout
    print("Effective settings (keys masked):", file=out)
    for name, value in describe_config(config):
        print(f"  {name:<28} {value}", file=out)


class _VersionAction(argparse.Action):
    """`--version`: the package metadata is read only when it is asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from core.runtime.version import version

        print(f"{parser.prog} {version()}")   # on stdout, as argparse's own version action prints it
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trading-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--env-file", default=None, metavar="PATH",
                        help="dotenv file to read; it must exist (default: .env in the working directory, if any)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the trading loop")
    run.add_argument("--sim", action="store_true", help="use the built-in simulated market even if keys are set")
    run.add_argument("--dry-run", action="store_true", help="decide and log orders, send none")
    run.add_argument("--once", action="store_true", help="run exactly one iteration now and exit")
    run.add_argument("--iterations", type=int, default=None, metavar="N", help="stop after N iterations")
    run.add_argument("--live", action="store_true", help="trade a live account (also needs ALPACA_PAPER=false)")
    run.add_argument("--sessions", type=int, default=None, metavar="N",
                     help="simulated market only: run N simulated sessions (default 20)")
    run.add_argument("--sim-start", type=_iso_date, default=None, metavar="YYYY-MM-DD",
                     help="simulated market only: first simulated session (default 2025-06-02)")
    run.add_argument("--show-settings", action="store_true", help="print the effective settings first")
    run.add_argument("--accept-broker-state", action="store_true",
                     help="at start-up, take the broker's position quantities where they differ from the book")

    _add_strategy_arguments(run)

    scan = sub.add_parser("scan", help="rank the universe and write candidates.json (daily at 16:05 New York)")
    _add_strategy_arguments(scan)
    status = sub.add_parser("status", help="positions, exposure, orders, halts and API usage from the state database")
    add_status_arguments(status)
    sub.add_parser("notify-test", help="send one test notification to every NOTIFY_URLS entry and report each result")
    sub.add_parser("demo", help="print the tiered sizing demo")
    strategies = sub.add_parser("strategies", help="list the built-in strategies with their parameters and defaults")
    _add_strategy_arguments(strategies)
    halts = sub.add_parser("halts", help="list active and recent risk halts (who cleared them, and why)")
    add_state_dir_arguments(halts)
    halts_sub = halts.add_subparsers(dest="halts_action")
    clear = halts_sub.add_parser("clear", help="clear one active halt, with an audit record")
    add_state_dir_arguments(clear, suppress=True)
    clear.add_argument("name", help="the halt's kind, e.g. max_drawdown (as `trading-daemon halts` lists it)")
    clear.add_argument("--reason", default="", help="why it is cleared (kept in the state database and the log)")

    backtest = sub.add_parser("backtest", help="run the agents over historical daily bars")
    from core.backtest.cli_args import add_backtest_arguments

    add_backtest_arguments(backtest)
    _add_strategy_arguments(backtest)
    _add_research_commands(sub)
    return parser


def _add_research_commands(sub: Any) -> None:
    """download and sweep: their argument modules import nothing heavy (no SDK, dask or matplotlib)."""
    from core.backtest.download_cli import add_download_arguments
    from core.backtest.sweep_cli import add_sweep_arguments

    add_download_arguments(sub.add_parser("download", help="fetch adjusted daily bars into backtest Parquet files"))
    add_sweep_arguments(sub.add_parser("sweep", help="parameter sweep with walk-forward windows on Dask"))


def _add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default=None, metavar="REF",
                        help="the strategy: a built-in name (zscore, rsi2), package.module:Class or "
                             "path/to/file.py:Class (default: STRATEGY, zscore)")
    parser.add_argument("--strategy-param", action="append", default=None, metavar="KEY=VALUE",
                        help="a strategy parameter, over STRATEGY_PARAMS (repeatable)")


def _with_strategy_options(args: argparse.Namespace, config: AppConfig, env_file: str) -> AppConfig:
    """The configuration with --strategy / --strategy-param applied (validated like the environment)."""
    from config.settings import ConfigError, get_config

    reference = getattr(args, "strategy", None)
    assignments = getattr(args, "strategy_param", None) or []
    if reference is None and not assignments:
        return config
    params = dict(config.strategy_params)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--strategy-param {assignment!r}: expected KEY=VALUE, e.g. entry_z=2.5")
        params[key.strip()] = value.strip()
    overrides: dict[str, Any] = {"strategy_params": params}
    if reference is not None:
        overrides["strategy"] = reference
    return get_config(env_file=env_file, **overrides)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("JOURNAL_STREAM"):  # under systemd only: the logging module costs an import otherwise
        from core.runtime.logging_setup import JournalErrorStream, writes_to_journal

        if writes_to_journal(sys.stderr) and not isinstance(sys.stderr, JournalErrorStream):
            sys.stderr = JournalErrorStream(sys.stderr)  # type: ignore[assignment]  # `journalctl -p err` shows refusals
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and args.command == "backtest" and not args.compare_seed:
        # Run as a program: the chart process starts now, to import matplotlib while this one works.
        from core.backtest.charts import prestart

        prestart()
        _pause_gc()
    from config.settings import ConfigError, get_config

    if args.env_file is not None and not Path(args.env_file).is_file():
        # Only the default .env may be absent: a file named on purpose that is missing (a typo, a wrong
        # directory) would otherwise run on built-in defaults.
        what = "is not a regular file" if Path(args.env_file).exists() else "does not exist"
        print(f"trading-daemon: --env-file {args.env_file} {what}: expected a dotenv file, or leave --env-file "
              "out to read .env from the working directory if there is one", file=sys.stderr)
        return EXIT_CONFIG
    try:
        env_file = args.env_file if args.env_file is not None else DEFAULT_ENV_FILE
        config = get_config(env_file=env_file)
        config = _with_strategy_options(args, config, env_file)
        if args.command in STRATEGY_COMMANDS:
            from agents.strategies.loader import strategy_from_config

            strategy_from_config(config)  # a bad strategy stops here, before any output
    except ConfigError as exc:
        print(f"trading-daemon: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    handlers: dict[str, Callable[[argparse.Namespace, AppConfig], int]] = {
        "run": _cmd_run, "scan": _cmd_scan, "status": _cmd_status, "demo": _cmd_demo, "backtest": _cmd_backtest,
        "halts": _cmd_halts, "download": _cmd_download, "sweep": _cmd_sweep,
        "notify-test": _cmd_notify_test,
        "strategies": _cmd_strategies,
    }
    try:
        code = handlers[args.command](args, config)
        sys.stdout.flush()   # here, not at exit: a reader that went away is handled below
        if argv is None and args.command in QUICK_EXIT_COMMANDS:
            _exit_now(code)
        return code
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as exc:  # a strategy that breaks its contract at run time is a configuration error
        print(f"trading-daemon: {_redact(str(exc), config)}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, not a traceback
        from core.domain.errors import ReconciliationError, StateError, TradingDaemonError

        message = _redact(str(exc), config)  # stderr is a log too: no key, even inside a message
        state_code = _state_exit_code(exc)
        if state_code is not None:
            print(f"trading-daemon: {message}", file=sys.stderr)
            return state_code
        if isinstance(exc, ReconciliationError | StateError):
            print(f"trading-daemon: {message}", file=sys.stderr)
            return EXIT_REFUSED
        if isinstance(exc, TradingDaemonError):
            print(f"trading-daemon: {message}", file=sys.stderr)
            return EXIT_FAILURE
        crash = _write_crash_report(config, exc)
        print(f"trading-daemon: internal error {type(exc).__name__}: {message} (details in {crash})", file=sys.stderr)
        return EXIT_FAILURE


_GC_PAUSED: list[bool] = []


def _pause_gc() -> None:
    """A backtest run as a program imports pydantic, numpy, structlog and the agents first: hundreds of thousands
    of objects that live to the end, which the cyclic collector would scan again and again (~0.1 s of its start).
    Paused until those imports are done (`_resume_gc`)."""
    if gc.isenabled():
        gc.disable()
        _GC_PAUSED.append(True)


def _resume_gc() -> None:
    if _GC_PAUSED:
        _GC_PAUSED.clear()
        gc.freeze()   # the imported objects: later collections skip them
        gc.enable()


def _exit_now(code: int) -> None:
    """End the process at once, its output flushed: a backtest leaves nothing to clean up, and tearing down
    the interpreter's numpy, pandas and agent objects took about 0.2 s of every run. Only when run as a
    program (`main()` without arguments), never from a caller that goes on."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stdout_closed() -> int:
    """The reader of stdout went away (`trading-daemon status | head`): stop quietly, as other Unix tools do
    (they die of SIGPIPE: 128 + 13), with no message and no crash report."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # the interpreter's last flush must not fail again
    return 128 + signal.SIGPIPE


def _state_exit_code(exc: BaseException) -> int | None:
    """A passing failure of the state's storage (disk full, I/O error, locked) is a runtime failure that
    systemd retries (1); a STATE_DIR that cannot be used is a bad setting (2). Other StateErrors refuse (3)."""
    from core.domain.errors import StateDirUnusableError, StateUnavailableError

    if isinstance(exc, StateUnavailableError):
        return EXIT_FAILURE
    if isinstance(exc, StateDirUnusableError):
        return EXIT_CONFIG
    return None


def _redact(text: str, config: AppConfig) -> str:
    for secret in config.secret_values():
        if secret:
            text = text.replace(secret, "***")
    return text


def _write_crash_report(config: AppConfig, exc: BaseException) -> Path:
    from core.runtime.atomic_file import write_atomic
    from core.runtime.logging_setup import configure_logging, redact_nested

    configure_logging(secrets=config.secret_values())
    text = redact_nested("".join(traceback.format_exception(exc)))
    path = Path(config.state_dir) / "crash.log"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # like StateDirLock: a new state dir is private
        write_atomic(path, text)
    except OSError:
        return Path("(unwritable)")
    return path


# ---------------------------------------------------------------------- run
def _cmd_run(args: argparse.Namespace, config: AppConfig) -> int:
    from core.runtime.logging_setup import configure_logging

    if config.is_live and not args.live:
        print("trading-daemon: refusing to trade: ALPACA_PAPER=false needs the explicit --live flag as well",
              file=sys.stderr)
        return EXIT_REFUSED
    if args.live and not config.is_live:
        print("trading-daemon: refusing --live: ALPACA_PAPER is true (set ALPACA_PAPER=false for a live account)",
              file=sys.stderr)
        return EXIT_REFUSED
    simulated = args.sim or not config.has_credentials
    if args.live and simulated:
        print("trading-daemon: refusing --live without Alpaca credentials", file=sys.stderr)
        return EXIT_REFUSED
    if args.iterations is not None and args.iterations < 1:
        print(f"trading-daemon: --iterations {args.iterations}: expected a whole number >= 1", file=sys.stderr)
        return EXIT_CONFIG
    if simulated:
        from core.sim_run import sim_window_error

        problem = sim_window_error(args.sim_start, args.sessions, args.once)
        if problem is not None:
            print(f"trading-daemon: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        from core.broker.factory import sim_banner

        print(sim_banner(config), flush=True)
        from core.sim_run import run_simulated

        if args.show_settings or (args.once and args.dry_run):
            _print_settings(config)
        return run_simulated(config, args)
    if args.show_settings or (args.once and args.dry_run):
        _print_settings(config)
    configure_logging(config.log_level, secrets=config.secret_values())
    return _run_daemon(config, args)


def _run_daemon(config: AppConfig, args: argparse.Namespace) -> int:
    from core.broker.factory import connect
    from core.broker_time import BrokerTimeClock
    from core.domain.market_calendar import get_market_calendar
    from core.operations import Operations
    from core.orchestrator import Orchestrator
    from core.runtime.process_lock import StateDirLock
    from core.runtime.stop_signals import install_stop_handlers
    from core.runtime.systemd_notify import SystemdNotifier
    from core.state.store import StateStore

    mode = "live" if config.is_live else "paper"
    print(f"Trading {mode} account via Alpaca{' (dry run: no orders are sent)' if args.dry_run else ''}.", flush=True)
    connection = connect(config)
    # One time base for the daemon's rows, its figures and its decisions: the host's clock as the broker's
    # clock corrects it (core/broker_time.py), so an iteration's age is never host time minus broker time.
    clock = BrokerTimeClock(connection.clock, config.max_clock_skew_seconds)
    with StateDirLock(Path(config.state_dir)), StateStore(Path(config.state_dir), clock) as store, \
            Operations(config, store=store, gateway=connection.gateway, clock=clock,
                       calendar=get_market_calendar(), mode=mode, dry_run=args.dry_run) as ops:
        orchestrator = Orchestrator(config, connection.gateway, store, clock, dry_run=args.dry_run,
                                    notifier=SystemdNotifier(), events=ops.events,
                                    scheduled=[] if args.once else ops.scheduled_tasks())
        install_stop_handlers(orchestrator.request_stop)
        orchestrator.startup(accept_broker_quantities=args.accept_broker_state)
        ops.started(orchestrator)
        orchestrator.run(max_iterations=args.iterations, once=args.once)
    connection.close()
    return EXIT_OK


# ---------------------------------------------------------------------- scan, status, demo, backtest
def _cmd_scan(args: argparse.Namespace, config: AppConfig) -> int:
    from core.daily_scan import describe, scan_with_config
    from core.runtime.logging_setup import configure_logging

    configure_logging(config.log_level, secrets=config.secret_values())
    if not config.has_credentials:
        from core.broker.factory import SIM_BANNER

        print(SIM_BANNER, flush=True)
    result = scan_with_config(config)
    print(describe(result, config.strategy))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace, config: AppConfig) -> int:
    from core.ops_commands import run_status_command

    return run_status_command(args, config)


def _cmd_notify_test(args: argparse.Namespace, config: AppConfig) -> int:
    from core.ops_commands import run_notify_test

    return run_notify_test(config)


def _cmd_halts(args: argparse.Namespace, config: AppConfig) -> int:
    from core.halts_command import clear_halt, render_halts
    from core.ops_commands import sim_state_hint, state_target
    from core.runtime.logging_setup import configure_logging
    from core.status import no_database_message

    sim_dir = sim_state_hint(args, config)
    config = state_target(args, config)
    if args.halts_action != "clear":
        from core.state.database import DB_NAME

        if not (Path(config.state_dir) / DB_NAME).exists():  # as `status`: nothing to list is exit 1
            print(f"trading-daemon: {no_database_message(Path(config.state_dir), sim_dir, 'halts')}", file=sys.stderr)
            return EXIT_FAILURE
        print(render_halts(config))
        return EXIT_OK
    configure_logging(config.log_level, secrets=config.secret_values())
    outcome = clear_halt(config, args.name, args.reason)
    if outcome.code != EXIT_OK:
        print(f"trading-daemon: {outcome.text}", file=sys.stderr)
        return EXIT_CONFIG
    print(outcome.text)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, config: AppConfig) -> int:
    from core.domain.tiered_position_sizer import print_demo

    print_demo()
    return EXIT_OK


def _cmd_strategies(args: argparse.Namespace, config: AppConfig) -> int:
    import inspect

    from agents.strategies.loader import BUILTIN_STRATEGIES, describe_builtin, strategy_from_config

    print("Built-in strategies (select one with STRATEGY=NAME or --strategy NAME; parameters with "
          "STRATEGY_PARAMS='{\"key\": value}' or --strategy-param key=value; your own: docs/strategies.md)")
    for name, cls in BUILTIN_STRATEGIES.items():
        print(f"\n{name}: {(inspect.getdoc(cls) or '').splitlines()[0]}")
        rows = describe_builtin(cls)
        width = max(len(key) for key, _, _ in rows)
        for key, default, description in rows:
            print(f"  {key:<{width}}  {default:<8} {description}")
    print("\nEvery strategy also exits on STOP_LOSS_PCT and MAX_HOLDING_SESSIONS unless it declares its own exits.")
    print(f"Selected: {strategy_from_config(config).describe()}")
    return EXIT_OK


def _cmd_backtest(args: argparse.Namespace, config: AppConfig) -> int:
    from core.backtest.cli import run_backtest_command
    from core.runtime.logging_setup import configure_logging

    _resume_gc()
    configure_logging("WARNING", secrets=config.secret_values())
    return run_backtest_command(args, config)


def _cmd_download(args: argparse.Namespace, config: AppConfig) -> int:
    from core.backtest.download_cli import run_download_command
    from core.runtime.logging_setup import configure_logging

    configure_logging("WARNING", secrets=config.secret_values())
    return run_download_command(args, config)


def _cmd_sweep(args: argparse.Namespace, config: AppConfig) -> int:
    from core.backtest.sweep_cli import run_sweep_command
    from core.runtime.logging_setup import configure_logging

    configure_logging("WARNING", secrets=config.secret_values())
    return run_sweep_command(args, config)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
