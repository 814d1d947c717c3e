"""The daily scan (4:05 PM New York): rank the WHOLE configured universe by the selected strategy's
score (the z-score strategy's z by default) and write candidates.json atomically. Run by
`trading-daemon scan` (and so by the scanner timer and `scripts/scan_opportunities.py`) and by the
simulated run's 16:05 task. The ranking itself is pure: core/scanner.py.

One batched bars fetch for the universe; symbols whose data fails validation are listed in
`excluded` with the reason. On a day that is not a session it does nothing and says so.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from config.settings import AppConfig
from core.domain.clock import Clock
from core.domain.market_calendar import MarketCalendar, get_market_calendar, new_york_time
from core.domain.ports import MarketDataPort
from core.scanner import rank_candidates
from core.state.candidates import CandidatesFile, write_candidates

log = structlog.get_logger("scanner")


def scan(config: AppConfig, market: MarketDataPort, clock: Clock, calendar: MarketCalendar | None = None,
         output: Path | None = None) -> CandidatesFile | None:
    """Run one scan. Returns the written file, or None on a non-session day."""
    from agents.data_agent import DataAgent
    from agents.signal_agent import SignalAgent

    calendar = calendar or get_market_calendar()
    now = clock.now()
    today = new_york_time(now).date()
    if not calendar.is_session(today):
        log.info("scan_skipped", reason=f"{today} is not an NYSE session; candidates.json left unchanged")
        return None
    agent = DataAgent(config, market=market, clock=clock, calendar=calendar)
    signals = SignalAgent.from_config(config, calendar)
    universe = config.symbols
    bars = agent.process(universe, limit=signals.bars_to_fetch)
    # The scanner ranks by the score the entry rule uses, computed the way the SignalAgent computes it.
    scores = signals.scores_at(signals.prepare(bars.panel()), -1)
    selection = rank_candidates(scores, top_n=config.scanner_top_n, oversold_z=signals.scan_threshold,
                                data_exclusions=bars.excluded, score_name=signals.strategy.score_name,
                                no_score_reason=signals.strategy.no_score_reason())
    as_of = bars.as_of or calendar.last_completed_session(now)
    result = CandidatesFile(
        as_of=as_of, generated_at=now, universe_size=len(universe), symbols=selection.symbols,
        scores=selection.scores, excluded=selection.excluded,
    )
    path = output or config.candidates_path
    write_candidates(path, result)
    log.info("scan_complete", as_of=as_of.isoformat(), path=str(path), symbols=selection.symbols,
             universe_size=len(universe), excluded=len(selection.excluded), data_requests=bars.requests)
    return result


def scan_with_config(config: AppConfig, clock: Clock | None = None) -> CandidatesFile | None:
    from core.broker.factory import connect

    connection = connect(config, clock=clock)
    try:
        return scan(config, connection.gateway, connection.clock)
    finally:
        connection.close()


def describe(result: CandidatesFile | None, strategy: str = "") -> str:
    """One line: the candidates with their scores, saying whose score it is (a z-score, an RSI, ...)."""
    if result is None:
        return "scan skipped: not a trading session"
    shown = ", ".join(f"{s} ({result.scores.get(s, float('nan')):+.2f})" for s in result.symbols)
    scored = f" ({strategy} score in brackets; the baseline SPY and QQQ always included)" if strategy else ""
    return f"candidates for {result.as_of}{scored}: {shown}"
