"""Deterministic synthetic daily bars for any symbol over the real NYSE calendar.

Every random number is a pure function of (seed, symbol, session index, channel): a counter-based
hash (splitmix64) instead of a stateful generator. A symbol's bar for a session is therefore the
same whatever window is asked for, whichever other symbols are in the request, and whether or not
earlier sessions were ever generated, and any window can be produced without generating the whole
calendar first.

Price model, per symbol: log close = log(base) + x + a slow sine wave, where x is an AR(1)
(discrete Ornstein-Uhlenbeck) deviation with phi in [0.93, 0.97] and daily noise of 1.5-2.3%.
Bars are generated in cached blocks of 256 sessions; each block runs the AR(1) from zero over the
256 sessions of noise before it (phi**256 < 1e-3, so the restart is invisible), which makes a
block a fixed function of its own indexes. The noise is unit-variance logistic (fat-tailed, and one
log per draw) mixing a market factor shared by all symbols with the symbol's own noise. The mean
reversion keeps prices near their base level over the whole 2004-2030 calendar and gives 20-day
z-score dips below -2 about six times a year per symbol.
"""

from __future__ import annotations

import bisect
import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.domain.market_calendar import MarketCalendar, bar_timestamp, get_market_calendar
from core.sim.corporate_actions import CorporateActions, raw_factors, round_price

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BASE_PRICES: dict[str, float] = {
    "SPY": 500.0,
    "QQQ": 430.0,
    "DIA": 390.0,
    "IWM": 200.0,
    "XLK": 210.0,
    "XLF": 40.0,
    "XLV": 140.0,
    "XLE": 90.0,
    "XLY": 180.0,
    "AAPL": 190.0,
    "MSFT": 420.0,
    "GOOGL": 170.0,
    "AMZN": 180.0,
    "NVDA": 120.0,
    "META": 500.0,
    "TSLA": 250.0,
    "JPM": 200.0,
    "V": 280.0,
    "UNH": 520.0,
    "JNJ": 155.0,
    "WMT": 80.0,
    "PG": 165.0,
    "MA": 470.0,
    "HD": 380.0,
    "COST": 900.0,
    "AVGO": 1400.0,
    "LLY": 800.0,
    "XOM": 115.0,
    "NFLX": 650.0,
}
# Broad ETFs move with the market far more than single names do.
_MARKET_HEAVY = frozenset({"SPY", "QQQ", "DIA", "IWM", "XLK", "XLF", "XLV", "XLE", "XLY"})

TAPS = 256  # length of the AR(1) filter
CHUNK = 256  # sessions per cached block
MAX_CHUNKS = 4096  # cache bound: ~15 kB per block, so ~60 MB at most

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_CHANNEL = 0xD1B54A32D192ED03
_U_M1 = np.uint64(0xBF58476D1CE4E5B9)
_U_M2 = np.uint64(0x94D049BB133111EB)
_U_GOLDEN = np.uint64(_GOLDEN)


class DailyBar(NamedTuple):
    session: date
    open: float
    high: float
    low: float
    close: float
    volume: int
    trade_count: int
    vwap: float


# --------------------------------------------------------------------------- hashing helpers
def _mix_int(x: int) -> int:
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def symbol_key(seed: int, symbol: str) -> int:
    """Stable 64-bit stream key; crc32 because Python's hash() is salted per process."""
    return _mix_int(_mix_int(seed * _GOLDEN + 0x5EED) ^ zlib.crc32(symbol.encode()))


def _unit(key: int, channel: int) -> float:
    """One uniform in (0, 1) for per-symbol parameters."""
    return ((_mix_int(key + channel * _CHANNEL) >> 11) + 0.5) / float(1 << 53)


