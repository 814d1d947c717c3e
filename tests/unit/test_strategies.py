"""The strategy interface: every built-in keeps the contract (no look-ahead, finite memory, per symbol),
RSI(2) on hand-worked bars, the risk exits around any strategy, and the loader's one-line errors."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from agents.signal_agent import Holding, RiskExitParams, SignalAgent
from agents.strategies import (
    BarPanel,
    HeldPosition,
    Indicators,
    Parameters,
    RiskExit,
    Strategy,
    StrategyError,
)
from agents.strategies.loader import BUILTIN_STRATEGIES, load_strategy, strategy_class
from agents.strategies.rsi2 import Rsi2Strategy
from core.domain.indicators import rolling_mean, rolling_sum, wilder_rsi
from core.domain.market_calendar import get_market_calendar
from core.domain.models import Side, SignalReason
from tests.harness.config import REPO_ROOT

CAL = get_market_calendar()
SESSIONS = CAL.sessions_between(date(2020, 1, 2), date(2024, 12, 31))
BUILTINS = sorted(BUILTIN_STRATEGIES)


def _random_panel(rows: int, symbols: int, seed: int) -> BarPanel:
    """Random walks with a mild upward drift (so trend filters pass sometimes) and a gap in one symbol."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(rng.normal(0.0004, 0.02, (rows, symbols)).cumsum(axis=0))
    closes[rows // 3: rows // 3 + 5, 1] = np.nan  # a symbol that did not trade for a week
    return BarPanel.from_closes(SESSIONS[:rows], [f"S{j}" for j in range(symbols)], closes)


# ------------------------------------------------------------------ the contract, for every built-in
@pytest.mark.parametrize("name", BUILTINS)
def test_no_look_ahead_changing_future_bars_changes_no_signal(name: str) -> None:
    """Signals for session t use bars up to t only: rewrite every later bar, nothing before t moves."""
    agent = SignalAgent(BUILTIN_STRATEGIES[name](), CAL, RiskExitParams())
    base = _random_panel(900, 6, seed=7)
    cut = 700
    rng = np.random.default_rng(8)
    tampered_close = base.close.copy()
    tampered_close[cut + 1:] = rng.uniform(1, 1000, tampered_close[cut + 1:].shape)
    tampered = BarPanel.from_closes(base.sessions, base.symbols, tampered_close)
    p1, p2 = agent.prepare(base), agent.prepare(tampered)
    # S0..S2 held with no stop and no holding limit, so their exits come from the strategy's own rule.
    holdings = {s: Holding(entry_price=0.0, entry_session=None) for s in ("S0", "S1", "S2")}
    kinds: set[tuple[Side, SignalReason]] = set()
    for t in range(cut + 1):
        a = _comparable(agent.signals_at(p1, t, holdings))
        assert a == _comparable(agent.signals_at(p2, t, holdings))
        kinds |= {(side, reason) for _, side, _, _, reason in a}
    strategy = agent.strategy
    assert {(Side.BUY, strategy.entry_reason), (Side.SELL, strategy.exit_reason)} <= kinds  # real signals compared
    assert any(_comparable(agent.signals_at(p1, t, holdings)) != _comparable(agent.signals_at(p2, t, holdings))
               for t in range(cut + 1, 900))


def _comparable(signals: list[Any]) -> list[tuple[Any, ...]]:
    """Signals as tuples in which a missing score (NaN, as an exit outside a trend filter has) compares equal."""
    return [(s.symbol, s.side, s.price, None if math.isnan(s.zscore) else s.zscore, s.reason) for s in signals]


@pytest.mark.parametrize("name", BUILTINS)
def test_row_depends_only_on_the_last_bars_needed_rows(name: str) -> None:
    """What makes the live loop (2 x bars_needed bars) and the backtest (years of bars) agree exactly."""
    strategy = BUILTIN_STRATEGIES[name]()
    panel = _random_panel(700, 5, seed=11)
    full = strategy.compute(panel)
    needed = strategy.bars_needed()
    checked = 0
    for t in range(needed - 1, 700, 13):
        window = BarPanel.from_closes(panel.sessions[t - needed + 1: t + 1], panel.symbols,
                                      panel.close[t - needed + 1: t + 1])
        short = strategy.compute(window)
        for field in ("entry", "exit", "score"):
            assert np.array_equal(getattr(full, field)[t], getattr(short, field)[-1], equal_nan=True), (field, t)
        checked += int(np.isfinite(short.score[-1]).sum())
    assert checked > 0
    assert not np.isfinite(full.score[: needed - 1]).any(), "a value before the warm-up is complete"


@pytest.mark.parametrize("name", BUILTINS)
def test_a_symbol_s_values_do_not_depend_on_the_other_symbols(name: str) -> None:
    """Live the panel holds the focus symbols, in the backtest the whole universe: same values per symbol."""
    strategy = BUILTIN_STRATEGIES[name]()
    panel = _random_panel(600, 6, seed=5)
    full = strategy.compute(panel)
    part = strategy.compute(panel.select(["S4", "S1"]))
    for field in ("entry", "exit"):
        assert np.array_equal(getattr(full, field)[:, [4, 1]], getattr(part, field)), field
    # The z-score's numpy reduction order depends on the panel's width: equal to ~1e-14, not bit for bit.
    np.testing.assert_allclose(full.score[:, [4, 1]], part.score, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_has_documented_parameters_and_a_working_default(name: str) -> None:
    cls = BUILTIN_STRATEGIES[name]
    assert cls.name == name and strategy_class(name) is cls
    assert all(field.description for field in cls.Params.model_fields.values())
    assert load_strategy(name).bars_needed() >= 1
    docs = (REPO_ROOT / "docs" / "strategies.md").read_text()
    assert f"`{name}`" in docs and all(f"`{key}`" in docs for key in cls.Params.model_fields)


# ------------------------------------------------------------------ indicators, worked by hand
def test_rolling_sum_and_mean_match_the_definition_and_forget_a_gap() -> None:
    values = np.array([1.0, 2.0, 4.0, 8.0, np.nan, 16.0, 32.0, 64.0, 128.0])
    assert rolling_sum(values, 3)[2:4].tolist() == [7.0, 14.0]
    assert np.isnan(rolling_sum(values, 3)[[0, 1, 4, 5, 6]]).all()  # not full, then the gap in the window
    assert rolling_sum(values, 3)[7:].tolist() == [112.0, 224.0]
    assert rolling_sum(values, 2, decay=0.5)[3] == 8.0 + 0.5 * 4.0
    assert rolling_mean(values, 4)[3] == (1 + 2 + 4 + 8) / 4


def test_wilder_rsi_on_hand_worked_closes() -> None:
    # changes: +1, -0.5, +1, -0.5, -2.  RSI(2), 2 smoothing steps after the seed:
    # row 4: seed at row 2 = mean of changes 1..2: up 0.5, down 0.25; row 3: up (0.5+1)/2 = 0.75,
    #        down (0.25+0)/2 = 0.125; row 4: up 0.375, down 0.3125 -> 100 * 0.375 / 0.6875 = 54.545...
    # row 5: seed at row 3 (changes 2..3): up 0.5, down 0.25; row 4: up 0.25, down 0.375;
    #        row 5: up 0.125, down 1.1875 -> 100 * 0.125 / 1.3125 = 9.5238...
    rsi = wilder_rsi(np.array([10.0, 11.0, 10.5, 11.5, 11.0, 9.0]), period=2, smoothing=2)
    assert np.isnan(rsi[:4]).all()
    assert rsi[4] == pytest.approx(100 * 0.375 / 0.6875)
    assert rsi[5] == pytest.approx(100 * 0.125 / 1.3125)


def test_wilder_rsi_with_full_smoothing_is_the_textbook_recursion() -> None:
    closes = 100 * np.exp(np.random.default_rng(2).normal(0, 0.02, 60).cumsum())
    change = np.diff(closes)
    up, down = np.maximum(change, 0), np.maximum(-change, 0)
    avg_up, avg_down = up[:3].mean(), down[:3].mean()  # RSI(3): seeded with the first 3 changes
    for u, d in zip(up[3:], down[3:], strict=True):
        avg_up, avg_down = (2 * avg_up + u) / 3, (2 * avg_down + d) / 3
    textbook = 100 - 100 / (1 + avg_up / avg_down)
    assert wilder_rsi(closes, period=3, smoothing=56)[-1] == pytest.approx(textbook, rel=1e-12)


# ------------------------------------------------------------------ RSI(2) signals, worked by hand
RSI2_SMALL = Rsi2Strategy.Params(rsi_period=2, rsi_smoothing=2, entry_below=10, trend_days=8, exit_days=2,
                                 scan_below=30)
#        row:    0     1     2     3     4     5     6     7     8     9
UP = [10.0, 10.0, 10.0, 10.0, 15.0, 15.0, 15.0, 14.5, 14.0, 14.6]
DOWN = [20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 19.5, 19.0, 18.5, 18.0]


def _rsi2_panel() -> tuple[SignalAgent, Any]:
    agent = SignalAgent(Rsi2Strategy(RSI2_SMALL), CAL, RiskExitParams())
    closes = np.array([UP, DOWN]).T
    return agent, agent.prepare(BarPanel.from_closes(SESSIONS[:10], ["UP", "DOWN"], closes))


def test_rsi2_indicators_on_hand_worked_bars() -> None:
    _, prepared = _rsi2_panel()
    rsi = prepared.indicators.extra["rsi"]
    # UP, row 6: changes 3..6 = 0, +5, 0, 0; seed (changes 3..4) up 2.5, down 0 -> up 1.25, 0.625; down 0 -> 100.
    # row 7: changes 4..7 = +5, 0, 0, -0.5; seed up 2.5 -> 1.25 -> 0.625; down 0 -> 0 -> 0.25 -> 100*0.625/0.875.
    # row 8: changes 5..8 = 0, 0, -0.5, -0.5: up 0 throughout, down 0.25 -> 0.375 -> RSI 0.
    assert rsi[6, 0] == 100.0 and rsi[7, 0] == pytest.approx(100 * 0.625 / 0.875) and rsi[8, 0] == 0.0
    assert rsi[8, 1] == 0.0  # DOWN: changes 0, -0.5, -0.5, -0.5
    # SMA(8) at row 8 (rows 1..8): UP (10*3 + 15*3 + 14.5 + 14) / 8 = 12.9375 < 14 (uptrend);
    # DOWN (20*5 + 19.5 + 19 + 18.5) / 8 = 19.625 > 18.5 (no uptrend: no entry, no score).
    assert prepared.indicators.entry[:, 0].tolist() == [False] * 8 + [True, False]
    assert not prepared.indicators.entry[:, 1].any()
    assert prepared.indicators.score[8, 0] == 0.0 and math.isnan(prepared.indicators.score[8, 1])
    # SMA(2): row 8 UP (14.5 + 14) / 2 = 14.25 > 14 (no exit); row 9 (14 + 14.6) / 2 = 14.3 < 14.6 (exit).
    assert prepared.indicators.exit[8, 0] == False and prepared.indicators.exit[9, 0] == True  # noqa: E712


def test_rsi2_signals_on_hand_worked_bars() -> None:
    agent, prepared = _rsi2_panel()
    entries = [(t, s.symbol, s.side, s.reason, s.zscore) for t in range(10) for s in agent.signals_at(prepared, t, {})]
    assert entries == [(8, "UP", Side.BUY, SignalReason.ENTRY_OVERSOLD, 0.0)]
    held = {"UP": Holding(entry_price=14.0, entry_session=SESSIONS[8])}
    assert agent.signals_at(prepared, 8, held) == []  # held: no second entry, close 14 not above SMA(2)
    exit_ = agent.signals_at(prepared, 9, held)
    assert [(s.symbol, s.side, s.reason, s.price) for s in exit_] == [
        ("UP", Side.SELL, SignalReason.EXIT_MEAN_REVERTED, 14.6)]


def test_rsi2_rejects_a_scanner_threshold_stricter_than_its_entry() -> None:
    with pytest.raises(StrategyError, match="scan_below 5 is below entry_below 10"):
        load_strategy("rsi2", {"scan_below": 5})


# ------------------------------------------------------------------ risk exits around any strategy
class _AlwaysIn(Strategy):
    """Enters everything, never exits by itself, keeps its own stop at -50%."""

    name = "always_in"
    own_exits: ClassVar[frozenset[RiskExit]] = frozenset({RiskExit.STOP_LOSS})
    seen: ClassVar[list[HeldPosition]] = []

    def bars_needed(self) -> int:
        return 1

    def compute(self, bars: BarPanel) -> Indicators:
        shape = bars.shape
        return Indicators(np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool), np.zeros(shape))

    def exit_signal(self, bars: BarPanel, indicators: Indicators, row: int, col: int,
                    position: HeldPosition) -> SignalReason | None:
        self.seen.append(position)
        return SignalReason.EXIT_STOP_LOSS if bars.close[row, col] <= 0.5 * position.entry_price else None


def test_own_stop_loss_replaces_the_pipeline_s_and_max_holding_still_applies() -> None:
    agent = SignalAgent(_AlwaysIn(), CAL, RiskExitParams(stop_loss_pct=0.08, max_holding_sessions=10))
    prepared = agent.prepare(BarPanel.from_closes(SESSIONS[:12], ["A", "B", "C"], np.array([[90.0, 40.0, 100.0]] * 12)))
    holdings = {"A": Holding(100.0, SESSIONS[9]), "B": Holding(100.0, SESSIONS[9]), "C": Holding(100.0, SESSIONS[0])}
    signals = agent.signals_at(prepared, 11, holdings)
    # A is 10% down: the pipeline's 8% stop is the strategy's own business, which holds at -50%.
    assert [(s.symbol, s.reason) for s in signals] == [("B", SignalReason.EXIT_STOP_LOSS),
                                                       ("C", SignalReason.EXIT_MAX_HOLDING)]
    assert HeldPosition("A", 100.0, SESSIONS[9], 2) in _AlwaysIn.seen


def test_without_own_exits_the_pipeline_stop_loss_comes_first() -> None:
    agent = SignalAgent(BUILTIN_STRATEGIES["rsi2"](), CAL, RiskExitParams(stop_loss_pct=0.08))
    prepared = agent.prepare(BarPanel.from_closes(SESSIONS[:3], ["A"], np.array([[100.0], [95.0], [91.0]])))
    signals = agent.signals_at(prepared, 2, {"A": Holding(100.0, SESSIONS[0])})
    assert [(s.side, s.reason) for s in signals] == [(Side.SELL, SignalReason.EXIT_STOP_LOSS)]


def test_a_compute_result_of_the_wrong_shape_is_a_strategy_error() -> None:
    class Wrong(_AlwaysIn):
        def compute(self, bars: BarPanel) -> Indicators:
            return Indicators(np.ones(3, dtype=bool), np.ones(3, dtype=bool), np.zeros(3))

    agent = SignalAgent(Wrong(), CAL)
    with pytest.raises(StrategyError, match=r"returned entry of shape \(3,\): expected \(2, 1\)"):
        agent.prepare(BarPanel.from_closes(SESSIONS[:2], ["A"], np.ones((2, 1))))


# ------------------------------------------------------------------ loading and parameters
@pytest.mark.parametrize(("reference", "params", "message"), [
    ("nosuch", {}, "strategy 'nosuch' is unknown: expected a built-in name (zscore, rsi2)"),
    ("no_such_module:Cls", {}, "cannot import 'no_such_module'"),
    ("agents.strategies.zscore:Missing", {}, "agents.strategies.zscore defines no 'Missing'"),
    ("agents.strategies.base:Parameters", {}, "Parameters does not implement the strategy interface: expected a "
                                              "subclass of agents.strategies.Strategy"),
    ("agents.strategies.base:Strategy", {}, "it does not define bars_needed, compute"),
    ("zscore", {"entry_z": "lots"}, "strategy 'zscore': parameter entry_z='lots': expected a finite number"),
    ("zscore", {"lookback": 1}, "parameter lookback=1: expected a number >= 2"),
    ("rsi2", {"entry_z": 2}, "no parameter 'entry_z' (its parameters: rsi_period, rsi_smoothing"),
])
def test_loader_errors_name_the_value_and_what_was_expected(reference: str, params: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(StrategyError) as caught:
        load_strategy(reference, params)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_legacy_settings_are_the_zscore_defaults_and_strategy_params_override_them() -> None:
    from config.settings import get_config

    config = get_config(env_file=None, zscore_lookback=30, entry_z=1.5, strategy_params={"entry_z": "2.5"})
    strategy = load_strategy(config.strategy, config.strategy_params, config)
    assert strategy.params.model_dump() == {"lookback": 30, "entry_z": 2.5, "exit_z": 0.0, "scanner_oversold_z": -1.0}


def test_a_strategy_file_is_loaded_once_per_process(tmp_path: Path) -> None:
    path = tmp_path / "mine.py"
    path.write_text("from agents.strategies.zscore import ZScoreStrategy\n\n"
                    "class Mine(ZScoreStrategy):\n    name = 'mine'\n")
    first = strategy_class(f"{path}:Mine")
    assert strategy_class(f"{path}:Mine") is first and first.name == "mine"
    assert isinstance(load_strategy(f"{path}:Mine", {"lookback": 5}).params, Parameters)
    with pytest.raises(StrategyError, match="is not a file"):
        strategy_class(f"{tmp_path / 'missing.py'}:Mine")


def test_the_live_panel_aligns_every_price_column_on_the_union_of_sessions() -> None:
    from agents.data_agent import BarData, SymbolBars
    from core.domain.market_calendar import bar_timestamp

    days = SESSIONS[:3]
    ns = np.array([int(bar_timestamp(d).timestamp() * 1e9) for d in days], dtype=np.int64)
    data = BarData()
    #                              open high  low  close volume trades vwap
    data.bars["A"] = SymbolBars(ns, np.array([[1, 2, 0.5, 1.5, 10, 1, 1]] * 3, dtype=float))
    data.bars["B"] = SymbolBars(ns[[0, 2]], np.array([[5, 6, 4, 5.5, 20, 1, 5], [7, 8, 6, 7.5, 30, 1, 7]], dtype=float))
    panel = data.panel()
    assert panel.sessions == days and panel.symbols == ["A", "B"]
    assert panel.close[:, 0].tolist() == [1.5] * 3 and panel.high[:, 0].tolist() == [2.0] * 3
    assert panel.open[0, 1] == 5 and math.isnan(panel.open[1, 1]) and panel.volume[2, 1] == 30
