"""`trading-daemon download`: daily bars from Alpaca's market-data API into backtest files.

The bars come through `AlpacaGateway.get_daily_bars`, the very call the live DataAgent makes, so they
have the daemon's feed (`ALPACA_DATA_FEED`) and adjustment (`AlpacaGateway.DAILY_BARS_ADJUSTMENT`),
every request takes the adapter's rate-limiter slot, and 429s and dropped connections are retried by
the adapter's policy.

Output: a directory with one `SYMBOL.parquet` per symbol, the backtest's per-symbol layout
(columns timestamp = Alpaca's bar stamp in UTC, open, high, low, close, volume, trade_count, vwap),
and `download.json`: the feed, the adjustment and, per symbol, the sessions already fetched
("covered": a symbol may have no bar on some of them, e.g. before its listing).

- Batches: symbols that need the same window share a request; a batch holds as many symbols as fit
  one 10,000-bar page, so each request is one page and one atomic unit of progress.
- After each request, each symbol's file and then the manifest are written atomically (temp file,
  fsync, rename). A stop at any point (a 429 that outlasts the retries, a dropped connection, Ctrl-C,
  kill -9) loses at most that request; a rerun asks only for what is still missing.
- Incremental: a rerun asks for the sessions outside the covered range, plus one overlapping session
  whose stored bar is compared with the fresh one. A mismatch means the provider re-adjusted the
  history (a split or, with adjustment=all, a dividend): that symbol's whole history is fetched again
  and replaces the file.
- A different feed or adjustment from the manifest's also re-fetches everything.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.backtest.engine import DEFAULT_YEARS, years_before
from core.backtest.progress import progress_reporter
from core.domain.market_calendar import MarketCalendar, bar_timestamp, get_market_calendar, session_of_bar
from core.domain.ports import RawBars
from core.runtime.atomic_file import write_atomic

MANIFEST = "download.json"
PAGE_BARS = 10_000                 # the most bars Alpaca returns in one page (all symbols together)
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap")
_KEYS = ("o", "h", "l", "c", "v", "n", "vw")
PRICE_TOLERANCE = 1e-9             # relative: JSON numbers round-trip exactly; only a re-adjustment differs


class BarsSource(Protocol):
    """The part of `AlpacaGateway` the download uses."""

    feed: Any
    DAILY_BARS_ADJUSTMENT: Any

    def get_daily_bars(self, symbols: list[str], start: datetime, end: datetime | None = None
                       ) -> RawBars: ...


class DownloadError(Exception):
    """The download stopped; what was written stays, and a rerun continues."""


class DownloadOptionsError(DownloadError):
    """The requested period or symbols cannot be downloaded (exit code 2)."""


@dataclass(frozen=True)
class Fetch:
    """One request: these symbols, sessions first..last inclusive."""

    symbols: tuple[str, ...]
    first: date
    last: date
    replace: bool = False          # the answer replaces the file (a re-adjusted history)


@dataclass
class DownloadSummary:
    start: date
    end: date
    requests: int = 0
    bars: int = 0
    written: set[str] = field(default_factory=set)
    readjusted: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Plan (pure)
# --------------------------------------------------------------------------------------------
def default_window(calendar: MarketCalendar, last_completed: date, start: date | None,
                   end: date | None) -> tuple[date, date]:
    """The sessions to hold: --end (never past the last completed session) and --start (default: ten
    years before the end, as the backtest's default period)."""
    last = min(end or last_completed, last_completed)
    last = last if calendar.is_session(last) else calendar.previous_session(last)
    first = start or (years_before(last, DEFAULT_YEARS) + timedelta(days=1))
    if not calendar.is_session(first):
        first = calendar.next_session(first)
    return first, last


def missing_ranges(covered: tuple[date, date] | None, first: date, last: date) -> list[tuple[date, date]]:
    """Windows to request for one symbol. Each window overlaps the covered range by one session (the
    comparison that detects a re-adjusted history); nothing when the range is covered."""
    if covered is None:
        return [(first, last)] if first <= last else []
    lo, hi = covered
    out = []
    if first < lo:
        out.append((first, lo))
    if last > hi:
        out.append((hi, last))
    return out


def batches(needs: dict[str, list[tuple[date, date]]], calendar: MarketCalendar, *,
            page_bars: int = PAGE_BARS, replace: bool = False) -> list[Fetch]:
    """Group symbols by window; split each group so one request fits one page."""
    groups: dict[tuple[date, date], list[str]] = {}
    for symbol, windows in needs.items():
        for window in windows:
            groups.setdefault(window, []).append(symbol)
    out = []
    for (first, last), symbols in sorted(groups.items()):
        sessions = len(calendar.sessions_between(first, last))
        per = max(1, page_bars // max(sessions, 1))
        for i in range(0, len(symbols), per):
            out.append(Fetch(tuple(symbols[i:i + per]), first, last, replace))
    return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def symbol_path(out: Path, symbol: str) -> Path:
    return out / f"{symbol}.parquet"


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def coverage(manifest: dict[str, Any], out: Path, symbol: str) -> tuple[date, date] | None:
    """Sessions already fetched for `symbol`: the manifest's, else the file's first and last bar."""
    entry = manifest.get("symbols", {}).get(symbol)
    if isinstance(entry, dict) and not (entry.get("bars") and not symbol_path(out, symbol).is_file()):
        try:
            return date.fromisoformat(entry["from"]), date.fromisoformat(entry["to"])
        except (KeyError, TypeError, ValueError):
            pass
    stored = read_bars(out, symbol)
    if stored is None or stored.empty:
        return None
    return stored.index[0], stored.index[-1]


def read_bars(out: Path, symbol: str) -> pd.DataFrame | None:
    """The stored bars indexed by session date, or None (no file, or one that cannot be read)."""
    path = symbol_path(out, symbol)
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - a torn or foreign file is simply fetched again
        return None
    if "timestamp" not in frame.columns or frame.empty:
        return None
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame.index = pd.Index([session_of_bar(t.to_pydatetime()) for t in stamps], name="session")
    return frame.sort_index()


def bars_frame(raw: list[dict[str, Any]]) -> pd.DataFrame:
    """Alpaca's bar dicts as a frame indexed by session date, in COLUMNS order."""
    stamps = pd.to_datetime([bar["t"] for bar in raw], utc=True, format="ISO8601")
    values = np.array([[bar.get(k) for k in _KEYS] for bar in raw], dtype=float).reshape(len(raw), len(_KEYS))
    frame = pd.DataFrame(values, columns=list(COLUMNS[1:]))
    frame.insert(0, "timestamp", stamps)
    frame.index = pd.Index([session_of_bar(t.to_pydatetime()) for t in stamps], name="session")
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def bad_bars(frame: pd.DataFrame) -> str | None:
    """Why these bars must not be written (the backtest would refuse the file), or None."""
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    bad = ~(np.isfinite(prices) & (prices > 0)).all(axis=1)
    if bad.any():
        row = frame.index[int(np.argmax(bad))]
        return f"a price on {row} is not a positive finite number"
    return None


def readjusted(stored: pd.DataFrame | None, fresh: pd.DataFrame) -> date | None:
    """The first session where a stored bar's prices differ from the fresh one's, or None. Volume alone
    is not compared: a provider may correct a recent bar's volume, which is no re-adjustment (the fresh
    bar replaces it anyway); a split or dividend adjustment always moves the prices."""
    if stored is None or stored.empty or fresh.empty:
        return None
    common = stored.index.intersection(fresh.index)
    for session in common:
        old, new = stored.loc[session], fresh.loc[session]
        for name in ("open", "high", "low", "close"):
            a, b = float(old[name]), float(new[name])
            if not math.isclose(a, b, rel_tol=PRICE_TOLERANCE, abs_tol=0.0):
                return session
    return None


def write_bars(out: Path, symbol: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.reset_index(drop=True)[list(COLUMNS)].to_parquet(buffer, index=False)
    write_atomic(symbol_path(out, symbol), buffer.getvalue(), mode=0o644)


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n", mode=0o644)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def download(source: BarsSource, symbols: Sequence[str], out: Path, *, last_completed: date,
             start: date | None = None, end: date | None = None, calendar: MarketCalendar | None = None,
             progress_stream: Any = None) -> DownloadSummary:
    """Bring `out` up to date for `symbols` over [start, end]. Raises DownloadError (progress kept)."""
    calendar = calendar or get_market_calendar()
    first, last = default_window(calendar, last_completed, start, end)
    if first > last:
        raise DownloadOptionsError(f"--start {first} is after the last session to fetch, {last} (the last "
                                   "completed session at the broker's clock, or --end)")
    out.mkdir(parents=True, exist_ok=True)
    feed = str(getattr(source.feed, "value", source.feed))
    adjustment = str(getattr(source.DAILY_BARS_ADJUSTMENT, "value", source.DAILY_BARS_ADJUSTMENT))
    manifest = read_manifest(out)
    if manifest.get("feed") != feed or manifest.get("adjustment") != adjustment:
        manifest = {"feed": feed, "adjustment": adjustment, "symbols": {}}   # a different history: start over
        stale = True
    else:
        stale = False
    manifest.setdefault("symbols", {})
    summary = DownloadSummary(first, last)
    needs: dict[str, list[tuple[date, date]]] = {}
    for symbol in symbols:
        covered = None if stale else coverage(manifest, out, symbol)
        windows = missing_ranges(covered, first, last)
        if windows:
            needs[symbol] = windows
        else:
            summary.up_to_date.append(symbol)
    plan = batches(needs, calendar)
    with progress_reporter(len(plan), "download", progress_stream) as step:
        redo = _run(source, plan, out, manifest, summary, step, stale=stale)
    if redo:
        # The whole history of each re-adjusted symbol: what was covered and what is asked for.
        again = {}
        for symbol in dict.fromkeys(redo):
            lo, hi = coverage(manifest, out, symbol) or (first, last)
            again[symbol] = [(min(lo, first), max(hi, last))]
        extra = batches(again, calendar, replace=True)
        with progress_reporter(len(extra), "download (re-adjusted history)", progress_stream) as step:
            _run(source, extra, out, manifest, summary, step, stale=False)
    return summary


def _run(source: BarsSource, plan: list[Fetch], out: Path, manifest: dict[str, Any], summary: DownloadSummary,
         step: Callable[[str], None], *, stale: bool) -> list[str]:
    redo: list[str] = []
    for fetch in plan:
        try:
            raw = source.get_daily_bars(list(fetch.symbols), start=bar_timestamp(fetch.first),
                                        end=bar_timestamp(fetch.last))
        except Exception as exc:  # the adapter already retried what can be retried
            raise DownloadError(f"{exc}") from exc
        # HTTP requests, as the adapter counts them (URL batches x pages, retries included).
        summary.requests += int(getattr(raw, "requests", 1))
        for symbol in fetch.symbols:
            rows = [bar for bar in raw.get(symbol) or [] if isinstance(bar, dict)]
            fresh = _fresh_frame(rows, fetch)
            if isinstance(fresh, str):
                summary.bad[symbol] = fresh
                continue
            stored = None if (fetch.replace or stale) else read_bars(out, symbol)
            changed = readjusted(stored, fresh)
            if changed is not None:
                if symbol not in summary.readjusted:
                    summary.readjusted.append(symbol)
                redo.append(symbol)
                continue
            merged = fresh if stored is None else pd.concat([stored[~stored.index.isin(fresh.index)], fresh])
            merged = merged.sort_index()
            if merged.empty:
                summary.empty.append(symbol)
            else:
                write_bars(out, symbol, merged)
                summary.written.add(symbol)
                summary.bars += len(fresh)
            entry = manifest["symbols"].get(symbol)
            lo, hi = fetch.first, fetch.last
            if entry and not fetch.replace:
                lo, hi = min(lo, date.fromisoformat(entry["from"])), max(hi, date.fromisoformat(entry["to"]))
            manifest["symbols"][symbol] = {"from": lo.isoformat(), "to": hi.isoformat(), "bars": len(merged)}
        write_manifest(out, manifest)
        shown = ", ".join(fetch.symbols[:4]) + (f" +{len(fetch.symbols) - 4}" if len(fetch.symbols) > 4 else "")
        step(f"{fetch.first} .. {fetch.last}: {shown}")
    return redo


def _fresh_frame(rows: list[dict[str, Any]], fetch: Fetch) -> pd.DataFrame | str:
    try:
        frame = bars_frame(rows) if rows else pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="session"))
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed bars in the answer ({type(exc).__name__}: {exc})"
    # Only the sessions asked for (an in-progress bar after --end is never stored).
    frame = frame[(frame.index >= fetch.first) & (frame.index <= fetch.last)]
    return bad_bars(frame) or frame
