"""DataAgent: daily bars for many symbols in one batched request, validated and cached.

- One multi-symbol request (`_fetch_alpaca_batch`) for all symbols, de-duplicated; the SDK pages
  only when more than 10,000 bars are due, and the gateway splits it only when the URL would be too
  long (above ~1,000 symbols). `result.requests` counts the HTTP requests, pages included.
  Windows are set by start/end, never by the global
  `limit` (which counts all symbols together and would starve the later ones).
- An incremental cache: a later call for the same symbols asks only for bars from the last cached
  one on. Once per session (the first fetch after a session completed) the whole window is asked
  afresh in the same single batched request, replacing the cache, so a feed's correction of any
  older bar (a bad print fixed later) reaches a running daemon. That overlapping bar is compared with the cached one: when the broker re-adjusted history
  (a split, or a cash dividend under `Adjustment.ALL`, which the adapter requests, re-bases every
  earlier bar as of the request's time), the symbols whose overlap differs are refetched over their
  whole window in ONE extra request, only on that event. The steady state stays at one request, and
  a cached pre-split bar is never mixed with post-split bars (a fake crash, a false stop-loss).
- Every symbol's bars are validated; a bad set is excluded with a reason in `result.excluded`
  and a log line. A symbol is never dropped silently, so the universe never narrows by accident.
- Frames hold completed sessions only. While a session is open, its in-progress bar gives
  `result.current_prices[symbol]` (used by the drift check), never a signal.

Internally bars are numpy arrays (timestamps in ns, a 7-column value block) parsed in one pass
for the whole batch; a pandas DataFrame is built only when a caller asks for a symbol, so the
agent's own CPU stays small at hundreds of symbols.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import structlog

from config.settings import AppConfig
from config.universe import is_valid_ticker
from core.domain.bar_panel import OHLCV_FIELDS, BarPanel
from core.domain.bar_validation import REQUIRED_KEYS, validate_freshness, validate_ohlc, validate_order
from core.domain.clock import Clock
from core.domain.errors import BrokerError, DataError
from core.domain.market_calendar import MarketCalendar, bar_timestamp, get_market_calendar, session_of_bar
from core.domain.ports import BarsAnswer, MarketDataPort, RawBars

log = structlog.get_logger("data_agent")

COLUMNS = ["open", "high", "low", "close", "volume", "trade_count", "vwap"]
_VALUES = itemgetter("o", "h", "l", "c", "v", "n", "vw")
_TIMESTAMP = itemgetter("t")
# The overlapping bar must repeat the cached prices to this relative tolerance: tight enough for any
# dividend factor that matters (a 0.3% dividend is a factor of 0.997; 1e-4 is a $0.01 dividend on a
# $100 stock), loose enough for the decimal formatting of the same price (4 decimals of a $1 stock).
READJUSTED_RTOL = 1e-4


@dataclass(frozen=True, slots=True)
class SymbolBars:
    """One symbol's completed daily bars: `ts` (ns since epoch, UTC) and `values` (n x 7, COLUMNS order)."""

    ts: np.ndarray
    values: np.ndarray

    def frame(self) -> pd.DataFrame:
        index = pd.DatetimeIndex(self.ts.astype("datetime64[ns]"), name="timestamp").tz_localize("UTC")
        return pd.DataFrame(self.values, index=index, columns=COLUMNS)

    @property
    def last_close(self) -> float:
        return float(self.values[-1, 3])


