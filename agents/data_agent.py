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
agent's own CPU stays small at hundreds of symbols. The overlap comparison and the merge with the
cache run over the whole batch at once too (`_overlap_moved`, `_combine_batch`), and the strategies'
bar panel is rebuilt only when the bars changed (`PanelMemo`): within a session the cached bars are
the same objects from one iteration to the next.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import chain
from operator import is_, itemgetter
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
_NO_BAR = np.iinfo(np.int64).min   # "no cached bar": before every bar time


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


class PanelMemo:
    """The last bar panel built and the bars it was built from. A batch of the very same bars (the same
    symbols in the same order, each the same cached `SymbolBars` object) gets that panel again: within a
    session the cache hands out unchanged objects, so the steady loop builds no panel at all. The
    panel's arrays are read-only, so that sharing it is safe."""

    def __init__(self) -> None:
        self._symbols: list[str] = []
        self._bars: list[SymbolBars] = []
        self._panel: BarPanel | None = None

    def panel_for(self, bars: dict[str, SymbolBars]) -> BarPanel:
        symbols, series = list(bars), list(bars.values())
        if self._panel is not None and symbols == self._symbols and all(map(is_, series, self._bars)):
            return self._panel
        panel = _panel_of(symbols, series)
        self._symbols, self._bars, self._panel = symbols, series, panel
        return panel


class BarData(Mapping[str, pd.DataFrame]):
    """`{symbol: DataFrame}` plus what the fetch learned about the symbols it could not use.

    Frames are built on first access; `panel()` gives the aligned OHLCV panel without them.
    """

    def __init__(self, panel_memo: PanelMemo | None = None) -> None:
        self.bars: dict[str, SymbolBars] = {}
        self.excluded: dict[str, str] = {}
        self.current_prices: dict[str, float] = {}
        self.requests: int = 0
        self.as_of: date | None = None
        self.cpu_seconds: float = 0.0      # the agent's own CPU time (its thread's), excluding the HTTP fetches
        self.readjusted: list[str] = []    # symbols refetched because the broker re-adjusted their history
        self._frames: dict[str, pd.DataFrame] = {}
        self._panel_memo = panel_memo or PanelMemo()

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
        """Open, high, low, close and volume aligned on the union of sessions, without building frames.
        Its arrays are read-only: the same panel is handed out again while the bars are unchanged."""
        return self._panel_memo.panel_for(self.bars)


def _panel_of(symbols: list[str], series: list[SymbolBars]) -> BarPanel:
    """The panel of `series` (one per symbol), built from the concatenated arrays in one scatter."""
    if not symbols:
        return BarPanel.empty()
    sizes = np.fromiter((bars.ts.size for bars in series), dtype=np.int64, count=len(series))
    all_ts, rows = np.unique(np.concatenate([bars.ts for bars in series]), return_inverse=True)
    cols = np.repeat(np.arange(len(symbols)), sizes)
    fields = len(OHLCV_FIELDS)
    block = np.full((fields, all_ts.size, len(symbols)), np.nan)
    block[:, rows, cols] = np.concatenate([bars.values[:, :fields] for bars in series]).T
    block.flags.writeable = False
    sessions = [_session_of_ns(t) for t in all_ts.tolist()]
    return BarPanel(sessions, symbols, *block)


