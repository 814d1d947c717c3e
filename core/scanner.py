"""Scanner ranking: the most attractive symbols of the WHOLE universe, plus the baseline. Pure.

    eligible  = symbols with a finite score and score < oversold_z (the strategy's scan threshold)
    selected  = the top_n lowest scores among eligible (ties broken by symbol)
    symbols   = selected + baseline symbols not already selected

The score is the selected strategy's own (lower = more attractive; the z-score strategy's is z), so the
scanner ranks by the measure the entry rule uses. `score_name` and `no_score_reason` only word the
exclusion reasons.

The universe is always the configured one, never the previous candidates, so the scanner cannot
feed on its own output. The daily scan (core/daily_scan.py) and the backtest both call
`rank_candidates()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from config.universe import BASELINE_SYMBOLS


@dataclass(frozen=True)
class CandidateSelection:
    symbols: list[str]
    scores: dict[str, float]
    excluded: dict[str, str] = field(default_factory=dict)


def rank_candidates(zscores: Mapping[str, float], *, top_n: int = 10, oversold_z: float = -1.0,
                    baseline: Sequence[str] = BASELINE_SYMBOLS,
                    data_exclusions: Mapping[str, str] | None = None, score_name: str = "z",
                    no_score_reason: str = "no z-score (not enough clean bars)") -> CandidateSelection:
    if not 1 <= top_n <= 50:
        raise ValueError(f"top_n {top_n!r} must be between 1 and 50")
    excluded: dict[str, str] = dict(data_exclusions or {})
    scores: dict[str, float] = {}
    eligible: list[tuple[float, str]] = []
    for symbol, z in zscores.items():
        if symbol in excluded:
            continue
        if z is None or not math.isfinite(z):
            excluded[symbol] = no_score_reason
            continue
        scores[symbol] = round(float(z), 4)
        if z < oversold_z:
            eligible.append((float(z), symbol))
        else:
            excluded[symbol] = f"{score_name}={z:.2f} is not below the oversold threshold {oversold_z:.2f}"
    eligible.sort()
    selected = [symbol for _, symbol in eligible[:top_n]]
    for z, symbol in eligible[top_n:]:
        excluded[symbol] = f"{score_name}={z:.2f} is oversold but outside the top {top_n}"
    symbols = selected + [s for s in baseline if s not in selected]
    for symbol in symbols:
        excluded.pop(symbol, None)
    return CandidateSelection(symbols=symbols, scores=scores, excluded=excluded)
