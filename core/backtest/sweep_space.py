"""What a sweep tries: parameter points (a grid or a seeded random sample) times universes.

Names are the configuration's environment names (ENTRY_Z, ZSCORE_LOOKBACK, ...); values are kept as
the strings a user would put in the environment, and every point is validated through `AppConfig`
before any work starts, so a bad name or value gives one message (exit 2) and a point runs with
exactly the configuration `NAME=value trading-daemon backtest` would build.

    --grid ENTRY_Z=1.5,2,2.5 --grid ZSCORE_LOOKBACK=10,20,40     9 points (the product)
    --random 20 --seed 7 --range ENTRY_Z=1.5:3 --range ZSCORE_LOOKBACK=10:60
                                                                 20 points (ranges uniform; ints whole;
                                                                 a --grid list is drawn from)
    --universe etfs=SPY,QQQ,IWM --universe TIER3 --universe TIER1+TIER2
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from config.settings import SECRET_FIELDS, AppConfig, ConfigError, get_config
from config.universe import TIER_NAMES, is_valid_ticker

# Settings the backtest reads that describe the strategy, risk, sizing or the scanner. Connection,
# daemon and data settings are not parameters of a trading rule (and SIM_SEED changes the data).
SWEEPABLE: tuple[str, ...] = (
    "enable_tiered_allocation", "tier1_allocation", "tier2_allocation", "tier3_allocation",
    "enable_fractional_shares", "min_order_notional", "use_scanner",
    "zscore_lookback", "entry_z", "exit_z", "stop_loss_pct", "max_holding_sessions", "max_price_drift_pct",
    "max_open_positions", "buying_power_buffer_pct", "daily_loss_limit_pct", "max_drawdown_pct",
    "stop_loss_cooldown_sessions", "scanner_top_n", "scanner_oversold_z", "sim_initial_cash",
)
DEFAULT_UNIVERSE = "configured"


class SweepSpaceError(ValueError):
    """A bad --grid, --range, --random or --universe. The message is meant for the user as is."""


@dataclass(frozen=True)
class Universe:
    name: str
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    index: int
    settings: tuple[tuple[str, str], ...]     # (ENV_NAME, value as given), in the order of the options
    universe: Universe

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.settings]
        return " ".join(parts + [f"[{self.universe.name}]"]) if parts else f"[{self.universe.name}]"

    def overrides(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.settings}


def _field(name: str, option: str) -> str:
    field = name.strip().lower()
    if field not in AppConfig.model_fields:
        raise SweepSpaceError(f"{option} {name.strip()}: unknown setting (expected a configuration name such as "
                              "ENTRY_Z, ZSCORE_LOOKBACK, STOP_LOSS_PCT; see .env.example)")
    if field not in SWEEPABLE:
        raise SweepSpaceError(f"{option} {name.strip().upper()}: not a strategy or risk setting (expected one of "
                              f"{', '.join(f.upper() for f in SWEEPABLE)})")
    return field.upper()


def _split(text: str, option: str, example: str) -> tuple[str, str]:
    if "=" not in text:
        raise SweepSpaceError(f"{option} {text!r}: expected NAME=VALUES, e.g. {example}")
    name, _, values = text.partition("=")
    return name, values


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for item in items:
        name, raw = _split(item, "--grid", "ENTRY_Z=1.5,2,2.5")
        env = _field(name, "--grid")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise SweepSpaceError(f"--grid {env}: expected at least one value, e.g. {env}=1,2")
        if len(set(values)) != len(values):
            raise SweepSpaceError(f"--grid {env}: a value is listed twice ({raw})")
        if any(env == other for other, _ in out):
            raise SweepSpaceError(f"--grid {env} is given twice")
        out.append((env, values))
    return out


def refuse_settings_the_strategy_ignores(names: Sequence[str], config: AppConfig) -> None:
    """A swept setting the selected strategy does not read would give identical points: refuse it.

    Strategy settings (ENTRY_Z, ZSCORE_LOOKBACK, ...) reach a strategy only through its
    `defaults_from_settings`, and only when STRATEGY_PARAMS does not set that parameter itself."""
    from agents.strategies.loader import BUILTIN_STRATEGIES, strategy_class

    cls = strategy_class(config.strategy)
    read = {setting: param for param, setting in cls.defaults_from_settings.items()}
    strategy_settings = {s for c in BUILTIN_STRATEGIES.values() for s in c.defaults_from_settings.values()}
    for env in names:
        field = env.lower()
        if field in read and read[field] in config.strategy_params:
            raise SweepSpaceError(f"{env}: STRATEGY_PARAMS sets {read[field]!r} of strategy {cls.name!r}, which "
                                  f"overrides {env}: every point would be the same (drop {read[field]!r} from "
                                  "STRATEGY_PARAMS to sweep it)")
        if field in strategy_settings and field not in read:
            owners = ", ".join(c.name for c in BUILTIN_STRATEGIES.values() if field in c.defaults_from_settings.values())
            raise SweepSpaceError(f"{env}: the selected strategy {cls.name!r} does not read {env} (a setting of "
                                  f"{owners}): every point would be the same. The sweep searches the z-score "
                                  "strategy's settings and the risk settings; other strategies' parameters: "
                                  "run backtest --strategy-param")


def _is_int_field(env: str) -> bool:
    annotation = AppConfig.model_fields[env.lower()].annotation
    return annotation is int or int in get_args(annotation)


def parse_ranges(items: Sequence[str]) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    for item in items:
        name, raw = _split(item, "--range", "ENTRY_Z=1.5:3")
        env = _field(name, "--range")
        lo_text, sep, hi_text = raw.partition(":")
        try:
            lo, hi = float(lo_text), float(hi_text)
        except ValueError:
            lo = hi = float("nan")
        if not sep or not (lo == lo and hi == hi) or lo > hi:
            raise SweepSpaceError(f"--range {env}={raw}: expected LOW:HIGH with LOW <= HIGH, e.g. {env}=1.5:3")
        out.append((env, lo, hi))
    return out


def parse_universes(items: Sequence[str], config: AppConfig) -> list[Universe]:
    """NAME=SYM,SYM,... or a tier expression (TIER1, TIER1+TIER3, all); none: the configured universe."""
    if not items:
        return [Universe(DEFAULT_UNIVERSE, tuple(config.symbols))]
    out: list[Universe] = []
    for item in items:
        if "=" in item:
            name, _, raw = item.partition("=")
            symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
            bad = [s for s in symbols if not is_valid_ticker(s)]
            if not name.strip() or not symbols or bad:
                raise SweepSpaceError(f"--universe {item!r}: expected NAME=SYM,SYM,... with valid tickers"
                                      + (f" ({', '.join(bad)} is not one)" if bad else ""))
            out.append(Universe(name.strip(), symbols))
            continue
        tiers = [t.strip().upper() for t in item.split("+") if t.strip()]
        if tiers == ["ALL"]:
            out.append(Universe("all", tuple(config.symbols)))
            continue
        unknown = [t for t in tiers if t not in TIER_NAMES]
        if not tiers or unknown:
            raise SweepSpaceError(f"--universe {item!r}: expected NAME=SYM,SYM,..., a tier ({', '.join(TIER_NAMES)}), "
                                  "tiers joined by + or all")
        symbols = tuple(s for s, tier in config.symbol_tiers.items() if tier in tiers)
        if not symbols:
            raise SweepSpaceError(f"--universe {item}: no configured symbol is in {'+'.join(tiers)}")
        out.append(Universe("+".join(tiers), symbols))
    names = [u.name for u in out]
    if len(set(names)) != len(names):
        raise SweepSpaceError(f"--universe: a name is used twice ({', '.join(names)})")
    return out


def _format(value: float, integer: bool) -> str:
    if integer:
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def build_points(grid: list[tuple[str, list[str]]], ranges: list[tuple[str, float, float]],
                 universes: list[Universe], *, random_points: int | None = None, seed: int = 0) -> list[Point]:
    """Every point of the grid (or `random_points` seeded draws), for every universe."""
    names_seen = [n for n, _ in grid] + [n for n, _, _ in ranges]
    dupes = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if dupes:
        raise SweepSpaceError(f"{dupes[0]} is given both as --grid and --range")
    combos: list[tuple[tuple[str, str], ...]]
    if random_points is None:
        if ranges:
            raise SweepSpaceError("--range needs --random N (a grid lists its values with --grid)")
        combos = [tuple(zip([n for n, _ in grid], values, strict=True))
                  for values in itertools.product(*[v for _, v in grid])]
    else:
        if random_points < 1:
            raise SweepSpaceError(f"--random {random_points}: expected a whole number >= 1")
        if not grid and not ranges:
            raise SweepSpaceError("--random needs at least one --range or --grid to draw from")
        rng = np.random.default_rng(seed)
        combos = []
        for _ in range(random_points):
            point: list[tuple[str, str]] = []
            for name, values in grid:
                point.append((name, values[int(rng.integers(len(values)))]))
            for name, lo, hi in ranges:
                integer = _is_int_field(name)
                value = float(rng.integers(int(lo), int(hi) + 1)) if integer else float(rng.uniform(lo, hi))
                point.append((name, _format(value, integer)))
            combos.append(tuple(point))
        combos = list(dict.fromkeys(combos))   # the same draw twice is one point
    points: list[Point] = []
    for universe in universes:
        for combo in combos:
            points.append(Point(len(points), combo, universe))
    return points


def base_values(config: AppConfig) -> dict[str, Any]:
    """Every non-secret setting of `config`: with a point's overrides, a worker rebuilds the point's
    configuration without the machine's environment (and without the keys, which a backtest never needs)."""
    return {name: getattr(config, name) for name in AppConfig.model_fields if name not in SECRET_FIELDS}


def point_config(values: dict[str, Any], point: Point) -> AppConfig:
    """The point's configuration; raises ConfigError naming the bad value."""
    return get_config(env_file=None, alpaca_api_key=None, alpaca_secret_key=None, **{**values, **point.overrides()})


def validate_points(values: dict[str, Any], points: list[Point]) -> None:
    """Build every point's configuration once, so a bad value stops the sweep before any work."""
    for point in points:
        try:
            point_config(values, point)
        except ConfigError as exc:
            detail = str(exc).replace("Invalid configuration:\n  ", "").replace("\n  ", "; ")
            raise SweepSpaceError(f"point {point.label}: {detail}") from None
