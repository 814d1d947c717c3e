"""Choose the market: the real Alpaca API when keys are configured, else the embedded simulated
market on 127.0.0.1. Either way the daemon talks through the real alpaca-py SDK."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from config.settings import AppConfig
from core.broker.alpaca_gateway import AlpacaGateway
from core.domain.clock import Clock, SimClock, SystemClock

if TYPE_CHECKING:
    from core.sim import SimMarket

SIM_BANNER = ("Using the built-in simulated market on 127.0.0.1 (no Alpaca credentials configured): "
              "no account, no network, no real orders.")
SIM_BANNER_FORCED = ("Using the built-in simulated market on 127.0.0.1 (--sim; the configured Alpaca keys are "
                     "not used): no account, no network, no real orders.")


def sim_banner(config: AppConfig) -> str:
    return SIM_BANNER_FORCED if config.has_credentials else SIM_BANNER


@dataclass
class MarketConnection:
    gateway: AlpacaGateway
    clock: Clock
    sim: SimMarket | None = None   # the simulated market, when simulated

    @property
    def simulated(self) -> bool:
        return self.sim is not None

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


def connect(config: AppConfig, clock: Clock | None = None, *, force_sim: bool = False,
            sim_start: datetime | None = None) -> MarketConnection:
    if config.has_credentials and not force_sim:
        clock = clock or SystemClock()
        return MarketConnection(AlpacaGateway(config, clock), clock)
    from core.sim import start_sim_market

    if clock is None:
        clock = SimClock(sim_start) if sim_start is not None else SystemClock()
    sim = start_sim_market(clock=clock, seed=config.sim_seed, initial_cash=config.sim_initial_cash)
    gateway = AlpacaGateway(config, clock, api_key=sim.api_key, secret_key=sim.secret_key,
                            trading_url=sim.url, data_url=sim.url)
    return MarketConnection(gateway, clock, sim)
