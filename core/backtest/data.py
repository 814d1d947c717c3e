"""Daily bars for the backtest: files (CSV or Parquet) or the built-in synthetic market.

File formats (headers are case-insensitive; column order does not matter):

- long format, one file: columns ``symbol, timestamp, open, high, low, close`` and optionally
  ``volume`` (``date`` is accepted for ``timestamp``);
- one file per symbol in a directory: the same columns without ``symbol``; the symbol is the file
  name without its extension (``SPY.csv``, ``brk.b.parquet``).

``timestamp`` is a date (``2024-01-02``) or an ISO 8601 datetime. A datetime with an offset or ``Z``
is converted to New York time and its date is the session (Alpaca stamps daily bars at midnight New
York, ``2024-01-02T05:00:00Z``); a naive datetime's own date is the session. Every date must be an
NYSE session. Prices must be finite and positive, and the high and low must bound the open and close. Each (symbol, session) appears once. Every symbol
must belong to the configured universe or to ``--symbols``.

A bad file raises ONE `BacktestDataError` naming the file, the row and the problem. Rows are
numbered as a spreadsheet shows a CSV file: the header is row 1, the first bar row 2 (blank lines
count). Parquet has no header line, so its rows are numbered the same way (first record = row 2),
which keeps one convention for both formats.

The result is a `History`: sessions (every NYSE session from the first to the last bar) x symbols,
with open/high/low/close/volume arrays; NaN where a symbol has no bar on a session.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config.universe import is_valid_ticker
from core.backtest.errors import BacktestDataError
from core.domain.bar_validation import ohlc_inconsistent
from core.domain.market_calendar import MarketCalendar, get_market_calendar

if TYPE_CHECKING:
    import pandas as pd

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "date")
FILE_SUFFIXES: dict[str, str] = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
FIRST_DATA_ROW = 2  # the header is row 1
SYNTHETIC_SOURCE_PREFIX = "synthetic market"

# A time part followed by "Z" or a UTC offset: such stamps are instants, converted to New York.
_AWARE_RE = r"[T ]\d.*(?:Z|[+-]\d\d:?\d\d)$"


@dataclass(frozen=True)
class History:
    """Bars aligned on NYSE sessions (rows) and symbols (columns); NaN = no bar."""

    sessions: list[date]
    symbols: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        shape = (len(self.sessions), len(self.symbols))
        for name in ("open", "high", "low", "close", "volume"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"History.{name} has shape {getattr(self, name).shape}, expected {shape}")

    @property
    def n_sessions(self) -> int:
        return len(self.sessions)

    def select(self, symbols: Sequence[str]) -> History:
        """The same history restricted to `symbols`, in that order."""
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in symbols if s not in index]
        if missing:
            raise BacktestDataError(f"{self.source or 'the data'}: no bars at all for {', '.join(missing)}")
        cols = [index[s] for s in symbols]
        if cols and cols == list(range(cols[0], cols[0] + len(cols))):
            # Consecutive columns (the usual case: the run's symbols, then the benchmark's): views, no copy.
            picked: slice | list[int] = slice(cols[0], cols[0] + len(cols))
        else:
            picked = cols
        return History(self.sessions, list(symbols), self.open[:, picked], self.high[:, picked],
                       self.low[:, picked], self.close[:, picked], self.volume[:, picked], self.source)

    def between(self, first: date, last: date) -> History:
        """Rows whose session is within [first, last]."""
        lo = int(np.searchsorted(_as_day_array(self.sessions), np.datetime64(first, "D"), side="left"))
        hi = int(np.searchsorted(_as_day_array(self.sessions), np.datetime64(last, "D"), side="right"))
        return History(self.sessions[lo:hi], list(self.symbols), self.open[lo:hi], self.high[lo:hi],
                       self.low[lo:hi], self.close[lo:hi], self.volume[lo:hi], self.source)

    def to_long_frame(self) -> pd.DataFrame:
        """Long format (symbol, timestamp, open, high, low, close, volume), bars only where a close exists."""
        import pandas as pd

        n, m = self.close.shape
        days = np.repeat(_as_day_array(self.sessions), m)
        frame = pd.DataFrame({
            "symbol": np.tile(np.array(self.symbols, dtype=object), n),
            "timestamp": pd.to_datetime(days).strftime("%Y-%m-%d"),
            "open": self.open.ravel(), "high": self.high.ravel(), "low": self.low.ravel(),
            "close": self.close.ravel(), "volume": self.volume.ravel(),
        })
        return frame[np.isfinite(self.close.ravel())].reset_index(drop=True)


def _as_day_array(sessions: Sequence[date]) -> np.ndarray:
    return np.array(sessions, dtype="datetime64[D]")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def load_history(path: str | Path, allowed_symbols: Collection[str], *,
                 calendar: MarketCalendar | None = None) -> History:
    """Read a bars file or a directory of per-symbol files. Raises `BacktestDataError`."""
    calendar = calendar or get_market_calendar()
    root = Path(path)
    allowed = {s.upper() for s in allowed_symbols}
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and bars_file_format(p) is not None)
        if not files:
            raise BacktestDataError(
                f"{root}: the directory holds no bars files (expected SYMBOL.csv or SYMBOL.parquet files)",
                path=str(root), problem="no bars files")
        parts = []
        seen: dict[str, Path] = {}
        for file in files:
            symbol = symbol_of_bars_file(file)
            if symbol in seen:
                raise BacktestDataError(f"{file}: symbol {symbol} is also given by {seen[symbol]}",
                                        path=str(file), problem="symbol given twice")
            seen[symbol] = file
            if not is_valid_ticker(symbol):
                raise BacktestDataError(
                    f"{file}: the file name gives symbol {symbol!r}, which is not a valid ticker "
                    "(expected 1-5 letters, optionally a class such as BRK.B)", path=str(file),
                    problem="invalid symbol")
            if symbol not in allowed:
                raise BacktestDataError(
                    f"{file}: the file name gives symbol {symbol}, which is not in the configured universe "
                    f"(SYMBOL_TIERS) or --symbols", path=str(file), problem="unknown symbol")
            parts.append(_read_file(file, calendar, allowed, fixed_symbol=symbol))
        source = str(root)
    elif root.is_file():
        if bars_file_format(root) is None:
            raise BacktestDataError(
                f"{root}: unsupported file type (expected .csv, .csv.gz, .parquet or .pq)",
                path=str(root), problem="unsupported file type")
        parts = [_read_file(root, calendar, allowed, fixed_symbol=None)]
        source = str(root)
    else:
        raise BacktestDataError(f"{root}: no such file or directory", path=str(root), problem="not found")
    return _assemble(parts, calendar, source)


def bars_file_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, kind in FILE_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    return None


def symbol_of_bars_file(path: Path) -> str:
    name = path.name
    for suffix in sorted(FILE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)].strip().upper()
    return path.stem.upper()


@dataclass
class _Part:
    path: Path
    symbols: np.ndarray      # object array of tickers
    days: np.ndarray         # datetime64[D]
    rows: np.ndarray         # file row numbers, for messages
    prices: dict[str, np.ndarray]
    volume: np.ndarray


def _fail(path: Path, row: int | None, problem: str) -> BacktestDataError:
    where = f"{path}: row {row}: " if row is not None else f"{path}: "
    return BacktestDataError(where + problem, path=str(path), row=row, problem=problem)


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    kind = bars_file_format(path)
    try:
        if kind == "csv":
            # Only empty cells are missing: "NA" or "NAN" may be tickers. Blank lines are kept as
            # all-empty rows so that index + 2 is the row number a spreadsheet shows.
            frame = pd.read_csv(path, skip_blank_lines=False, keep_default_na=False, na_values=[""])
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise _fail(path, None, "the file is empty (expected a header row and bars)") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).replace("Error tokenizing data. C error: ", "")
        match = re.search(r"line (\d+)", detail)
        raise _fail(path, int(match.group(1)) if match else None, f"malformed CSV: {detail}") from None
    except UnicodeDecodeError:
        raise _fail(path, None, "the file is not UTF-8 text (expected CSV)") from None
    except (OSError, ValueError, ImportError) as exc:
        raise _fail(path, None, f"cannot be read as {kind}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for corrupt Parquet
        raise _fail(path, None, f"cannot be read as {kind}: {type(exc).__name__}: {exc}") from None
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _read_file(path: Path, calendar: MarketCalendar, allowed: set[str], fixed_symbol: str | None) -> _Part:
    import pandas as pd

    frame = _read_table(path)
    columns = list(frame.columns)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise _fail(path, 1, f"column {dupes[0]!r} appears twice in the header")
    ts_col = next((c for c in TIMESTAMP_ALIASES if c in columns), None)
    required = ([] if fixed_symbol else ["symbol"]) + ["timestamp"] + list(PRICE_COLUMNS)
    missing = [c for c in required if c not in columns and not (c == "timestamp" and ts_col)]
    if missing:
        found = ", ".join(columns) if columns else "none"
        raise _fail(path, 1, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(found: {found}; expected symbol, timestamp, open, high, low, close[, volume]"
                             f"{'' if not fixed_symbol else ' without symbol in a per-symbol file'})")
    assert ts_col is not None
    rows_all = np.arange(len(frame)) + FIRST_DATA_ROW
    # Blank lines (every cell empty) are not bars.
    keep = ~frame.isna().all(axis=1).to_numpy()
    if not keep.all():
        frame = frame[keep]
        rows_all = rows_all[keep]
    if frame.empty:
        raise _fail(path, None, "the file has a header but no bars")
    rows = rows_all
    problems: list[tuple[int, int, str, int]] = []  # (first row, check order, message, rows affected)

    # --- symbols ---------------------------------------------------------------------------
    if fixed_symbol is None:
        raw_sym = frame["symbol"]
        symbols = raw_sym.astype(object).where(raw_sym.notna(), "").astype(str).str.strip().str.upper()
        sym_values = symbols.to_numpy(dtype=object)
        unique = pd.unique(sym_values)
        bad_syms = [s for s in unique if s not in allowed]
        if bad_syms:
            bad_mask = np.isin(sym_values, np.array(bad_syms, dtype=object))
            first = int(np.argmax(bad_mask))
            s = sym_values[first]
            if s == "":
                msg = "symbol is missing"
            elif not is_valid_ticker(s):
                msg = f"symbol {s!r} is not a valid ticker (expected 1-5 letters, optionally a class such as BRK.B)"
            else:
                msg = f"symbol {s} is not in the configured universe (SYMBOL_TIERS) or --symbols"
            problems.append((int(rows[first]), 3, msg, int(bad_mask.sum())))
    else:
        if "symbol" in columns:
            given = frame["symbol"].astype(object).where(frame["symbol"].notna(), "").astype(str)
            given = given.str.strip().str.upper()
            other = (given != fixed_symbol).to_numpy()
            if other.any():
                first = int(np.argmax(other))
                problems.append((int(rows[first]), 3, f"symbol {given.iloc[first]!r} differs from {fixed_symbol}, "
                                 "the symbol the file name gives", int(other.sum())))
        sym_values = np.full(len(frame), fixed_symbol, dtype=object)

    # --- timestamps ------------------------------------------------------------------------
    days, bad_dates = _parse_days(frame[ts_col])
    if bad_dates.any():
        first = int(np.argmax(bad_dates))
        raw = frame[ts_col].iloc[first]
        shown = "missing" if _is_missing(raw) else repr(str(raw))
        problems.append((int(rows[first]), 1, f"{ts_col} {shown} is not a date (expected YYYY-MM-DD or an ISO 8601 "
                         "datetime such as 2024-01-02T05:00:00Z)", int(bad_dates.sum())))
    else:
        sessions = _as_day_array(calendar.sessions_between(calendar.first_session, calendar.last_session))
        pos = np.searchsorted(sessions, days)
        in_range = pos < len(sessions)
        is_session = np.zeros(len(days), dtype=bool)
        is_session[in_range] = sessions[pos[in_range]] == days[in_range]
        if not is_session.all():
            first = int(np.argmax(~is_session))
            day = pd.Timestamp(days[first]).date()
            if not (calendar.first_session <= day <= calendar.last_session):
                why = (f"{day} is outside the supported calendar range "
                       f"{calendar.first_session}..{calendar.last_session}")
            else:
                why = f"{day} ({day:%A}) is not an NYSE session (weekend or exchange holiday)"
            problems.append((int(rows[first]), 1, why, int((~is_session).sum())))

    # --- prices ----------------------------------------------------------------------------
    prices: dict[str, np.ndarray] = {}
    for order, name in enumerate(PRICE_COLUMNS):
        raw_col = frame[name]
        values = _numeric(raw_col)
        bad = ~(np.isfinite(values) & (values > 0))
        prices[name] = values
        if bad.any():
            first = int(np.argmax(bad))
            raw = raw_col.iloc[first]
            if _is_missing(raw):
                msg = f"{name} is missing"
            elif not np.isfinite(values[first]) and not _looks_numeric(raw):
                msg = f"{name} is {str(raw)!r}, not a number"
            else:
                msg = f"{name} is {values[first]:g}: prices must be positive and finite"
            problems.append((int(rows[first]), 10 + order, msg, int(bad.sum())))
    with np.errstate(invalid="ignore"):   # a missing or bad price is reported above; compare the rest
        inconsistent = ohlc_inconsistent(prices["open"], prices["high"], prices["low"], prices["close"])
    if inconsistent.any():
        first = int(np.argmax(inconsistent))
        o, h, lo, c = (prices[n][first] for n in ("open", "high", "low", "close"))
        problems.append((int(rows[first]), 15, f"inconsistent bar: open {o:g}, high {h:g}, low {lo:g}, close {c:g}: "
                         "the high must be at least the open, the close and the low, the low at most the open and "
                         "the close (as the live DataAgent checks)", int(inconsistent.sum())))
    volume = _numeric(frame["volume"]) if "volume" in columns else np.full(len(frame), np.nan)

    # --- duplicates ------------------------------------------------------------------------
    if not bad_dates.any():
        keys = pd.DataFrame({"s": sym_values, "d": days})
        dup = keys.duplicated(keep="first").to_numpy()
        if dup.any():
            first = int(np.argmax(dup))
            same = np.flatnonzero((sym_values == sym_values[first]) & (days == days[first]))
            day = pd.Timestamp(days[first]).date()
            problems.append((int(rows[first]), 20, f"duplicate bar for {sym_values[first]} on {day} "
                             f"(first given in row {int(rows[same[0]])})", int(dup.sum())))

    if problems:
        row, _, message, count = min(problems)
        if count > 1:
            message += f" ({count} rows have this problem)"
        raise _fail(path, row, message)
    return _Part(path, sym_values, days, rows, prices, volume)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return bool(pd.isna(value)) if not isinstance(value, str) else value.strip() == ""


def _looks_numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _numeric(col: pd.Series) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(col.astype(object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _parse_days(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Session dates (datetime64[D]) and a mask of values that are not dates."""
    import pandas as pd

    if isinstance(col.dtype, pd.DatetimeTZDtype):
        local = col.dt.tz_convert("America/New_York").dt.tz_localize(None)
        days = local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        return days, np.isnat(days)
    if pd.api.types.is_datetime64_dtype(col.dtype):
        days = col.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        return days, np.isnat(days)
    # Each distinct text is parsed once: a long file repeats every date once per symbol.
    codes, distinct = pd.factorize(col.astype(object).where(col.notna(), "").astype(str).str.strip())
    text = pd.Series(distinct, dtype=object)
    days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[D]")
    aware = text.str.contains(_AWARE_RE, regex=True).to_numpy(dtype=bool)
    naive_idx = np.flatnonzero(~aware)
    if len(naive_idx):
        parsed = pd.to_datetime(text.iloc[naive_idx], format="ISO8601", errors="coerce")
        days[naive_idx] = parsed.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    aware_idx = np.flatnonzero(aware)
    if len(aware_idx):
        parsed = pd.to_datetime(text.iloc[aware_idx], format="ISO8601", errors="coerce", utc=True)
        local = parsed.dt.tz_convert("America/New_York").dt.tz_localize(None)
        days[aware_idx] = local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    days = days[codes]
    return days, np.isnat(days)