class BarData(Mapping[str, pd.DataFrame]):
    """`{symbol: DataFrame}` plus what the fetch learned about the symbols it could not use.

    Frames are built on first access; `panel()` gives the aligned OHLCV panel without them.
    """

    def __init__(self) -> None:
        self.bars: dict[str, SymbolBars] = {}
        self.excluded: dict[str, str] = {}
        self.current_prices: dict[str, float] = {}
        self.requests: int = 0
        self.as_of: date | None = None
        self.cpu_seconds: float = 0.0      # the agent's own CPU time, excluding the HTTP fetches
        self.readjusted: list[str] = []    # symbols refetched because the broker re-adjusted their history
        self._frames: dict[str, pd.DataFrame] = {}

    def __getitem__(self, symbol: str) -> pd.DataFrame:
        frame = self._frames.get(symbol)
        if frame is None:
            frame = self.bars[symbol].frame()
            self._frames[symbol] = frame
        return frame

    def __iter__(self) -> Iterator[str]:
        return iter(self.bars)

    def __len__(self) -> int:
        return len(self.bars)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.bars

    def panel(self) -> BarPanel:
        """Open, high, low, close and volume aligned on the union of sessions, without building frames."""
        symbols = list(self.bars)
        if not symbols:
            return BarPanel.empty()
        all_ts = np.unique(np.concatenate([self.bars[s].ts for s in symbols]))
        block = np.full((all_ts.size, len(symbols), len(OHLCV_FIELDS)), np.nan)
        for col, symbol in enumerate(symbols):
            bars = self.bars[symbol]
            block[np.searchsorted(all_ts, bars.ts), col] = bars.values[:, :len(OHLCV_FIELDS)]
        sessions = [session_of_bar(datetime.fromtimestamp(int(t) / 1e9, tz=UTC)) for t in all_ts]
        return BarPanel(sessions, symbols, *(np.ascontiguousarray(block[:, :, k]) for k in range(len(OHLCV_FIELDS))))


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
            from core.domain.clock import SystemClock

            clock = SystemClock()
        self.clock: Clock = clock
        self.calendar = calendar or get_market_calendar()
        self._cache: dict[str, SymbolBars] = {}
        self._cache_session: date | None = None   # the last completed session when the cache was refreshed cold

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

        cold_start = bar_timestamp(self.calendar.sessions_back(expected, limit - 1))
        cold_ns = _ns(cold_start)
        self._refresh_once_per_session(expected)
        groups: dict[datetime, list[str]] = {}
        for symbol in wanted:
            cached = self._cache.get(symbol)
            if cached is not None and cached.ts.size and cached.ts[-1] >= cold_ns:
                # AT the last cached bar, not after it: that bar comes back and tells whether history moved.
                start = pd.Timestamp(int(cached.ts[-1]), tz="UTC").to_pydatetime()
            else:
                start = cold_start
            groups.setdefault(start, []).append(symbol)

        readjusted: list[str] = []
        for start, group in groups.items():
            fetch_start = time.process_time()
            raw = self._fetch_alpaca_batch(group, start)
            fetch_cpu += time.process_time() - fetch_start
            result.requests += raw.requests if isinstance(raw, BarsAnswer) else 1
            readjusted += self._merge(group, raw, result, expected, limit, cold_ns)
        if readjusted:
            # One extra request for every symbol whose history moved: its whole window, afresh.
            log.info("history_readjusted", symbols=readjusted, effect="cached bars dropped; whole window refetched",
                     reason="the last cached bar came back with other prices (a split or a dividend adjustment)")
            for symbol in readjusted:
                self._cache.pop(symbol, None)
            fetch_start = time.process_time()
            raw = self._fetch_alpaca_batch(readjusted, cold_start)
            fetch_cpu += time.process_time() - fetch_start
            result.requests += raw.requests if isinstance(raw, BarsAnswer) else 1
            self._merge(readjusted, raw, result, expected, limit, cold_ns)
        result.readjusted = readjusted
        result.cpu_seconds = time.process_time() - cpu_start - fetch_cpu
        self._cache_session = expected
        return result

    def _refresh_once_per_session(self, expected: date) -> None:
        """The first fetch after a session completes asks for the whole window (the same one batched
        request), replacing the cache: a correction of ANY older bar by the feed (a bad print fixed
        after the fact) reaches a running daemon within a session. Within the session the incremental
        fetch and its overlap check go on."""
        if self._cache_session is not None and self._cache_session != expected and self._cache:
            log.info("bar_cache_refreshed", session=str(expected), symbols=len(self._cache),
                     reason="first fetch of a new session: the whole window afresh")
            self._cache.clear()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ------------------------------------------------------------------ fetch
    def _fetch_alpaca_batch(self, symbols: list[str], start: datetime) -> RawBars:
        """ONE multi-symbol bars request (the SDK follows next_page_token when > 10,000 bars)."""
        unique = list(dict.fromkeys(symbols))
        try:
            return self.market.get_daily_bars(unique, start=start)
        except BrokerError as exc:
            raise DataError(f"batch bars fetch for {len(unique)} symbols failed: {exc}") from exc

    # ------------------------------------------------------------------ parse, validate, cache
    def _merge(self, symbols: list[str], raw: RawBars, result: BarData,
               expected: date, limit: int, cold_ns: int) -> list[str]:
        """Merge a batch into the cache and the result; returns the symbols whose history was re-adjusted."""
        readjusted: list[str] = []
        parsed = _parse_batch({s: raw[s] for s in symbols if raw.get(s)}, _ns(bar_timestamp(expected)),
                              now_ns=_ns(self.clock.now()))
        for symbol in symbols:
            cached = self._cache.get(symbol)
            fresh = parsed.get(symbol)
            if isinstance(fresh, str):
                self._exclude(result, symbol, fresh)
                continue
            if fresh is None and cached is None:
                self._exclude(result, symbol, "missing from the batch answer (no bars returned)")
                continue
            fresh_bars, partial_price = fresh if fresh is not None else (None, None)
            if cached is not None and fresh_bars is not None and _history_moved(cached, fresh_bars):
                readjusted.append(symbol)
                continue
            bars = _combine(cached, fresh_bars, limit, cold_ns)
            if bars is None or bars.ts.size == 0:
                self._exclude(result, symbol, "no completed daily bars in the window")
                continue
            last_session = session_of_bar(pd.Timestamp(int(bars.ts[-1]), tz="UTC").to_pydatetime())
            reason = validate_freshness(last_session, expected)
            if reason:
                self._exclude(result, symbol, reason)
                continue
            self._cache[symbol] = bars
            result.bars[symbol] = bars
            result.current_prices[symbol] = partial_price if partial_price is not None else bars.last_close
        return readjusted

    @staticmethod
    def _exclude(result: BarData, symbol: str, reason: str) -> None:
        result.excluded[symbol] = reason
        log.warning("symbol_excluded", symbol=symbol, reason=reason)


