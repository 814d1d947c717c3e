"""DataAgent: daily bars for many symbols in one batched request, validated and cached.

- One multi-symbol request (`_fetch_alpaca_batch`) for all symbols, de-duplicated; the SDK pages
  only when more than 10,000 bars are due. Windows are set by start/end, never by the global
  `limit` (which counts all symbols together and would starve the later ones).
- An incremental cache: a later call for the same symbols asks only for bars newer than the cache.
- Every symbol's bars are validated; a bad set is excluded with a reason in `result.excluded`
  and a log line. A symbol is never dropped silently, so the universe never narrows by accident.
- Frames hold completed sessions only. While a session is open, its in-progress bar gives
  `result.current_prices[symbol]` (used by the drift check), never a signal.
"""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import structlog

from config.settings import AppConfig
from config.universe import is_valid_ticker
from core.bar_validation import REQUIRED_KEYS, validate_freshness, validate_ohlc, validate_order
from core.clock import Clock
from core.errors import BrokerError, DataError
from core.market_calendar import MarketCalendar, bar_timestamp, get_market_calendar, session_of_bar
from core.ports import MarketDataPort

log = structlog.get_logger("data_agent")

COLUMNS = ["open", "high", "low", "close", "volume", "trade_count", "vwap"]


class BarData(dict[str, pd.DataFrame]):
    """`{symbol: DataFrame}` plus what the fetch learned about the symbols it could not use."""

    def __init__(self) -> None:
        super().__init__()
        self.excluded: dict[str, str] = {}
        self.current_prices: dict[str, float] = {}
        self.requests: int = 0
        self.as_of: date | None = None
        self.cpu_seconds: float = 0.0      # the agent's own CPU time, excluding the HTTP fetches