@lru_cache(maxsize=8192)  # a few hundred distinct sessions, the same ones every iteration
def _session_of_ns(stamp_ns: int) -> date:
    return session_of_bar(datetime.fromtimestamp(stamp_ns / 1e9, tz=UTC))


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
        self._panel_memo = PanelMemo()

    # ------------------------------------------------------------------ public
    def process(self, symbols: list[str], timeframe: str = "1Day", limit: int = 252) -> BarData:
        if timeframe not in ("1Day", "1D", "day"):
            raise ValueError(f"timeframe {timeframe!r} is not supported: expected '1Day' (daily bars)")
        if not isinstance(limit, int) or limit < 2:
            raise ValueError(f"limit {limit!r} must be a whole number of bars >= 2")
        result = BarData(self._panel_memo)
        cpu_start = time.thread_time()
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
        groups: dict[int, list[str]] = {}
        for symbol in wanted:
            cached = self._cache.get(symbol)
            last = int(cached.ts[-1]) if cached is not None and cached.ts.size else _NO_BAR
            # AT the last cached bar, not after it: that bar comes back and tells whether history moved.
            groups.setdefault(last if last >= cold_ns else cold_ns, []).append(symbol)

        readjusted: list[str] = []
        for start_ns, group in groups.items():
            start = cold_start if start_ns == cold_ns else pd.Timestamp(start_ns, tz="UTC").to_pydatetime()
            fetch_start = time.thread_time()
            raw = self._fetch_alpaca_batch(group, start)
            fetch_cpu += time.thread_time() - fetch_start
            result.requests += raw.requests if isinstance(raw, BarsAnswer) else 1
            readjusted += self._merge(group, raw, result, expected, limit, cold_ns)
        if readjusted:
            # One extra request for every symbol whose history moved: its whole window, afresh.
            log.info("history_readjusted", symbols=readjusted, effect="cached bars dropped; whole window refetched",
                     reason="the last cached bar came back with other prices (a split or a dividend adjustment)")
            for symbol in readjusted:
                self._cache.pop(symbol, None)
            fetch_start = time.thread_time()
            raw = self._fetch_alpaca_batch(readjusted, cold_start)
            fetch_cpu += time.thread_time() - fetch_start
            result.requests += raw.requests if isinstance(raw, BarsAnswer) else 1
            self._merge(readjusted, raw, result, expected, limit, cold_ns)
        result.readjusted = readjusted
        result.cpu_seconds = time.thread_time() - cpu_start - fetch_cpu
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
        """Merge a batch into the cache and the result; returns the symbols whose history was re-adjusted.
        The comparison with the cache and the merge run over the whole batch at once; what is left per
        symbol is the bookkeeping, in the order of `symbols`."""
        readjusted: list[str] = []
        session_ns = _ns(bar_timestamp(expected))   # bars from here on are the session in progress
        batch = _parse_batch({s: raw[s] for s in symbols if raw.get(s)}, session_ns, now_ns=_ns(self.clock.now()))
        cached = [self._cache.get(s) for s in batch.symbols]
        edges = _cached_edges(cached)
        moved = _overlap_moved(batch, edges).tolist()
        combined = _combine_batch(batch, cached, edges, limit, cold_ns)
        partial = batch.partial.tolist()
        position = dict(zip(batch.symbols, range(len(batch.symbols)), strict=True))
        for symbol in symbols:
            k = position.get(symbol)
            if k is None:
                reason = batch.rejected.get(symbol)
                if reason is not None:
                    self._exclude(result, symbol, reason)
                    continue
                known = self._cache.get(symbol)
                if known is None:
                    self._exclude(result, symbol, "missing from the batch answer (no bars returned)")
                    continue
                bars, price = _combine(known, None, limit, cold_ns), math.nan
            elif moved[k]:
                readjusted.append(symbol)
                continue
            else:
                bars, price = combined[k], partial[k]
            if bars is None or bars.ts.size == 0:
                self._exclude(result, symbol, "no completed daily bars in the window")
                continue
            if bars.ts[-1] < session_ns:   # its last bar is from an earlier session than the expected one
                last_session = session_of_bar(pd.Timestamp(int(bars.ts[-1]), tz="UTC").to_pydatetime())
                reason = validate_freshness(last_session, expected)
                if reason:
                    self._exclude(result, symbol, reason)
                    continue
            self._cache[symbol] = bars
            result.bars[symbol] = bars
            result.current_prices[symbol] = bars.last_close if math.isnan(price) else price
        return readjusted

    @staticmethod
    def _exclude(result: BarData, symbol: str, reason: str) -> None:
        result.excluded[symbol] = reason
        log.warning("symbol_excluded", symbol=symbol, reason=reason)


def _ns(when: datetime) -> int:
    return int(pd.Timestamp(when).as_unit("ns").value)