def _ns(when: datetime) -> int:
    return int(pd.Timestamp(when).as_unit("ns").value)


def _parse_batch(raw: RawBars, cutoff_ns: int, *, now_ns: int | None = None
                 ) -> dict[str, tuple[SymbolBars, float | None] | str]:
    """Parse and validate every symbol's bars; a symbol maps to (bars, partial price) or a reason."""
    out: dict[str, tuple[SymbolBars, float | None] | str] = {}
    if not raw:
        return out
    # One pass over the whole batch: timestamps and values for every bar, then split per symbol.
    flat = [bar for bars in raw.values() for bar in bars]
    try:
        stamps = list(map(_TIMESTAMP, flat))
        unique = list(dict.fromkeys(stamps))  # a few hundred distinct sessions, not one per bar
        parsed = pd.to_datetime(unique, utc=True, format="ISO8601").as_unit("ns").asi8
        lookup = dict(zip(unique, parsed.tolist(), strict=True))
        ts = np.fromiter(map(lookup.__getitem__, stamps), dtype=np.int64, count=len(stamps))
        values = _values_array(flat)
    except (KeyError, TypeError, ValueError):
        # Some symbol carries a missing field or a malformed value: one symbol at a time, to name it.
        if len(raw) == 1:
            ((symbol, bars),) = raw.items()
            return {symbol: _malformed_reason(bars)}
        for symbol, bars in raw.items():
            out.update(_parse_batch({symbol: bars}, cutoff_ns, now_ns=now_ns))
        return out
    counts = np.fromiter(map(len, raw.values()), dtype=np.int64, count=len(raw))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    bad_rows = _bad_rows(ts, values, starts)
    bad_per_symbol = np.add.reduceat(bad_rows, starts) if len(starts) else np.empty(0)
    for i, symbol in enumerate(raw):
        lo, hi = int(starts[i]), int(starts[i] + counts[i])
        sym_ts, sym_values = ts[lo:hi], values[lo:hi]
        if bad_per_symbol[i]:
            out[symbol] = (validate_order(sym_ts)
                           or validate_ohlc(sym_values[:, 0], sym_values[:, 1], sym_values[:, 2], sym_values[:, 3])
                           or "invalid volume (NaN, inf or negative)")
            continue
        if now_ns is not None and sym_ts[-1] > now_ns:  # sorted: the last bar is the newest
            # Its close would become the drift-check price: a bar from the future is bad data.
            out[symbol] = "bar for a future session (stamped after the current time)"
            continue
        # Bars after the last completed session are the in-progress session: a price, not a bar.
        completed = sym_ts <= cutoff_ns
        partial = None if completed.all() else float(sym_values[~completed][-1, 3])
        out[symbol] = (SymbolBars(sym_ts[completed], sym_values[completed]), partial)
    return out


