"""The embedded simulated Alpaca market: seeded synthetic bars, a simulated brokerage with
Alpaca's order rules, and an HTTP server on 127.0.0.1 that the unchanged alpaca-py SDK talks to.

    market = start_sim_market(clock=SimClock(start), seed=42)
    TradingClient(market.api_key, market.secret_key, url_override=market.url)
    StockHistoricalDataClient(market.api_key, market.secret_key, url_override=market.url)
    ...
    market.stop()
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from core.domain.clock import Clock, SimClock, SystemClock

if TYPE_CHECKING:
    from core.sim.bars import BASE_PRICES, DailyBar, SyntheticBars
    from core.sim.corporate_actions import CashDividend, CorporateActions, Split
    from core.sim.exchange import (
        DEFAULT_NON_FRACTIONABLE,
        AccountSnapshot,
        Fill,
        SimAPIError,
        SimAsset,
        SimExchange,
        SimOrder,
        SimPosition,
    )
    from core.sim.marketdata import MarketData
    from core.sim.server import (
        FAULT_KINDS,
        Fault,
        FaultInjector,
        RequestRecord,
        SimMarketServer,
    )

# The package's names load with their module on first use (PEP 562): the backtest imports only
# core.sim.bars, which must not load the brokerage and the HTTP server (about 0.05 s of its start).
_LAZY = {
    **dict.fromkeys(("BASE_PRICES", "DailyBar", "SyntheticBars"), "core.sim.bars"),
    **dict.fromkeys(("CashDividend", "CorporateActions", "Split"), "core.sim.corporate_actions"),
    **dict.fromkeys(("DEFAULT_NON_FRACTIONABLE", "AccountSnapshot", "Fill", "SimAPIError", "SimAsset",
                     "SimExchange", "SimOrder", "SimPosition"), "core.sim.exchange"),
    "MarketData": "core.sim.marketdata",
    **dict.fromkeys(("DEFAULT_MAX_URL_BYTES", "FAULT_KINDS", "Fault", "FaultInjector", "RequestRecord",
                     "SimMarketServer"), "core.sim.server"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


SIM_API_KEY = "SIM-KEY"
SIM_SECRET_KEY = "SIM-SECRET"

__all__ = [
    "BASE_PRICES",
    "DEFAULT_NON_FRACTIONABLE",
    "FAULT_KINDS",
    "AccountSnapshot",
    "CashDividend",
    "CorporateActions",
    "DailyBar",
    "Fault",
    "FaultInjector",
    "Fill",
    "MarketData",
    "RequestRecord",
    "SimAPIError",
    "SimAsset",
    "SimExchange",
    "SimMarket",
    "SimMarketServer",
    "SimOrder",
    "SimPosition",
    "Split",
    "SyntheticBars",
    "start_sim_market",
]


@dataclass
class SimMarket:
    """A running simulated market: everything a test or the daemon's embedded mode needs."""

    clock: Clock
    bars: SyntheticBars
    exchange: SimExchange
    server: SimMarketServer
    api_key: str = SIM_API_KEY
    secret_key: str = SIM_SECRET_KEY

    @property
    def url(self) -> str:
        return self.server.url

    def trading_client(self, **kwargs: Any) -> Any:
        from alpaca.trading.client import TradingClient

        return TradingClient(self.api_key, self.secret_key, url_override=self.url, **kwargs)

    def data_client(self, **kwargs: Any) -> Any:
        from alpaca.data.historical.stock import StockHistoricalDataClient

        return StockHistoricalDataClient(self.api_key, self.secret_key, url_override=self.url, **kwargs)

    def corporate_actions_client(self, **kwargs: Any) -> Any:
        from alpaca.data.historical.corporate_actions import CorporateActionsClient

        return CorporateActionsClient(self.api_key, self.secret_key, url_override=self.url, **kwargs)

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SimMarket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sim_market(
    clock: Clock | None = None,
    seed: int = 42,
    initial_cash: float = 10_000.0,
    start: datetime | None = None,
    *,
    rate_limit_per_minute: int = 200,
    port: int = 0,
    fractional_trading: bool = True,
    fill_delay_seconds: float = 1.0,
    closures: Iterable[date] = (),
    max_url_bytes: int | None = None,
) -> SimMarket:
    """Start a market on 127.0.0.1 (a free port unless `port` is given).

    The clock: `clock` if given, else a SimClock at `start` if given, else wall time. `closures`:
    sessions of the calendar the market does not open (unscheduled closures, docs/simulated-market.md).
    `max_url_bytes`: longer request targets get a 414 (default DEFAULT_MAX_URL_BYTES;
    `server.max_url_bytes` can change it later).
    """
    from core.sim.bars import SyntheticBars
    from core.sim.exchange import SimExchange
    from core.sim.server import DEFAULT_MAX_URL_BYTES, SimMarketServer

    if clock is None:
        clock = SimClock(start) if start is not None else SystemClock()
    bars = SyntheticBars(seed, closures=closures)
    exchange = SimExchange(
        clock,
        bars,
        initial_cash=initial_cash,
        fractional_trading=fractional_trading,
        fill_delay_seconds=fill_delay_seconds,
    )
    server = SimMarketServer(
        exchange,
        bars,
        port=port,
        api_key=SIM_API_KEY,
        secret_key=SIM_SECRET_KEY,
        rate_limit_per_minute=rate_limit_per_minute,
        fault_seed=seed,
        max_url_bytes=DEFAULT_MAX_URL_BYTES if max_url_bytes is None else max_url_bytes,
    )
    server.start()
    return SimMarket(clock, bars, exchange, server)