@dataclass(frozen=True, slots=True)
class BatchBars:
    """One answer's usable bars as flat arrays, parsed and validated in one pass for all its symbols.

    Symbol k (`symbols[k]`) owns rows `starts[k]` .. `starts[k] + counts[k] - 1` of `ts` and `values`:
    its completed bars, oldest first (`counts[k]` may be 0: only an in-progress bar). `partial[k]` is
    the close of its in-progress bar, NaN when there is none. A symbol whose bars are unusable is not
    in `symbols` but in `rejected`, with the reason.
    """

    symbols: list[str]
    ts: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    partial: np.ndarray
    rejected: dict[str, str]

    @classmethod
    def empty(cls, rejected: dict[str, str] | None = None) -> BatchBars:
        none = np.empty(0, dtype=np.int64)
        return cls([], none, np.empty((0, len(COLUMNS))), none, none, np.empty(0), dict(rejected or {}))

    def owner(self) -> np.ndarray:
        """For every row, the index of the symbol it belongs to."""
        return np.repeat(np.arange(len(self.symbols)), self.counts)

    def bars(self, k: int) -> SymbolBars:
        lo = int(self.starts[k])
        hi = lo + int(self.counts[k])
        return SymbolBars(self.ts[lo:hi], self.values[lo:hi])


def _parse_batch(raw: RawBars, cutoff_ns: int, *, now_ns: int | None = None) -> BatchBars:
    """Parse and validate every symbol's bars (each symbol has at least one bar): the usable symbols'
    completed bars and in-progress prices, and a reason for every other symbol."""
    if not raw:
        return BatchBars.empty()
    # One pass over the whole batch: timestamps and values for every bar, then split per symbol.
    flat = [bar for bars in raw.values() for bar in bars]
    try:
        stamps = _FirstSeen()   # a few hundred distinct sessions, not one per bar: each is parsed once
        codes = np.fromiter(map(stamps.__getitem__, map(_TIMESTAMP, flat)), dtype=np.int64, count=len(flat))
        ts = pd.to_datetime(list(stamps), utc=True, format="ISO8601").as_unit("ns").asi8[codes]
        values = _values_array(flat)
    except (KeyError, TypeError, ValueError):
        # Some symbol carries a missing field or a malformed value: one symbol at a time, to name it.
        if len(raw) == 1:
            ((symbol, bars),) = raw.items()
            return BatchBars.empty({symbol: _malformed_reason(bars)})
        return _concat_batches([_parse_batch({symbol: bars}, cutoff_ns, now_ns=now_ns)
                                for symbol, bars in raw.items()])
    names = list(raw)
    counts = np.fromiter(map(len, raw.values()), dtype=np.int64, count=len(raw))
    starts = np.cumsum(counts) - counts
    bad = np.add.reduceat(_bad_rows(ts, values, starts), starts) > 0
    rejected: dict[str, str] = {}
    for i in np.flatnonzero(bad).tolist():
        sym_ts, sym_values = ts[starts[i]:starts[i] + counts[i]], values[starts[i]:starts[i] + counts[i]]
        rejected[names[i]] = (validate_order(sym_ts)
                              or validate_ohlc(sym_values[:, 0], sym_values[:, 1], sym_values[:, 2], sym_values[:, 3])
                              or "invalid volume (NaN, inf or negative)")
    usable = ~bad
    last_rows = starts + counts - 1
    if now_ns is not None:
        # Its close would become the drift-check price: a bar from the future is bad data.
        future = usable & (ts[last_rows] > now_ns)   # sorted: the last bar is the newest
        for i in np.flatnonzero(future).tolist():
            rejected[names[i]] = "bar for a future session (stamped after the current time)"
        usable &= ~future
    # Bars after the last completed session are the in-progress session: a price, not a bar.
    completed = ts <= cutoff_ns
    partial = np.where(completed[last_rows], np.nan, values[last_rows, 3])
    owner = np.repeat(np.arange(len(names)), counts)
    keep = completed & usable[owner]
    kept = np.bincount(owner[keep], minlength=len(names))[usable]
    if not keep.all():   # (after the close, a cold fetch keeps every row: no copy)
        ts, values = ts[keep], values[keep]
    return BatchBars([name for name, ok in zip(names, usable.tolist(), strict=True) if ok], ts, values,
                     np.cumsum(kept) - kept, kept, partial[usable], rejected)


class _FirstSeen(dict[Any, int]):
    """Numbers each distinct key in the order it is first looked up."""

    def __missing__(self, key: Any) -> int:
        code = self[key] = len(self)
        return code


def _concat_batches(parts: list[BatchBars]) -> BatchBars:
    kept = np.concatenate([part.counts for part in parts])
    return BatchBars([symbol for part in parts for symbol in part.symbols],
                     np.concatenate([part.ts for part in parts]), np.concatenate([part.values for part in parts]),
                     np.cumsum(kept) - kept, kept, np.concatenate([part.partial for part in parts]),
                     {symbol: reason for part in parts for symbol, reason in part.rejected.items()})


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
    o, h, low, c, volume = values[:, :5].T.copy()  # contiguous columns: each check below is one fast pass
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c))
        bad |= (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0)
        bad |= (h < np.maximum(o, c) - 1e-9) | (low > np.minimum(o, c) + 1e-9) | (low > h + 1e-9)
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