def _values_array(flat: list[dict[str, Any]]) -> np.ndarray:
    try:
        # Fast path: no nulls anywhere.
        return np.fromiter(chain.from_iterable(map(_VALUES, flat)), dtype=float,
                           count=7 * len(flat)).reshape(len(flat), 7)
    except TypeError:
        # `n` and `vw` may be null; numpy turns None into NaN here, and the checks reject null prices.
        return np.array(list(map(_VALUES, flat)), dtype=float)


def _bad_rows(ts: np.ndarray, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """1 for every bar that breaks a rule (see core.domain.bar_validation), vectorised over the whole batch."""
    prices = values[:, :4]
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
        o, h, low, c = prices[:, 0], prices[:, 1], prices[:, 2], prices[:, 3]
        bad |= (h < np.maximum(o, c) - 1e-9) | (low > np.minimum(o, c) + 1e-9) | (low > h + 1e-9)
        volume = values[:, 4]
        bad |= ~np.isfinite(volume) | (volume < 0)
    if ts.size > 1:
        step_bad = np.diff(ts) <= 0
        step_bad[starts[1:] - 1] = False   # the step from one symbol to the next is not an ordering error
        bad[1:] |= step_bad
    return bad.astype(np.int64)


def _malformed_reason(bars: list[dict[str, Any]]) -> str:
    for key in REQUIRED_KEYS:
        if any(not isinstance(bar, dict) or key not in bar for bar in bars):
            return f"bar field {key!r} missing from the answer"
    return "malformed bar data: a timestamp or a price is not parseable"


def _history_moved(cached: SymbolBars, fresh: SymbolBars) -> bool:
    """Whether the answer re-adjusted the history the cache holds: the last cached bar came back with
    other prices, or did not come back although later bars did. (Plain floats: a numpy call per
    symbol would cost more than the rest of the refresh.)"""
    if cached.ts.size == 0 or fresh.ts.size == 0:
        return False
    last = cached.ts[-1]
    if fresh.ts[0] == last:  # the usual case: the answer starts at the bar it was asked from
        row = 0
    else:
        hit = np.flatnonzero(fresh.ts == last)
        if hit.size == 0:
            return bool(fresh.ts[-1] > last)  # later bars without the one asked for from: history changed
        row = int(hit[0])
    now, before = fresh.values[row, :4].tolist(), cached.values[-1, :4].tolist()
    return any(abs(a - b) > READJUSTED_RTOL * abs(b) for a, b in zip(now, before, strict=True))


def _combine(cached: SymbolBars | None, fresh: SymbolBars | None, limit: int, cold_ns: int) -> SymbolBars | None:
    if cached is None or cached.ts.size == 0:
        bars = fresh
    elif fresh is None or fresh.ts.size == 0:
        bars = cached
    else:
        newer = fresh.ts > cached.ts[-1]
        bars = cached if not newer.any() else SymbolBars(
            np.concatenate([cached.ts, fresh.ts[newer]]), np.concatenate([cached.values, fresh.values[newer]]))
    if bars is None:
        return None
    keep = bars.ts >= cold_ns
    if not keep.all():
        bars = SymbolBars(bars.ts[keep], bars.values[keep])
    if bars.ts.size > limit:
        bars = SymbolBars(bars.ts[-limit:], bars.values[-limit:])
    return bars