def _assemble(parts: list[_Part], calendar: MarketCalendar, source: str) -> History:
    import pandas as pd

    all_days = np.concatenate([p.days for p in parts])
    first = pd.Timestamp(all_days.min()).date()
    last = pd.Timestamp(all_days.max()).date()
    sessions = calendar.sessions_between(first, last)
    session_days = _as_day_array(sessions)
    all_symbols = np.concatenate([p.symbols for p in parts])
    symbols = sorted({str(s) for s in pd.unique(all_symbols)})
    col_of = {s: i for i, s in enumerate(symbols)}
    shape = (len(sessions), len(symbols))
    arrays = {name: np.full(shape, np.nan) for name in (*PRICE_COLUMNS, "volume")}
    for part in parts:
        r = np.searchsorted(session_days, part.days)
        c = np.fromiter((col_of[s] for s in part.symbols), dtype=np.intp, count=len(part.symbols))
        for name in PRICE_COLUMNS:
            arrays[name][r, c] = part.prices[name]
        arrays["volume"][r, c] = part.volume
    return History(sessions, symbols, arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                   arrays["volume"], source)


# ---------------------------------------------------------------------------------------------
# Synthetic market
# ---------------------------------------------------------------------------------------------
def synthetic_history(symbols: Sequence[str], start: date, end: date, seed: int, *,
                      calendar: MarketCalendar | None = None) -> History:
    """Bars from the simulated market's generator for every NYSE session in [start, end]."""
    from core.backtest.synthetic import generate_bars

    calendar = calendar or get_market_calendar()
    sessions = calendar.sessions_between(start, end)
    if not sessions:
        raise BacktestDataError(f"no NYSE session between {start} and {end}")
    bars = generate_bars(list(symbols), sessions, seed, calendar)
    return History(sessions, list(symbols), bars["open"], bars["high"], bars["low"], bars["close"],
                   bars["volume"], f"{SYNTHETIC_SOURCE_PREFIX} (seed {seed})")
