"""Scanner ranking: most oversold first, top N, baseline always, reasons for the rest."""

from __future__ import annotations

import math

from core.scanner import rank_candidates


def test_ranks_top_n_below_threshold_and_adds_baseline() -> None:
    zs = {f"S{chr(65 + i)}": -3.0 + i * 0.25 for i in range(12)}  # SA=-3.0 ... SL=-0.25
    zs.update({"SPY": 0.5, "QQQ": -0.2, "XOM": math.nan})
    sel = rank_candidates(zs, top_n=5, oversold_z=-1.0, data_exclusions={"BAD": "stale"})
    assert sel.symbols == ["SA", "SB", "SC", "SD", "SE", "SPY", "QQQ"]
    assert "outside the top 5" in sel.excluded["SF"]
    assert "not below the oversold threshold" in sel.excluded["SL"]
    assert sel.excluded["BAD"] == "stale" and "no z-score" in sel.excluded["XOM"]
    assert "SPY" not in sel.excluded and sel.scores["SA"] == -3.0


def test_fewer_oversold_than_top_n_keeps_only_real_candidates() -> None:
    sel = rank_candidates({"AAPL": -1.5, "MSFT": 0.3}, top_n=10, oversold_z=-1.0)
    assert sel.symbols == ["AAPL", "SPY", "QQQ"]


def test_oversold_baseline_is_not_duplicated() -> None:
    sel = rank_candidates({"SPY": -2.0, "AAPL": -1.5}, top_n=5)
    assert sel.symbols == ["SPY", "AAPL", "QQQ"]
