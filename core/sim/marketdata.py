"""The market-data half of the emulator: /v2/stocks/bars (daily), /bars/latest, /trades/latest,
/quotes/latest and /snapshots.

Only what has happened by the clock's now is served: completed sessions, plus the in-progress
bar of a session that is open. Multi-symbol answers are ordered by symbol, then time; `limit`
counts bars across all symbols, and `next_page_token` is Alpaca's opaque base64 of
`SYMBOL|D|<last timestamp>`, so a page always resumes right after the last bar sent.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from config.universe import is_valid_ticker
from core.domain.clock import Clock
from core.domain.market_calendar import NEW_YORK
from core.sim.bars import BarBlock, DailyBar, SyntheticBars
from core.sim.corporate_actions import ACTION_TYPES, action_json, action_type, adjustment_factors, group_name
from core.sim.exchange import SimExchange
from core.sim.wire import SimAPIError

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
DAY_TIMEFRAMES = frozenset({"1Day", "1D", "1day", "1d", "Day", "1DAY"})
_TIMEFRAME_UNITS = ("Min", "T", "Hour", "H", "Day", "D", "Week", "W", "Month", "M")
BAR_FEEDS = frozenset({"sip", "iex", "boats", "otc", "delayed_sip"})
LATEST_FEEDS = frozenset({"sip", "iex", "delayed_sip", "boats", "overnight", "otc"})
ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})
LATEST_PARAMS = frozenset({"symbols", "feed", "currency"})
_BAR_FIELDS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")


def _csv(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _bad(message: str) -> SimAPIError:
    # Data API errors carry only a message (no code), unlike the trading API.
    return SimAPIError(400, {"message": message})


def _stamp_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_printed(row: dict[str, Any], factor: float) -> dict[str, Any]:
    """A bar JSON row with its prices x factor (a bad print); volume and trade count unchanged."""
    out = dict(row)
    for key in ("o", "h", "l", "c", "vw"):
        out[key] = round(row[key] * factor, 4)
    return out


def _bar_json(t: str, bar: DailyBar) -> dict[str, Any]:
    return {
        "t": t,
        "o": bar.open,
        "h": bar.high,
        "l": bar.low,
        "c": bar.close,
        "v": bar.volume,
        "n": bar.trade_count,
        "vw": bar.vwap,
    }


class MarketData:
    def __init__(self, bars: SyntheticBars, clock: Clock, exchange: SimExchange | None = None) -> None:
        self.bars = bars
        self.clock = clock
        self.exchange = exchange
        self._stamps: dict[int, str] = {}

    # ------------------------------------------------------------------ helpers
    def _stamp(self, i: int) -> str:
        text = self._stamps.get(i)
        if text is None:
            text = self._stamps[i] = _stamp_text(self.bars.stamp_ts(i))
        return text

    def _symbols(self, params: Mapping[str, str]) -> list[str]:
        raw = params.get("symbols", "")
        symbols = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
        if not symbols:
            raise _bad("missing symbols")
        bad = next((s for s in symbols if not is_valid_ticker(s)), None)
        if bad is not None:
            raise _bad(f"invalid symbol: {bad!r}")
        return symbols

    def _has_data(self, symbol: str) -> bool:
        return self.exchange.has_data(symbol) if self.exchange is not None else True

    def _bound(self, raw: str | None, name: str, *, is_end: bool) -> int | None:
        """Calendar index bound for start/end (inclusive); None when the parameter is absent."""
        if not raw:
            return None
        text = raw.strip().replace(" ", "+")
        bars = self.bars
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return bars.last_session_on_or_before(day) if is_end else bars.first_session_on_or_after(day)
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _bad(f"invalid {name}: {raw!r}") from None
        if when.tzinfo is None:
            raise _bad(f"invalid {name}: {raw!r} (a time zone is required)")
        ts = when.timestamp()
        return bars.last_stamp_at_or_before(ts) if is_end else bars.first_stamp_at_or_after(ts)

    def _window(self, params: Mapping[str, str], now: datetime) -> tuple[int, int, bool]:
        """Sessions lo..hi-1 to serve and whether the last one is in progress at `now`."""
        bars = self.bars
        lo = self._bound(params.get("start"), "start", is_end=False)
        hi_incl = self._bound(params.get("end"), "end", is_end=True)
        if lo is None:  # Alpaca's default start: the beginning of the current day
            today = now.astimezone(NEW_YORK).date()
            lo = bars.first_session_on_or_after(today)
        latest = bars.last_started(now)
        hi = latest + 1 if hi_incl is None else min(hi_incl, latest) + 1
        partial = latest >= 0 and hi - 1 == latest and now.timestamp() < bars.close_ts(latest)
        return max(lo, 0), hi, partial

    # ------------------------------------------------------------------ /v2/stocks/bars
    def api_bars(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbols = sorted(self._symbols(params))
        timeframe = params.get("timeframe")
        if not timeframe:
            raise _bad("missing timeframe")
        if timeframe not in DAY_TIMEFRAMES:
            if not any(
                timeframe.endswith(unit) and timeframe[: -len(unit)].isdigit() for unit in _TIMEFRAME_UNITS
            ):
                raise _bad(f"invalid timeframe: {timeframe!r}")
            raise _bad(f"timeframe {timeframe} is not supported by the simulated market: only 1Day")
        try:
            limit = int(params.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise _bad(f"invalid limit: {params.get('limit')!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad(f"invalid limit: must be between 1 and {MAX_LIMIT}")
        feed = params.get("feed")
        if feed and feed not in BAR_FEEDS:
            raise _bad(f"invalid feed: {feed!r}")
        adjustment = params.get("adjustment")
        if adjustment and not set(adjustment.split(",")) <= ADJUSTMENTS:
            raise _bad(f"invalid adjustment: {adjustment!r}")
        sort = (params.get("sort") or "asc").lower()
        if sort not in ("asc", "desc"):
            raise _bad(f"invalid sort: {sort!r}")

        now = self.clock.now()
        lo, hi, partial = self._window(params, now)
        symbols = [s for s in symbols if self._has_data(s)]
        served = self.bars.open_sessions(lo, hi)  # None: no unscheduled closure in the window
        count = max(hi - lo, 0) if served is None else len(served)
        if count == 0 or not symbols:
            return {"bars": {}, "next_page_token": None, "currency": "USD"}
        # Position in the (symbol, time) order: symbol index and offset within that symbol's bars.
        sym_i, offset = 0, 0
        token = params.get("page_token")
        if token:
            sym_i, offset = self._resume(token, symbols, lo, hi, sort, served)

        out: dict[str, list[dict[str, Any]]] = {}
        remaining = limit
        last: tuple[str, int] | None = None
        page_symbols: list[tuple[str, int, int]] = []
        while sym_i < len(symbols) and remaining > 0:
            take = min(count - offset, remaining)
            page_symbols.append((symbols[sym_i], offset, offset + take))
            remaining -= take
            if offset + take < count:
                offset += take
                break
            sym_i, offset = sym_i + 1, 0
        blocks = self.bars.windows([s for s, _, _ in page_symbols], lo, hi)
        if self.bars.actions.has_any:
            blocks = self._adjusted(page_symbols, blocks, adjustment, now)
        if served is not None:  # a closed session has no bar: keep the sessions the market opened
            keep = np.array(served, dtype=np.int64) - lo
            blocks = [BarBlock(lo, *(getattr(b, name)[keep] for name in _BAR_FIELDS)) for b in blocks]
        stamps = [self._stamp(i) for i in (range(lo, hi) if served is None else served)]
        bad = self._bad_prints()
        for (symbol, a, b), block in zip(page_symbols, blocks, strict=True):
            # Positions a..b-1 in the requested order map to window offsets a..b-1 (asc) or
            # count-b..count-a-1 reversed (desc).
            k0, k1 = (a, b) if sort == "asc" else (count - b, count - a)
            columns = [
                stamps[k0:k1],
                *(getattr(block, name)[k0:k1].tolist() for name in _BAR_FIELDS),
            ]
            rows = [
                {"t": t, "o": o, "h": h, "l": lo_, "c": c, "v": v, "n": n, "vw": vw}
                for t, o, h, lo_, c, v, n, vw in zip(*columns, strict=True)
            ]
            if partial and k1 == count:  # the session in progress: its bar as it stands now
                bar = self.bars.bar_as_of(symbol, hi - 1, now)
                assert bar is not None
                rows[-1] = _bar_json(stamps[-1], bar)
            if bad:
                self._apply_bad_prints(symbol, rows, bad)
            if sort == "desc":
                rows.reverse()
            out[symbol] = rows
            at = k1 - 1 if sort == "asc" else k0
            last = (symbol, lo + at if served is None else served[at])
        more = sym_i < len(symbols) and (offset < count)
        next_token = None
        if more and last is not None:
            next_token = self._token(last[0], last[1])
        return {"bars": out, "next_page_token": next_token, "currency": "USD"}

    def _adjusted(
        self, page_symbols: list[tuple[str, int, int]], blocks: list[BarBlock], adjustment: str | None, now: datetime
    ) -> list[BarBlock]:
        """Raw blocks adjusted as Alpaca adjusts them on `now`'s New York date: `split` and `all` for
        splits, `dividend` and `all` for cash dividends (core/sim/corporate_actions.py)."""
        modes = set((adjustment or "raw").split(","))
        split, dividend = bool(modes & {"split", "all"}), bool(modes & {"dividend", "all"})
        if not (split or dividend):
            return blocks
        as_of = now.astimezone(NEW_YORK).date()
        out = []
        for (symbol, _, _), block in zip(page_symbols, blocks, strict=True):
            factors = adjustment_factors(
                self.bars, self.bars.actions, symbol, block.start, len(block), as_of, split=split, dividend=dividend
            )
            if factors is None:
                out.append(block)
                continue
            price, volume = factors
            o, h, lo_, c, vw = (np.round(getattr(block, n) * price, 4) for n in ("open", "high", "low", "close", "vwap"))
            v = np.rint(block.volume * volume).astype(np.int64)
            out.append(BarBlock(block.start, o, h, lo_, c, v, block.trade_count, vw))
        return out

    # ------------------------------------------------------------------ /v1/corporate-actions
    def api_corporate_actions(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GET /v1/corporate-actions: the registered splits and cash dividends (core/sim/
        corporate_actions.py) whose process date (= ex-date) is in [start, end] (default: today, New
        York), grouped as `forward_splits`, `reverse_splits`, `cash_dividends`; sorted by process date
        (`sort`), `limit` (1..1000, default 100) counted across groups, and an opaque
        `next_page_token`. `ids` excludes every other filter. Unknown types, dates or tokens: 400."""
        ids = _csv(params.get("ids"))
        if ids and any(params.get(k) for k in ("symbols", "cusips", "types", "start", "end")):
            raise _bad("ids cannot be combined with symbols, cusips, types, start or end")
        types = _csv(params.get("types"))
        unknown = sorted(set(types) - set(ACTION_TYPES))
        if unknown:
            raise _bad(f"invalid types: {', '.join(unknown)}")
        today = self.clock.now().astimezone(NEW_YORK).date()
        start, end = (self._day(params.get(name), name) or today for name in ("start", "end"))
        if start > end:
            raise _bad("start must not be after end")
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _bad(f"invalid limit: {params.get('limit')!r}") from None
        if not 1 <= limit <= 1000:
            raise _bad("invalid limit: must be between 1 and 1000")
        sort = (params.get("sort") or "asc").lower()
        if sort not in ("asc", "desc"):
            raise _bad(f"invalid sort: {sort!r}")
        symbols, cusips = set(_csv(params.get("symbols"))), set(_csv(params.get("cusips")))

        selected = []
        for action in self.bars.actions.all():
            body = action_json(self.bars, action)
            kind = action_type(action)
            if ids:
                if action.id not in ids:
                    continue
            elif (
                (types and kind not in types)
                or (symbols and action.symbol not in symbols)
                or (cusips and not cusips & {body.get("cusip"), body.get("old_cusip"), body.get("new_cusip")})
                or not start <= action.ex_date <= end
            ):
                continue
            key = f"{action.ex_date.isoformat()}|{action.symbol}|{kind}|{action.id}"
            selected.append((key, kind, body))
        selected.sort(key=lambda item: item[0], reverse=sort == "desc")
        token = params.get("page_token")
        if token:
            try:
                after = base64.b64decode(token, validate=True).decode()
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise _bad("invalid page_token") from None
            selected = [item for item in selected if (item[0] > after if sort == "asc" else item[0] < after)]
        page, rest = selected[:limit], selected[limit:]
        groups: dict[str, list[dict[str, Any]]] = {}
        for _, kind, body in page:
            groups.setdefault(group_name(kind), []).append(body)
        next_token = base64.b64encode(page[-1][0].encode()).decode() if rest else None
        return {"corporate_actions": groups, "next_page_token": next_token}

    @staticmethod
    def _day(raw: str | None, name: str) -> date | None:
        if not raw:
            return None
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            raise _bad(f"invalid {name}: {raw!r} (expected YYYY-MM-DD)") from None

    def _token(self, symbol: str, i: int) -> str:
        stamp = datetime.fromtimestamp(self.bars.stamp_ts(i), UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
        return base64.b64encode(f"{symbol}|D|{stamp}".encode()).decode()

    def _resume(
        self, token: str, symbols: list[str], lo: int, hi: int, sort: str, served: list[int] | None = None
    ) -> tuple[int, int]:
        try:
            symbol, frame, stamp = base64.b64decode(token, validate=True).decode().split("|")
            when = datetime.fromisoformat(stamp.replace("000Z", "Z").replace("Z", "+00:00"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _bad("invalid page_token") from None
        if frame != "D":
            raise _bad("invalid page_token")
        i = self.bars.last_stamp_at_or_before(when.timestamp())
        sym_i = bisect.bisect_left(symbols, symbol)
        if sym_i >= len(symbols) or symbols[sym_i] != symbol:
            return sym_i, 0
        if served is not None:  # count in the sessions served, closures left out
            done = bisect.bisect_right(served, i) if sort == "asc" else len(served) - bisect.bisect_left(served, i)
            return (sym_i + 1, 0) if done >= len(served) else (sym_i, done)
        done = (i - lo + 1) if sort == "asc" else (hi - i)
        done = min(max(done, 0), hi - lo)
        if done >= hi - lo:
            return sym_i + 1, 0
        return sym_i, done

    # ------------------------------------------------------------------ latest and snapshots
    def _check_latest(self, params: Mapping[str, str]) -> None:
        unexpected = sorted(set(params) - LATEST_PARAMS)
        if unexpected:
            raise _bad(f"unexpected query parameter(s): {', '.join(unexpected)}")
        feed = params.get("feed")
        if feed and feed not in LATEST_FEEDS:
            raise _bad(f"invalid feed: {feed!r}")

    def api_latest_bars(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._check_latest(params)
        now = self.clock.now()
        bad = self._bad_prints()
        out: dict[str, Any] = {}
        for symbol in self._symbols(params):
            if not self._has_data(symbol):
                continue
            minute = self.bars.minute_bar(symbol, now)
            if minute is not None:
                row = _bar_json(minute[0].strftime("%Y-%m-%dT%H:%M:%SZ"), minute[1])
                out[symbol] = _with_bad_print(row, bad.get((symbol, minute[1].session)))
        return {"bars": out}

    def api_latest_trades(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GET /v2/stocks/trades/latest: {"trades": {symbol: trade}} at the true price (never a bad
        print); symbols without data are left out, as Alpaca does."""
        return {"trades": self._latest(params, lambda trade: trade)}

    def api_latest_quotes(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GET /v2/stocks/quotes/latest: {"quotes": {symbol: quote}} around the true price."""
        return {"quotes": self._latest(params, _quote_for)}

    def _latest(self, params: Mapping[str, str],
                shape: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        self._check_latest(params)
        now = self.clock.now()
        out: dict[str, Any] = {}
        for symbol in self._symbols(params):
            trade = self._latest_trade(symbol, now) if self._has_data(symbol) else None
            if trade is not None:
                out[symbol] = shape(trade)
        return out

    def _latest_trade(self, symbol: str, now: datetime) -> dict[str, Any] | None:
        """The last trade at `now` at the exchange's price; None before the first session."""
        latest = self.bars.last_started(now)
        if latest < 0:
            return None
        price = self.bars.price_at(symbol, now)
        trade_time = min(now, datetime.fromtimestamp(self.bars.close_ts(latest), UTC))
        t = trade_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"t": t, "x": "V", "p": price, "s": 100, "c": ["@"], "i": 1, "z": "A"}

    def _bad_prints(self) -> dict[tuple[str, date], float]:
        return self.exchange.bad_prints() if self.exchange is not None else {}

    def _apply_bad_prints(
        self, symbol: str, rows: list[dict[str, Any]], bad: Mapping[tuple[str, date], float]
    ) -> None:
        """Rows of `symbol` whose session has a bad print get its factor (in place)."""
        factors = {self._stamp(self.bars.index_of(s)): f for (sym, s), f in bad.items() if sym == symbol}
        for k, row in enumerate(rows):
            factor = factors.get(row["t"])
            if factor is not None:
                rows[k] = _bad_printed(row, factor)

    def api_snapshots(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._check_latest(params)
        now = self.clock.now()
        bad = self._bad_prints()
        out: dict[str, Any] = {}
        for symbol in self._symbols(params):
            if not self._has_data(symbol):
                continue
            minute = self.bars.minute_bar(symbol, now)
            latest = self.bars.last_started(now)
            trade = self._latest_trade(symbol, now)
            if minute is None or latest < 0 or trade is None:
                continue
            start, mbar = minute
            daily = self.bars.bar_as_of(symbol, latest, now)
            assert daily is not None
            before = self.bars.trading_index_before(latest)
            prev = self.bars.bar_by_index(symbol, before) if before >= 0 else None
            out[symbol] = {
                "latestTrade": trade,
                "latestQuote": _quote_for(trade),
                "minuteBar": _with_bad_print(
                    _bar_json(start.strftime("%Y-%m-%dT%H:%M:%SZ"), mbar), bad.get((symbol, mbar.session))
                ),
                "dailyBar": _with_bad_print(
                    _bar_json(self._stamp(latest), daily), bad.get((symbol, daily.session))
                ),
                "prevDailyBar": None
                if prev is None
                else _with_bad_print(_bar_json(self._stamp(before), prev), bad.get((symbol, prev.session))),
            }
        return out


def _with_bad_print(row: dict[str, Any], factor: float | None) -> dict[str, Any]:
    return row if factor is None else _bad_printed(row, factor)


def _quote_for(trade: dict[str, Any]) -> dict[str, Any]:
    """The NBBO around a trade: a spread of 2 basis points (at least a cent), 2 x 100 shares a side."""
    price = trade["p"]
    spread = max(round(price * 0.0002, 2), 0.01)
    return {
        "t": trade["t"],
        "ax": "V",
        "ap": round(price + spread / 2, 2),
        "as": 2,
        "bx": "V",
        "bp": round(price - spread / 2, 2),
        "bs": 2,
        "c": ["R"],
        "z": "A",
    }