class DataAgent:
    """The seed's DataAgent. `process()` is the whole public surface."""

    def __init__(self, config: AppConfig, market: MarketDataPort | None = None, clock: Clock | None = None,
                 calendar: MarketCalendar | None = None) -> None:
        self.config = config
        self._connection: Any = None
        if market is None:
            from core.broker.factory import connect

            self._connection = connect(config, clock=clock)
            market = self._connection.gateway
            clock = clock or self._connection.clock
        self.market: MarketDataPort = market
        if clock is None:
            from core.clock import SystemClock

            clock = SystemClock()
        self.clock: Clock = clock
        self.calendar = calendar or get_market_calendar()
        self._cache: dict[str, pd.DataFrame] = {}

    # ------------------------------------------------------------------ public
    def process(self, symbols: list[str], timeframe: str = "1Day", limit: int = 252) -> BarData:
        if timeframe not in ("1Day", "1D", "day"):
            raise ValueError(f"timeframe {timeframe!r} is not supported: expected '1Day' (daily bars)")
        if not isinstance(limit, int) or limit < 2:
            raise ValueError(f"limit {limit!r} must be a whole number of bars >= 2")
        result = BarData()
        cpu_start = time.process_time()
        fetch_cpu = 0.0
        now = self.clock.now()
        expected = self.calendar.last_completed_session(now)
        result.as_of = expected
        wanted: list[str] = []
        for symbol in dict.fromkeys(symbols):  # de-duplicate, keep order
            if is_valid_ticker(symbol):
                wanted.append(symbol)
            else:
                self._exclude(result, str(symbol), "not a valid US equity ticker; never sent to the API")
        if not wanted:
            result.cpu_seconds = time.process_time() - cpu_start
            return result

        cold_start = bar_timestamp(self.calendar.sessions_back(expected, limit - 1))
        groups: dict[datetime, list[str]] = {}
        for symbol in wanted:
            cached = self._cache.get(symbol)
            if cached is not None and len(cached) and cached.index[-1] >= cold_start:
                start = cached.index[-1].to_pydatetime() + timedelta(seconds=1)
            else:
                start = cold_start
            groups.setdefault(start, []).append(symbol)

        for start, group in groups.items():
            fetch_start = time.process_time()
            raw = self._fetch_alpaca_batch(group, start)
            fetch_cpu += time.process_time() - fetch_start
            result.requests += 1
            self._merge(group, raw, result, expected, limit, cold_start)
        result.cpu_seconds = time.process_time() - cpu_start - fetch_cpu
        return result

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ------------------------------------------------------------------ fetch
    def _fetch_alpaca_batch(self, symbols: list[str], start: datetime) -> dict[str, list[dict[str, Any]]]:
        """ONE multi-symbol bars request (the SDK follows next_page_token when > 10,000 bars)."""
        unique = list(dict.fromkeys(symbols))
        try:
            return self.market.get_daily_bars(unique, start=start)
        except BrokerError as exc:
            raise DataError(f"batch bars fetch for {len(unique)} symbols failed: {exc}") from exc

    # ------------------------------------------------------------------ parse, validate, cache
    def _merge(self, symbols: list[str], raw: dict[str, list[dict[str, Any]]], result: BarData,
               expected: date, limit: int, cold_start: datetime) -> None:
        for symbol in symbols:
            bars = raw.get(symbol)
            cached = self._cache.get(symbol)
            fresh_frame: pd.DataFrame | None = None
            partial_price: float | None = None
            if bars:
                parsed = self._parse(symbol, bars, expected)
                if isinstance(parsed, str):
                    self._exclude(result, symbol, parsed)
                    continue
                fresh_frame, partial_price = parsed
            elif cached is None:
                self._exclude(result, symbol, "missing from the batch answer (no bars returned)")
                continue
            frame = self._combine(cached, fresh_frame, limit, cold_start)
            if frame is None or frame.empty:
                self._exclude(result, symbol, "no completed daily bars in the window")
                continue
            last_session = session_of_bar(frame.index[-1].to_pydatetime())
            reason = validate_freshness(last_session, expected)
            if reason:
                self._exclude(result, symbol, reason)
                continue
            self._cache[symbol] = frame
            result[symbol] = frame
            result.current_prices[symbol] = partial_price if partial_price is not None else float(frame["close"].to_numpy()[-1])

    def _parse(self, symbol: str, bars: list[dict[str, Any]], expected: date) -> tuple[pd.DataFrame, float | None] | str:
        try:
            for key in REQUIRED_KEYS:
                if key not in bars[0]:
                    return f"bar field {key!r} missing from the answer"
            # Explicit ns: pandas 3 may infer microseconds, and the cutoff below is in nanoseconds.
            ts = pd.to_datetime([bar["t"] for bar in bars], utc=True, format="ISO8601").as_unit("ns")
            values = np.array(
                [[bar["o"], bar["h"], bar["l"], bar["c"], bar["v"],
                  bar.get("n") if bar.get("n") is not None else math.nan,
                  bar.get("vw") if bar.get("vw") is not None else math.nan] for bar in bars],
                dtype=float,
            )
        except (KeyError, TypeError, ValueError) as exc:
            return f"malformed bar data ({type(exc).__name__}: {str(exc)[:80]})"
        ts_ns = ts.asi8
        reason = validate_order(ts_ns) or validate_ohlc(values[:, 0], values[:, 1], values[:, 2], values[:, 3])
        if reason is None and (not np.all(np.isfinite(values[:, 4])) or np.any(values[:, 4] < 0)):
            reason = "invalid volume (NaN, inf or negative)"
        if reason:
            return reason
        # Bars after the last completed session are the in-progress session: a price, not a bar.
        cutoff_ns = int(bar_timestamp(expected).timestamp() * 1e9)
        completed = ts_ns <= cutoff_ns
        partial_price = float(values[~completed][-1, 3]) if not completed.all() else None
        frame = pd.DataFrame(values[completed], index=ts[completed], columns=COLUMNS)
        frame.index.name = "timestamp"
        return frame, partial_price

    @staticmethod
    def _combine(cached: pd.DataFrame | None, fresh: pd.DataFrame | None, limit: int,
                 cold_start: datetime) -> pd.DataFrame | None:
        if cached is None or cached.empty:
            frame = fresh
        elif fresh is None or fresh.empty:
            frame = cached
        else:
            newer = fresh[fresh.index > cached.index[-1]]
            frame = pd.concat([cached, newer]) if len(newer) else cached
        if frame is None:
            return None
        frame = frame[frame.index >= cold_start]
        return frame.iloc[-limit:] if len(frame) > limit else frame

    @staticmethod
    def _exclude(result: BarData, symbol: str, reason: str) -> None:
        result.excluded[symbol] = reason
        log.warning("symbol_excluded", symbol=symbol, reason=reason)