@dataclass(frozen=True, slots=True)
class CachedEdges:
    """For each symbol of a batch: whether the cache holds bars for it, and the edges of those bars
    (`_NO_BAR` and NaN where it holds none), gathered once for the vectorised checks."""

    held: np.ndarray          # bool
    first_ns: np.ndarray      # the first cached bar's time
    last_ns: np.ndarray       # the last cached bar's time
    last_prices: np.ndarray   # (symbols x 4): open, high, low and close of the last cached bar
    sizes: np.ndarray         # cached bars


def _cached_edges(cached: list[SymbolBars | None]) -> CachedEdges:
    count = len(cached)
    held_bars = [(k, bars) for k, bars in enumerate(cached) if bars is not None and bars.ts.size]
    edges = CachedEdges(np.zeros(count, dtype=bool), np.full(count, _NO_BAR), np.full(count, _NO_BAR),
                        np.full((count, 4), np.nan), np.zeros(count, dtype=np.int64))
    if held_bars:
        index = [k for k, _ in held_bars]
        edges.held[index] = True
        edges.first_ns[index] = [bars.ts[0] for _, bars in held_bars]
        edges.last_ns[index] = [bars.ts[-1] for _, bars in held_bars]
        edges.last_prices[index] = [bars.values[-1, :4] for _, bars in held_bars]
        edges.sizes[index] = [bars.ts.size for _, bars in held_bars]
    return edges


def _overlap_moved(batch: BatchBars, edges: CachedEdges) -> np.ndarray:
    """For every symbol of the batch at once: whether the answer re-adjusted the history the cache holds.
    The last cached bar came back with other prices (any of open, high, low, close beyond
    READJUSTED_RTOL), or did not come back although later bars did."""
    moved = np.zeros(len(batch.symbols), dtype=bool)
    if batch.ts.size == 0:
        return moved
    owner = batch.owner()
    rows = np.flatnonzero((batch.ts == edges.last_ns[owner]) & edges.held[owner])  # the overlap: one row at most
    came_back = np.zeros_like(moved)
    if rows.size:
        k = owner[rows]
        before = edges.last_prices[k]
        moved[k] = (np.abs(batch.values[rows, :4] - before) > READJUSTED_RTOL * np.abs(before)).any(axis=1)
        came_back[k] = True
    newest = batch.ts[np.maximum(batch.starts + batch.counts - 1, 0)]
    moved |= edges.held & (batch.counts > 0) & ~came_back & (newest > edges.last_ns)
    return moved


def _combine_batch(batch: BatchBars, cached: list[SymbolBars | None], edges: CachedEdges,
                   limit: int, cold_ns: int) -> list[SymbolBars | None]:
    """`_combine` for every symbol of the batch (`cached[k]` the cache's bars for `batch.symbols[k]`).
    The two usual cases cost no numpy call per symbol: nothing newer than the cache (the very cached
    object, when it lies within the window) and nothing cached (a slice of the batch's arrays, cut to
    the window); a symbol with both cached and newer bars goes through `_combine`."""
    owner = batch.owner()
    newer = np.bincount(owner[batch.ts > edges.last_ns[owner]], minlength=len(batch.symbols))
    before_window = np.bincount(owner[batch.ts < cold_ns], minlength=len(batch.symbols))
    ends = batch.starts + batch.counts
    first_kept = np.maximum(batch.starts + before_window, ends - limit)
    unchanged = edges.held & (newer == 0) & (edges.first_ns >= cold_ns) & (edges.sizes <= limit)
    out: list[SymbolBars | None] = []
    for k, (same, held, lo, hi) in enumerate(zip(unchanged.tolist(), edges.held.tolist(), first_kept.tolist(),
                                                 ends.tolist(), strict=True)):
        if same:
            out.append(cached[k])
        elif not held:
            out.append(SymbolBars(batch.ts[lo:hi], batch.values[lo:hi]))
        else:
            out.append(_combine(cached[k], batch.bars(k), limit, cold_ns))
    return out


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