def _uniform_grid(keys: npt.NDArray[np.uint64], idx: npt.NDArray[np.int64], channels: int) -> FloatArray:
    """Uniforms in (0, 1), shape (len(keys), len(idx), 2 * channels): two 32-bit halves of one
    splitmix64 hash per (key, index, channel). Element [s, i, c] depends only on (keys[s], idx[i], c),
    never on the shapes, so batching symbols changes nothing."""
    offsets = np.arange(channels, dtype=np.uint64) * np.uint64(_CHANNEL)
    with np.errstate(over="ignore"):
        x = (idx.astype(np.uint64) * _U_GOLDEN)[None, :, None] + keys[:, None, None]
        x = x + offsets[None, None, :]
        tmp = np.empty_like(x)
        for shift, mult in ((30, _U_M1), (27, _U_M2)):
            np.right_shift(x, np.uint64(shift), out=tmp)
            np.bitwise_xor(x, tmp, out=x)
            np.multiply(x, mult, out=x)
        np.right_shift(x, np.uint64(31), out=tmp)
        np.bitwise_xor(x, tmp, out=x)
    out = np.empty(x.shape[:2] + (2 * channels,), dtype=np.float64)
    np.right_shift(x, np.uint64(32), out=tmp)
    out[:, :, 0::2] = tmp
    np.bitwise_and(x, np.uint64(0xFFFF_FFFF), out=tmp)
    out[:, :, 1::2] = tmp
    out += 0.5
    out *= 1.0 / float(1 << 32)
    return out


_LOGISTIC_UNIT = math.sqrt(3.0) / math.pi


def _logistic(u: FloatArray) -> FloatArray:
    """Unit-variance logistic noise: one log per draw (Box-Muller's sin/cos cost 4x as much), and
    its fatter-than-normal tails suit daily returns."""
    return np.log(u / (1.0 - u)) * _LOGISTIC_UNIT


# --------------------------------------------------------------------------- per-symbol model
@dataclass(frozen=True)
class _Params:
    key: int
    base: float
    sigma: float
    beta: float
    phi: float
    wave_amp: float
    wave_period: float
    wave_phase: float
    volume: float
    trade_size: float


def base_price(symbol: str) -> float:
    """The level a symbol hovers around: the table's, else a stable value in 20..400 (log-uniform,
    from the name alone so a symbol keeps its level across seeds)."""
    if symbol in BASE_PRICES:
        return BASE_PRICES[symbol]
    u = ((_mix_int(zlib.crc32(symbol.encode()) * _GOLDEN) >> 11) + 0.5) / float(1 << 53)
    return round(20.0 * math.exp(u * math.log(20.0)), 2)


def _params(seed: int, symbol: str) -> _Params:
    key = symbol_key(seed, symbol)
    phi = 0.93 + 0.04 * _unit(key, 101)
    beta = 0.8 if symbol in _MARKET_HEAVY else 0.35 + 0.3 * _unit(key, 102)
    return _Params(
        key=key,
        base=base_price(symbol),
        sigma=0.015 + 0.008 * _unit(key, 103),
        beta=beta,
        phi=phi,
        wave_amp=0.015 + 0.025 * _unit(key, 104),
        wave_period=120.0 + 280.0 * _unit(key, 105),
        wave_phase=2.0 * math.pi * _unit(key, 106),
        volume=10 ** (6.3 + 1.3 * _unit(key, 107)),
        trade_size=60.0 + 140.0 * _unit(key, 108),
    )


