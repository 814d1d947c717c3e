"""Signal step with the z-score strategy: entry/exit rules with their reasons.

The look-ahead test runs against every built-in strategy: tests/unit/test_strategies.py."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from agents.signal_agent import Holding, PreparedPanel, RiskExitParams, SignalAgent
from agents.strategies.zscore import ZScoreStrategy
from core.domain.bar_panel import BarPanel
from core.domain.indicators import rolling_zscore
from core.domain.market_calendar import get_market_calendar
from core.domain.models import Side, SignalReason

CAL = get_market_calendar()
SESSIONS = CAL.sessions_between(date(2024, 1, 2), date(2024, 12, 31))


def _agent() -> SignalAgent:
    return SignalAgent(ZScoreStrategy(), CAL, RiskExitParams())


def _panel(closes: np.ndarray, symbols: list[str]) -> PreparedPanel:
    return _agent().prepare(BarPanel.from_closes(SESSIONS[: closes.shape[0]], symbols, closes))


def test_zscore_matches_definition() -> None:
    rng = np.random.default_rng(1)
    closes = 100 + rng.normal(0, 1, 60).cumsum()
    z = rolling_zscore(closes, 20)
    window = closes[40:60]
    expected = (closes[59] - window.mean()) / window.std(ddof=1)
    assert z[59] == pytest.approx(expected)
    assert np.isnan(z[:19]).all() and np.isfinite(z[19:]).all()


def test_zero_variance_window_gives_nan_not_signal() -> None:
    closes = np.full((30, 1), 50.0)
    assert _agent().signals_at(_panel(closes, ["SPY"]), -1, {}) == []


def test_entry_when_z_below_threshold() -> None:
    closes = np.full((30, 1), 100.0) + np.tile([0.5, -0.5], 15)[:, None]
    closes[-1, 0] = 90.0
    signals = _agent().signals_at(_panel(closes, ["AAPL"]), -1, {})
    assert len(signals) == 1
    sig = signals[0]
    assert (sig.symbol, sig.side, sig.reason) == ("AAPL", Side.BUY, SignalReason.ENTRY_OVERSOLD)
    assert sig.zscore <= -2.0 and sig.price == 90.0 and sig.session == SESSIONS[29]
    assert sig.bar_time.isoformat() == "2024-02-13T05:00:00+00:00"


@pytest.mark.parametrize(
    ("last_close", "entry_price", "entry_offset", "reason"),
    [
        (91.0, 100.0, 2, SignalReason.EXIT_STOP_LOSS),      # -9% from entry
        (99.0, 99.5, 10, SignalReason.EXIT_MAX_HOLDING),    # held 10 sessions
        (101.0, 99.0, 2, SignalReason.EXIT_MEAN_REVERTED),  # z >= 0
    ],
)
def test_each_exit_has_its_reason(last_close: float, entry_price: float, entry_offset: int,
                                  reason: SignalReason) -> None:
    closes = np.full((30, 1), 100.0) + np.tile([0.5, -0.5], 15)[:, None]
    closes[-1, 0] = last_close
    holding = Holding(entry_price=entry_price, entry_session=SESSIONS[29 - entry_offset])
    signals = _agent().signals_at(_panel(closes, ["MSFT"]), -1, {"MSFT": holding})
    assert [(s.side, s.reason) for s in signals] == [(Side.SELL, reason)]


def test_held_symbol_without_exit_condition_gives_nothing() -> None:
    closes = np.full((30, 1), 100.0) + np.tile([0.5, -0.5], 15)[:, None]
    closes[-1, 0] = 99.0
    holding = Holding(entry_price=99.0, entry_session=SESSIONS[27])
    assert _agent().signals_at(_panel(closes, ["MSFT"]), -1, {"MSFT": holding}) == []


def test_parameters_come_from_config() -> None:
    from config.settings import get_config

    agent = SignalAgent.from_config(get_config(env_file=None, zscore_lookback=30, entry_z=1.5, exit_z=0.5,
                                               stop_loss_pct=0.1, max_holding_sessions=5), CAL)
    assert isinstance(agent.strategy, ZScoreStrategy)
    assert agent.strategy.params == ZScoreStrategy.Params(lookback=30, entry_z=1.5, exit_z=0.5)
    assert agent.exits == RiskExitParams(stop_loss_pct=0.1, max_holding_sessions=5)
