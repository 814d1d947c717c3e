"""Validated, immutable application configuration.

`AppConfig` reads the process environment and `.env` (a real environment variable beats `.env`).
Every field maps to the upper-cased environment variable of the same name, e.g.
`tier1_allocation` <- `TIER1_ALLOCATION`. `get_config()` returns a frozen `AppConfig` or raises
`ConfigError`, whose single message names each bad variable, its value and what is allowed.
Secret values are never part of a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.notifications import (
    NOTIFY_EVENT_NAMES,
    notify_url_secrets,
    parse_notify_events,
    validate_notify_urls,
)
from config.universe import DEFAULT_SYMBOL_TIERS, TIER_NAMES, is_valid_ticker

ALPACA_MIN_NOTIONAL = 1.0
SECRET_FIELDS = frozenset({"alpaca_api_key", "alpaca_secret_key", "notify_urls"})
# A built-in name, or `module.path:ClassName`, or `path/to/file.py:ClassName`.
STRATEGY_REFERENCE = r"[A-Za-z_][A-Za-z0-9_]*|[^:\s][^:]*:[A-Za-z_][A-Za-z0-9_]*"


class ConfigError(ValueError):
    """Configuration is invalid. The message is meant for the user as is."""


def parse_symbol_tiers(raw: str) -> dict[str, str]:
    """Parse `SYM:TIER,SYM:TIER,...` into an ordered mapping, rejecting anything ambiguous."""
    result: dict[str, str] = {}
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if not entries:
        raise ValueError("expected at least one SYM:TIER entry, e.g. SPY:TIER1,AAPL:TIER3")
    for entry in entries:
        parts = entry.split(":")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"malformed entry {entry!r}: expected SYMBOL:TIER, e.g. SPY:TIER1")
        symbol, tier = parts[0].strip().upper(), parts[1].strip().upper()
        _check_symbol_tier(symbol, tier, result, entry)
        result[symbol] = tier
    return result


def _check_symbol_tier(symbol: str, tier: str, seen: dict[str, str], entry: str) -> None:
    if not is_valid_ticker(symbol):
        raise ValueError(
            f"{symbol!r} in entry {entry!r} is not a valid US equity symbol: "
            "expected 1-5 letters A-Z, optionally a share class such as BRK.B"
        )
    if tier not in TIER_NAMES:
        raise ValueError(
            f"unknown tier {tier!r} in entry {entry!r}: expected one of {', '.join(TIER_NAMES)}"
        )
    if symbol in seen and seen[symbol] != tier:
        raise ValueError(f"{symbol} is given in two tiers ({seen[symbol]} and {tier}): expected one tier per symbol")


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class AppConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )

    # --- Seed: tiered allocation -------------------------------------------------------
    enable_tiered_allocation: bool = True
    tier1_allocation: Fraction = 0.40
    tier2_allocation: Fraction = 0.30
    tier3_allocation: Fraction = 0.30
    enable_fractional_shares: bool = True
    min_order_notional: float = Field(default=10.0, ge=ALPACA_MIN_NOTIONAL)
    symbol_tiers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_SYMBOL_TIERS)
    )
    use_scanner: bool = True

    # --- Alpaca --------------------------------------------------------------------------
    alpaca_api_key: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    alpaca_paper: bool = True
    alpaca_trading_url: str | None = None
    alpaca_data_url: str | None = None
    alpaca_data_feed: Literal["iex", "sip", "delayed_sip"] = "iex"
    api_rate_limit_per_minute: int = Field(default=200, ge=1, le=10_000)
    request_timeout_seconds: float = Field(default=10.0, gt=0.0, le=300.0)
    max_get_retries: int = Field(default=4, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=0.5, gt=0.0, le=60.0)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0.0, le=600.0)

    # --- Daemon --------------------------------------------------------------------------
    candidates_path: Path = Path("candidates.json")
    state_dir: Path = Path("var/")
    loop_interval_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    unknown_position_policy: Literal["adopt", "flag"] = "flag"
    # First part of every client_order_id; daemons sharing one account need different ones.
    order_id_prefix: str = "zmr"

    # --- Strategy: which one (docs/strategies.md) and its parameters ------------------------
    strategy: str = "zscore"
    strategy_params: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)

    # --- Strategy: z-score mean reversion on daily closes -----------------------------------
    zscore_lookback: int = Field(default=20, ge=2, le=500)
    entry_z: float = Field(default=2.0, gt=0.0, le=10.0)
    exit_z: float = Field(default=0.0, ge=-10.0, le=10.0)
    stop_loss_pct: float = Field(default=0.08, gt=0.0, lt=1.0)
    max_holding_sessions: int = Field(default=10, ge=1, le=1000)
    max_price_drift_pct: float = Field(default=0.05, gt=0.0, lt=1.0)

    # --- Risk ----------------------------------------------------------------------------
    max_open_positions: int = Field(default=10, ge=1, le=500)
    buying_power_buffer_pct: float = Field(default=0.05, ge=0.0, lt=1.0)
    daily_loss_limit_pct: float = Field(default=0.03, gt=0.0, lt=1.0)
    max_drawdown_pct: float = Field(default=0.15, gt=0.0, lt=1.0)
    stop_loss_cooldown_sessions: int = Field(default=3, ge=0, le=100)
    # Beyond this many seconds between the host's clock and the broker's, decisions use the broker's time.
    max_clock_skew_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    max_price_disagreement_pct: float = Field(default=0.05, gt=0.0, le=0.5)

    # --- Scanner -------------------------------------------------------------------------
    scanner_top_n: int = Field(default=10, ge=5, le=10)
    scanner_oversold_z: float = Field(default=-1.0, le=0.0, ge=-10.0)

    # --- Simulated market ------------------------------------------------------------------
    sim_seed: int = Field(default=42, ge=0)
    sim_initial_cash: float = Field(default=10_000.0, gt=0.0, le=1e9)

    # --- Operations: notifications, metrics and the status page ---------------------------------
    notify_urls: SecretStr | None = None
    notify_events: Annotated[tuple[str, ...], NoDecode] = NOTIFY_EVENT_NAMES
    notify_timeout_seconds: float = Field(default=10.0, gt=0.0, le=120.0)
    http_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("symbol_tiers", mode="before")
    @classmethod
    def _parse_symbol_tiers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_symbol_tiers(value)
        if isinstance(value, dict):
            checked: dict[str, str] = {}
            for symbol, tier in value.items():
                sym, tr = str(symbol).strip().upper(), str(tier).strip().upper()
                _check_symbol_tier(sym, tr, checked, f"{symbol}:{tier}")
                checked[sym] = tr
            if not checked:
                raise ValueError("expected at least one SYM:TIER entry")
            return checked
        raise ValueError("expected a string of SYM:TIER entries")

    @field_validator("order_id_prefix", mode="after")
    @classmethod
    def _check_order_id_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9]{1,9}", value):
            raise ValueError("expected 2-10 lower-case letters and digits, starting with a letter, e.g. zmr")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("strategy", mode="after")
    @classmethod
    def _check_strategy_reference(cls, value: str) -> str:
        # Only the shape here: importing the strategy is the loader's job (agents/strategies/loader.py),
        # so reading the configuration (e.g. for `status`) never runs a strategy file.
        value = value.strip()
        if not re.fullmatch(STRATEGY_REFERENCE, value):
            raise ValueError("expected a built-in strategy name such as zscore or rsi2, "
                             "package.module:ClassName or path/to/file.py:ClassName")
        return value

    @field_validator("strategy_params", mode="before")
    @classmethod
    def _parse_strategy_params(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('expected a JSON object such as {"entry_z": 2.5}') from None
        if not isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in value.values()):
            raise ValueError('expected a JSON object of parameter names and plain values, e.g. {"entry_z": 2.5}')
        return value

    @field_validator("alpaca_trading_url", "alpaca_data_url", mode="after")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not (value.startswith("http://") or value.startswith("https://")) or " " in value:
            raise ValueError("expected an http:// or https:// base URL without /v2, e.g. http://127.0.0.1:8080")
        return value.rstrip("/")

    @field_validator("notify_urls", mode="after")
    @classmethod
    def _check_notify_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        validate_notify_urls(value.get_secret_value())
        return value

    @field_validator("notify_events", mode="before")
    @classmethod
    def _parse_notify_events(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_notify_events(value)
        if isinstance(value, list | tuple | set | frozenset):
            return parse_notify_events(",".join(str(v) for v in value))
        raise ValueError("expected 'all' or a comma-separated list of event names")

    @field_validator("http_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("alpaca_api_key", "alpaca_secret_key", mode="after")
    @classmethod
    def _empty_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_cross_field(self) -> AppConfig:
        total = self.tier1_allocation + self.tier2_allocation + self.tier3_allocation
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"TIER1_ALLOCATION + TIER2_ALLOCATION + TIER3_ALLOCATION = {total:g} "
                f"({self.tier1_allocation:g} + {self.tier2_allocation:g} + {self.tier3_allocation:g}): "
                "expected a sum of at most 1"
            )
        if (self.alpaca_api_key is None) != (self.alpaca_secret_key is None):
            missing = "ALPACA_SECRET_KEY" if self.alpaca_secret_key is None else "ALPACA_API_KEY"
            raise ValueError(f"{missing} is not set: expected ALPACA_API_KEY and ALPACA_SECRET_KEY together, or neither")
        if self.stop_loss_cooldown_sessions > 0 and self.max_holding_sessions < 1:
            raise ValueError("MAX_HOLDING_SESSIONS: expected at least 1")
        return self

    # --- Derived views -------------------------------------------------------------------
    @property
    def has_credentials(self) -> bool:
        return self.alpaca_api_key is not None and self.alpaca_secret_key is not None

    @property
    def symbols(self) -> list[str]:
        """The configured universe, in configuration order."""
        return list(self.symbol_tiers)

    @property
    def tier_allocations(self) -> dict[str, float]:
        return {
            "TIER1": self.tier1_allocation,
            "TIER2": self.tier2_allocation,
            "TIER3": self.tier3_allocation,
        }

    @property
    def is_live(self) -> bool:
        return not self.alpaca_paper

    def secret_values(self) -> list[str]:
        """Raw secret strings, for log redaction only."""
        values = []
        for secret in (self.alpaca_api_key, self.alpaca_secret_key):
            if secret is not None:
                values.append(secret.get_secret_value())
        if self.notify_urls is not None:
            values += notify_url_secrets(self.notify_urls.get_secret_value())
        return values


_PYDANTIC_HINTS = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "finite_number": "expected a finite number",
}


def _describe_error(error: Any, raw_env: dict[str, str]) -> str:
    loc = error.get("loc") or ()
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    kind = str(error.get("type"))
    ctx = error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        message = f"expected a number {bounds[kind]} {limit}"
    elif kind == "literal_error":
        message = f"expected one of {ctx.get('expected', '?')}"
    else:
        message = _PYDANTIC_HINTS.get(kind, message)
    if not loc:
        return message
    field = str(loc[0])
    env_name = field.upper()
    shown = "<hidden>" if field in SECRET_FIELDS else repr(raw_env.get(env_name, error.get("input")))
    return f"{env_name}={shown}: {message}"


def _raw_values(env_file: str | Path | None) -> dict[str, str]:
    """The raw strings as the user wrote them, so an error can quote them (secrets excluded)."""
    import os

    from dotenv import dotenv_values

    raw: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        for key, value in dotenv_values(env_file).items():
            if value is not None:
                raw[key.upper()] = value
    for key, value in os.environ.items():
        raw[key.upper()] = value
    return raw


def get_config(env_file: str | Path | None = ".env", **overrides: Any) -> AppConfig:
    """Build the validated configuration or raise one `ConfigError` naming every bad value.

    Also refused (see config/env_check.py): a `.env` that is not UTF-8 text (a one-line message), a
    key in it that is not a setting, and an environment variable that looks like a misspelt one.
    """
    lines = _source_problems(env_file)
    try:
        config = AppConfig(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raw = _raw_values(env_file)
        for key, value in overrides.items():
            raw[key.upper()] = str(value)
        lines += [_describe_error(err, raw) for err in exc.errors(include_url=False, include_input=False)]
    if lines:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
    return config


def _source_problems(env_file: str | Path | None) -> list[str]:
    import os

    from config.env_check import EnvFileError, environment_near_misses, read_env_file, unknown_file_keys

    settings = {name.upper() for name in AppConfig.model_fields}
    file_values: dict[str, str | None] = {}
    problems: list[str] = []
    if env_file is not None and Path(env_file).is_file():
        try:
            file_values = read_env_file(Path(env_file))
        except EnvFileError as exc:
            raise ConfigError(str(exc)) from None
        problems += unknown_file_keys(file_values, settings, str(env_file))
    return problems + environment_near_misses(os.environ, settings, file_values)


def describe_config(config: AppConfig) -> list[tuple[str, str]]:
    """Effective settings as (ENV_NAME, display value) pairs, with secrets masked."""
    from config.universe import format_symbol_tiers

    rows: list[tuple[str, str]] = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if name in SECRET_FIELDS:
            shown = "set (masked)" if value is not None else "not set"
        elif name == "symbol_tiers":
            shown = f"{len(value)} symbols: {format_symbol_tiers(value)}"
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value)
        elif value is None:
            shown = "not set"
        else:
            shown = str(value)
        rows.append((name.upper(), shown))
    return rows