def _noise(keys: npt.NDArray[np.uint64], lo: int, hi: int) -> FloatArray:
    """Unit-variance noise for indexes lo..hi-1 (lo even), shape (len(keys), hi - lo): indexes 2p and
    2p+1 are the two halves of hash p, so each index has one fixed value."""
    pairs = np.arange(lo // 2, (hi + 1) // 2, dtype=np.int64)
    u = _uniform_grid(keys, pairs + (1 << 40), 1)  # offset: never the same counters as bar channels
    return _logistic(u.reshape(keys.shape[0], -1))[:, : hi - lo]


def _ar1(eps: FloatArray, phi: FloatArray) -> FloatArray:
    """x[t] = phi * x[t-1] + eps[t] from x = 0, per row. Separate multiply and add in both paths
    (no fused ops), so the scalar and the vector loop give the same bits."""
    out = np.empty_like(eps)
    if eps.shape[0] <= 4:
        for r in range(eps.shape[0]):
            acc, p, row, dst = 0.0, float(phi[r]), eps[r].tolist(), out[r]
            values = []
            for e in row:
                acc = p * acc + e
                values.append(acc)
            dst[:] = values
        return out
    prev = np.zeros(eps.shape[0])
    cols = np.ascontiguousarray(eps.T)
    res = np.empty_like(cols)
    multiply, add = np.multiply, np.add
    for row, col in zip(res, cols, strict=True):   # in place: no temporaries per step
        multiply(phi, prev, out=row)
        add(row, col, out=row)
        prev = row
    out[:] = res.T
    return out


_FIELDS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")


@dataclass(frozen=True)
class BarBlock:
    """Bars for a run of consecutive sessions (calendar indexes start..start+len-1)."""

    start: int
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray
    trade_count: IntArray
    vwap: FloatArray

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def slice(self, lo: int, hi: int) -> BarBlock:
        """Sessions lo..hi-1 (absolute calendar indexes)."""
        a, b = lo - self.start, hi - self.start
        return BarBlock(
            lo,
            self.open[a:b],
            self.high[a:b],
            self.low[a:b],
            self.close[a:b],
            self.volume[a:b],
            self.trade_count[a:b],
            self.vwap[a:b],
        )


@dataclass(frozen=True)
class _Intraday:
    """Shape of one session's price path: open -> first extreme -> second extreme -> close."""

    times: tuple[float, float, float, float]
    low_first: bool
    wiggle: float
    freq: float
    phase: float


class SyntheticBars:
    """Seeded daily OHLCV for any symbol, plus the intraday price used for fills."""

    def __init__(
        self, seed: int = 42, calendar: MarketCalendar | None = None, closures: Iterable[date] = ()
    ) -> None:
        self.seed = seed
        self.calendar = calendar or get_market_calendar()
        cal = self.calendar
        self.sessions: list[date] = cal.sessions_between(cal.first_session, cal.last_session)
        self._opens, self._closes = cal.session_timestamps()   # every session of the calendar, as self.sessions
        regular = [c - o for o, c in zip(self._opens, self._closes, strict=True)]
        longest = max(regular)
        self._day_fraction = np.array([r / longest for r in regular], dtype=np.float64)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], BarBlock] = OrderedDict()
        self._market: dict[int, FloatArray] = {}
        self._params_cache: dict[str, _Params] = {}
        self._market_key = _mix_int(_mix_int(seed * _GOLDEN + 0x3A7E7) ^ 0xFFFF_FFFF_0000)
        # Splits re-base the raw tape before their ex-date (core/sim/corporate_actions.py); empty
        # unless SimExchange.add_split registers one.
        self.actions = CorporateActions()
        # Unscheduled closures: sessions of the calendar the market does not open (an immutable set,
        # replaced whole, so readers need no lock). The model keeps its indexes: the bars of every
        # other session are the same with or without closures.
        self._closed: frozenset[int] = frozenset()
        for day in closures:
            self.add_closure(day)

    @cached_property
    def _stamps(self) -> list[float]:
        """Daily-bar stamps (midnight New York) of every session: for the data API, never for the backtest."""
        return [bar_timestamp(s).timestamp() for s in self.sessions]

    # ------------------------------------------------------------------ calendar index helpers
    def __len__(self) -> int:
        return len(self.sessions)

    def index_of(self, session: date) -> int:
        return self.calendar.index_of(session)   # self.sessions is the calendar's whole table

    def session_at(self, i: int) -> date:
        return self.sessions[i]

    def open_ts(self, i: int) -> float:
        return self._opens[i]

    def close_ts(self, i: int) -> float:
        return self._closes[i]

    def stamp_ts(self, i: int) -> float:
        return self._stamps[i]

    def last_started(self, when: datetime) -> int:
        """Index of the latest session whose open is at or before `when` (-1 if none); an
        unscheduled closure never started."""
        i = bisect.bisect_right(self._opens, when.timestamp()) - 1
        return self.trading_index_before(i + 1) if self._closed else i

    def next_open_index(self, ts: float) -> int:
        """Index of the first trading session whose open is after `ts` (len(self) if none)."""
        return self.next_trading_index(bisect.bisect_right(self._opens, ts))

    def next_close_index(self, ts: float) -> int:
        """Index of the first trading session whose close is after `ts` (len(self) if none)."""
        return self.next_trading_index(bisect.bisect_right(self._closes, ts))

    def closes_between(self, after_ts: float, upto_ts: float) -> list[int]:
        """Indexes of the trading sessions (no unscheduled closure) that closed in (after_ts, upto_ts]."""
        lo = bisect.bisect_right(self._closes, after_ts)
        hi = bisect.bisect_right(self._closes, upto_ts)
        return [i for i in range(lo, hi) if not self.is_closed(i)]

    def first_stamp_at_or_after(self, ts: float) -> int:
        return bisect.bisect_left(self._stamps, ts)

    def last_stamp_at_or_before(self, ts: float) -> int:
        return bisect.bisect_right(self._stamps, ts) - 1

    def first_session_on_or_after(self, day: date) -> int:
        return bisect.bisect_left(self.sessions, day)

    def last_session_on_or_before(self, day: date) -> int:
        return bisect.bisect_right(self.sessions, day) - 1

    def base_price(self, symbol: str) -> float:
        return base_price(symbol)

    def trading_index_before(self, i: int) -> int:
        """Index of the last session before session i that the market opened (-1 if none)."""
        i -= 1
        while i in self._closed:
            i -= 1
        return i

    def next_trading_index(self, i: int) -> int:
        """Index of the first session at or after session i that the market opens (len if none)."""
        while i in self._closed:
            i += 1
        return i

    # ------------------------------------------------------------------ unscheduled closures
    def add_closure(self, day: date) -> None:
        """Close the market on `day`, a session of exchange_calendars (SimExchange.add_closure checks
        the timing and moves waiting orders)."""
        self._closed = self._closed | {self.index_of(day)}

    @property
    def closures(self) -> list[date]:
        return sorted(self.sessions[i] for i in self._closed)

    def is_closed(self, i: int) -> bool:
        return i in self._closed

    def open_sessions(self, lo: int, hi: int) -> list[int] | None:
        """The sessions lo..hi-1 the market opens, or None when that is all of them (no closure)."""
        closed = self._closed
        if not closed or not any(lo <= i < hi for i in closed):
            return None
        return [i for i in range(lo, hi) if i not in closed]

    # ------------------------------------------------------------------ generation
    def _symbol_params(self, symbol: str) -> _Params:
        p = self._params_cache.get(symbol)
        if p is None:
            p = self._params_cache[symbol] = _params(self.seed, symbol)
        return p

    def _market_noise(self, chunk: int) -> FloatArray:
        """Market-factor normals for the noise indexes a block needs (shared by all symbols)."""
        noise = self._market.get(chunk)
        if noise is None:
            i0 = chunk * CHUNK
            noise = self._market[chunk] = _noise(
                np.array([self._market_key], dtype=np.uint64), i0 - TAPS, i0 + CHUNK
            )[0]
        return noise

    def _compute_blocks(self, symbols: Sequence[str], chunk: int) -> list[BarBlock]:
        """One block per symbol, computed together: every step is elementwise per symbol."""
        params = [self._symbol_params(s) for s in symbols]

        def column(name: str) -> FloatArray:
            return np.array([getattr(p, name) for p in params], dtype=np.float64)[:, None]

        keys = np.array([p.key for p in params], dtype=np.uint64)
        sigma, beta, phi, base = column("sigma"), column("beta"), column("phi"), column("base")
        i0 = chunk * CHUNK
        i1 = min(i0 + CHUNK, len(self.sessions))  # exclusive
        # The deviation is an AR(1) started from zero TAPS sessions before the block, so each block
        # is a fixed function of its own noise (phi**TAPS < 1e-3: the start is forgotten).
        own = _noise(keys, i0 - TAPS, i1)
        market = self._market_noise(chunk)[: own.shape[1]]
        eps = sigma * (beta * market[None, :] + np.sqrt(1.0 - beta * beta) * own)
        x = _ar1(eps, phi[:, 0])[:, TAPS - 1 :]  # sessions i0-1 .. i1-1
        ii = np.arange(i0 - 1, i1, dtype=np.float64)[None, :]
        wave = column("wave_amp") * np.sin(2.0 * np.pi * ii / column("wave_period") + column("wave_phase"))
        closes = base * np.exp(x + wave)
        prev, close = closes[:, :-1], closes[:, 1:]

        sidx = np.arange(i0, i1, dtype=np.int64)
        v = _uniform_grid(keys, sidx, 3)
        gap, vol_noise, count_noise = (_logistic(v[:, :, c]) for c in (0, 1, 2))
        up, down = -np.log(v[:, :, 3]), -np.log(v[:, :, 4])  # exponential excursions
        vw_u = v[:, :, 5]
        day = self._day_fraction[None, i0:i1]

        open_ = prev * np.exp(0.35 * sigma * gap)
        span = 0.4 * sigma * np.sqrt(day)
        high = np.maximum(open_, close) * np.exp(span * (0.15 + up))
        low = np.minimum(open_, close) * np.exp(-span * (0.15 + down))

        open_ = np.maximum(np.round(open_, 2), 0.01)
        close = np.maximum(np.round(close, 2), 0.01)
        high = np.maximum(np.round(high, 2), np.maximum(open_, close))
        low = np.maximum(np.minimum(np.round(low, 2), np.minimum(open_, close)), 0.01)

        move = np.abs(np.log(close / prev)) / sigma
        volume = np.maximum(column("volume") * day * np.exp(0.25 * vol_noise) * (1.0 + 0.3 * move), 100.0)
        trades = np.maximum(volume / column("trade_size") * np.exp(0.1 * count_noise), 1.0)
        typical = (high + low + 2.0 * close) / 4.0
        vwap = np.clip(np.round(typical + (vw_u - 0.5) * 0.2 * (high - low), 4), low, high)
        volume_i, trades_i = volume.astype(np.int64), trades.astype(np.int64)
        return [
            BarBlock(i0, open_[k], high[k], low[k], close[k], volume_i[k], trades_i[k], vwap[k])
            for k in range(len(params))
        ]

    def _blocks(self, symbols: Sequence[str], chunk: int) -> list[BarBlock]:
        with self._lock:
            found: dict[str, BarBlock] = {}
            missing: list[str] = []
            for symbol in symbols:
                block = self._cache.get((symbol, chunk))
                if block is None:
                    missing.append(symbol)
                else:
                    self._cache.move_to_end((symbol, chunk))
                    found[symbol] = block
            for start in range(0, len(missing), 128):  # cache-sized temporaries for huge batches
                part = list(dict.fromkeys(missing[start : start + 128]))
                for symbol, block in zip(part, self._compute_blocks(part, chunk), strict=True):
                    found[symbol] = block
                    self._cache[(symbol, chunk)] = block
            while len(self._cache) > MAX_CHUNKS:
                self._cache.popitem(last=False)
            return [found[s] for s in symbols]

    def windows(self, symbols: Sequence[str], lo: int, hi: int) -> list[BarBlock]:
        """Complete bars for calendar indexes lo..hi-1, one block per symbol (computed in batches)."""
        lo = max(lo, 0)
        hi = min(hi, len(self.sessions))
        if hi <= lo:
            empty_f = np.empty(0, dtype=np.float64)
            empty_i = np.empty(0, dtype=np.int64)
            return [
                BarBlock(lo, empty_f, empty_f, empty_f, empty_f, empty_i, empty_i, empty_f) for _ in symbols
            ]
        per_chunk = [self._blocks(symbols, c) for c in range(lo // CHUNK, (hi - 1) // CHUNK + 1)]
        out: list[BarBlock] = []
        for k in range(len(symbols)):
            parts = [blocks[k] for blocks in per_chunk]
            if len(parts) == 1:
                out.append(parts[0].slice(lo, hi))
                continue
            joined = BarBlock(
                parts[0].start, *(np.concatenate([getattr(b, name) for b in parts]) for name in _FIELDS)
            )
            out.append(joined.slice(lo, hi))
        if self.actions.has_splits:
            out = [self._raw_tape(symbol, block) for symbol, block in zip(symbols, out, strict=True)]
        return out

    def _raw_tape(self, symbol: str, block: BarBlock) -> BarBlock:
        """The model block as traded: x the ratio of every split still to come (volume / ratio)."""
        factor = raw_factors(self, self.actions.splits(symbol), block.start, len(block))
        if factor is None:
            return block
        open_, high, low, close = (round_price(getattr(block, n) * factor) for n in ("open", "high", "low", "close"))
        vwap = np.clip(np.round(block.vwap * factor, 4), low, high)
        volume = np.maximum(np.rint(block.volume / factor), 1.0).astype(np.int64)
        return BarBlock(block.start, open_, high, low, close, volume, block.trade_count, vwap)

    def splits_changed(self) -> None:
        """Forget what was derived from the raw tape (the intraday path shapes) after a new split."""
        SyntheticBars._intraday.cache_clear()

    def window(self, symbol: str, lo: int, hi: int) -> BarBlock:
        return self.windows([symbol], lo, hi)[0]

    # ------------------------------------------------------------------ public API
    def daily_bars(self, symbol: str, start: date, end: date) -> list[DailyBar]:
        """Complete daily bars for the sessions in [start, end] (no clock: callers cut at 'now')."""
        lo = self.first_session_on_or_after(start)
        hi = self.last_session_on_or_before(end) + 1
        rows = self._rows(symbol, lo, hi)
        return [r for r in rows if self.index_of(r.session) not in self._closed] if self._closed else rows

    def _rows(self, symbol: str, lo: int, hi: int) -> list[DailyBar]:
        b = self.window(symbol, lo, hi)
        return [
            DailyBar(
                self.sessions[b.start + k],
                float(b.open[k]),
                float(b.high[k]),
                float(b.low[k]),
                float(b.close[k]),
                int(b.volume[k]),
                int(b.trade_count[k]),
                float(b.vwap[k]),
            )
            for k in range(len(b))
        ]

    def bar_by_index(self, symbol: str, i: int) -> DailyBar:
        (bar,) = self._rows(symbol, i, i + 1)
        return bar

    def session_bar(self, symbol: str, session: date) -> DailyBar:
        return self.bar_by_index(symbol, self.index_of(session))

    def matrix(self, symbols: Sequence[str], sessions: Sequence[date],
               fields: Sequence[str] = _FIELDS) -> dict[str, FloatArray]:
        """(sessions x symbols) arrays of `fields` (open/high/low/close/volume/trade_count/vwap), for the backtest."""
        out = {name: np.full((len(sessions), len(symbols)), np.nan) for name in fields}
        if not sessions or not symbols:
            return out
        rows = np.array([self.index_of(s) for s in sessions], dtype=np.int64)
        if self.actions.has_splits:
            lo, hi = int(rows.min()), int(rows.max()) + 1
            for j, b in enumerate(self.windows(list(symbols), lo, hi)):
                for name in fields:
                    out[name][:, j] = getattr(b, name)[rows - lo]
            return out
        # Block by block, a batch of symbols at a time, straight into the result: the peak memory is the
        # result plus one batch's blocks (not every symbol's whole window, joined, then copied).
        chunks = rows // CHUNK
        names = list(symbols)
        for chunk in sorted(set(chunks.tolist())):   # not np.unique: it imports numpy.ma (~0.02 s)
            at = np.flatnonzero(chunks == chunk)
            offsets = rows[at] - chunk * CHUNK
            for start in range(0, len(names), 128):
                part = names[start:start + 128]
                blocks = self._blocks(part, chunk)
                for name in fields:
                    column = np.stack([getattr(b, name) for b in blocks], axis=1)
                    out[name][at, start:start + len(part)] = column[offsets]
        return out

    # ------------------------------------------------------------------ intraday
    @lru_cache(maxsize=65_536)  # noqa: B019 - bounded, and instances live as long as the market
    def _intraday(self, symbol: str, i: int) -> _Intraday:
        keys = np.array([symbol_key(self.seed, symbol)], dtype=np.uint64)
        u = [float(x) for x in _uniform_grid(keys, np.array([i], dtype=np.int64), 8)[0, 0, 10:]]
        bar = self.bar_by_index(symbol, i)
        # Falling days tend to make the high first, rising days the low first.
        p_low_first = 0.7 if bar.close >= bar.open else 0.3
        first = 0.08 + 0.37 * u[1]
        second = 0.55 + 0.37 * u[2]
        return _Intraday(
            (0.0, first, second, 1.0), u[0] < p_low_first, 0.25 * u[3], 2.0 + 6.0 * u[4], 2.0 * math.pi * u[5]
        )

    def intraday_path(self, symbol: str, i: int, fractions: FloatArray) -> FloatArray:
        """Trade prices of session `i` at `fractions` of its regular hours (0 = open, 1 = close)."""
        bar = self.bar_by_index(symbol, i)
        shape = self._intraday(symbol, i)
        e1, e2 = (bar.low, bar.high) if shape.low_first else (bar.high, bar.low)
        xs = np.array(shape.times)
        path = np.interp(fractions, xs, np.array([bar.open, e1, e2, bar.close]))
        # The wiggle vanishes at the open, both extremes and the close, so the path touches the
        # bar's exact open, high, low and close and never leaves [low, high].
        dist = np.min(np.abs(fractions[:, None] - xs[None, :]), axis=1)
        weight = np.minimum(dist * 10.0, 1.0)
        wiggle = (
            shape.wiggle
            * (bar.high - bar.low)
            * weight
            * np.sin(2.0 * np.pi * shape.freq * fractions + shape.phase)
        )
        decimals = 2 if bar.low >= 1.0 or not self.actions.has_splits else 4  # a reverse split's sub-$1 tape
        return np.clip(np.round(path + wiggle, decimals), bar.low, bar.high)

    def _fraction(self, i: int, ts: float) -> float:
        o, c = self._opens[i], self._closes[i]
        return min(max((ts - o) / (c - o), 0.0), 1.0)

    def price_at(self, symbol: str, when: datetime) -> float:
        """Last trade price at `when`: the previous close before an open, the path during a session."""
        when = _aware(when)
        i = self.last_started(when)
        if i < 0:
            return self.bar_by_index(symbol, 0).open
        ts = when.timestamp()
        if ts >= self._closes[i]:
            return self.bar_by_index(symbol, i).close
        return float(self.intraday_path(symbol, i, np.array([self._fraction(i, ts)]))[0])

    def partial_bar(self, symbol: str, session: date, now: datetime) -> DailyBar:
        """The daily bar as it stands at `now` (the full bar once the session has closed)."""
        i = self.index_of(session)
        ts = _aware(now).timestamp()
        if ts >= self._closes[i]:
            return self.bar_by_index(symbol, i)
        if ts < self._opens[i]:
            raise ValueError(f"session {session} has not opened at {now.isoformat()}")
        return self._partial(symbol, i, self._fraction(i, ts))

    def _partial(self, symbol: str, i: int, fraction: float) -> DailyBar:
        full = self.bar_by_index(symbol, i)
        grid = np.append(np.linspace(0.0, fraction, max(2, int(fraction * 390) + 1)), fraction)
        path = self.intraday_path(symbol, i, grid)
        high, low = float(path.max()), float(path.min())
        vwap = float(min(max(round(float(path.mean()), 4), low), high))
        volume = max(int(full.volume * fraction), 1)
        trades = max(int(full.trade_count * fraction), 1)
        return DailyBar(full.session, full.open, high, low, float(path[-1]), volume, trades, vwap)

    def bar_as_of(self, symbol: str, i: int, now: datetime) -> DailyBar | None:
        """Session i's bar as seen at `now`: None before its open, partial while it trades."""
        ts = _aware(now).timestamp()
        if ts < self._opens[i]:
            return None
        if ts >= self._closes[i]:
            return self.bar_by_index(symbol, i)
        return self._partial(symbol, i, self._fraction(i, ts))

    def minute_bar(self, symbol: str, now: datetime) -> tuple[datetime, DailyBar] | None:
        """The latest regular-hours minute bar at `now` (start time, OHLCV); None before any session."""
        now = _aware(now)
        i = self.last_started(now)
        if i < 0:
            return None
        ts = now.timestamp()
        close_ts = self._closes[i]
        start = (min(ts, close_ts - 1.0) // 60.0) * 60.0
        start = max(start, self._opens[i])
        end = min(start + 60.0, ts if ts < close_ts else close_ts)
        grid = np.linspace(self._fraction(i, start), self._fraction(i, end), 7)
        path = self.intraday_path(symbol, i, grid)
        full = self.bar_by_index(symbol, i)
        share = max((end - start) / max(close_ts - self._opens[i], 1.0), 1e-4)
        volume = max(int(full.volume * share), 1)
        bar = DailyBar(
            self.sessions[i],
            float(path[0]),
            float(path.max()),
            float(path.min()),
            float(path[-1]),
            volume,
            max(int(full.trade_count * share), 1),
            float(min(max(round(float(path.mean()), 4), path.min()), path.max())),
        )
        return datetime.fromtimestamp(start, tz=UTC), bar


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
