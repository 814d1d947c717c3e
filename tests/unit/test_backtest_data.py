"""Bars files: both layouts and formats load; every bad file gets one clear message naming the
file, the row and the problem, and `backtest` exits 2 without a traceback."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest.cli import add_backtest_arguments, run_backtest_command
from core.backtest.data import load_history, synthetic_history
from core.backtest.errors import BacktestDataError
from tests.harness.config import make_config

UNIVERSE = ["SPY", "QQQ", "AAPL"]
GOOD = """symbol,timestamp,open,high,low,close,volume
SPY,2024-01-02,100,101,99,100.5,1000
QQQ,2024-01-02,50,51,49,50.5,1000
SPY,2024-01-03,100.5,102,100,101,1000
QQQ,2024-01-03,50.5,51,50,51,1000
SPY,2024-01-05,101,102,100,101.5,1000
"""


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_long_csv_aligns_on_sessions_with_nan_gaps(tmp_path: Path) -> None:
    history = load_history(_write(tmp_path, GOOD), UNIVERSE)
    assert history.sessions == [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]
    assert history.symbols == ["QQQ", "SPY"]
    assert history.close[:, 1].tolist()[:2] == [100.5, 101.0]
    assert np.isnan(history.close[2, 1]) and np.isnan(history.close[3, 0])  # no bar: NaN


def test_headers_are_case_insensitive_and_timestamps_may_be_instants(tmp_path: Path) -> None:
    text = ("Date,CLOSE,Open,High,Low,Symbol\n"
            "2024-01-02T05:00:00Z,100,100,100,100,spy\n"          # midnight New York = Jan 2
            "2024-01-03 00:00:00-05:00,101,101,101,101,SPY\n"
            "2024-01-04 16:00:00,102,102,102,102,SPY\n")          # naive: its own date
    history = load_history(_write(tmp_path, text), UNIVERSE)
    assert history.sessions == [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
    assert history.close[:, 0].tolist() == [100.0, 101.0, 102.0]
    assert np.isnan(history.volume).all()                          # volume is optional


def test_directory_of_per_symbol_files_csv_and_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "SPY.csv").write_text("timestamp,open,high,low,close,volume\n2024-01-02,1,1,1,1,5\n2024-01-03,2,2,2,2,5\n")
    pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-03"]), "open": [3.0], "high": [3.0], "low": [3.0],
                  "close": [3.0], "volume": [7]}).to_parquet(folder / "aapl.parquet")
    history = load_history(folder, UNIVERSE)
    assert history.symbols == ["AAPL", "SPY"]
    assert history.close[1].tolist() == [3.0, 2.0]


def test_round_trip_through_parquet_matches_the_synthetic_market(tmp_path: Path) -> None:
    synth = synthetic_history(UNIVERSE, date(2024, 1, 2), date(2024, 3, 28), seed=3)
    path = tmp_path / "bars.parquet"
    synth.to_long_frame().to_parquet(path, index=False)
    loaded = load_history(path, UNIVERSE).select(UNIVERSE)
    assert loaded.sessions == synth.sessions
    np.testing.assert_array_equal(loaded.close, synth.close)
    np.testing.assert_array_equal(loaded.open, synth.open)


BAD_CASES = {
    "missing_columns": ("symbol,timestamp,open,close\nSPY,2024-01-02,1,1\n", 1, "missing columns high, low"),
    "unparsable_date": (GOOD + "SPY,2024-13-45,1,1,1,1,1\n", 7, "timestamp '2024-13-45' is not a date"),
    "weekend_date": (GOOD + "SPY,2024-01-06,1,1,1,1,1\n", 7, "2024-01-06 (Saturday) is not an NYSE session"),
    "zero_price": (GOOD.replace("QQQ,2024-01-03,50.5,51,50,51", "QQQ,2024-01-03,50.5,51,50,0"), 5,
                   "close is 0: prices must be positive"),
    "negative_price": (GOOD.replace("SPY,2024-01-03,100.5", "SPY,2024-01-03,-100.5"), 4,
                       "open is -100.5: prices must be positive"),
    "missing_price": (GOOD.replace("QQQ,2024-01-02,50,51", "QQQ,2024-01-02,,51"), 3, "open is missing"),
    "text_price": (GOOD.replace("SPY,2024-01-05,101,102,100,101.5", "SPY,2024-01-05,101,102,100,n/a"), 6,
                   "close is 'n/a', not a number"),
    "high_below_the_body": (GOOD.replace("SPY,2024-01-05,101,102,100,101.5", "SPY,2024-01-05,101,99,100,101.5"), 6,
                            "inconsistent bar: open 101, high 99, low 100, close 101.5: the high must be at least"),
    "duplicate_row": (GOOD + "SPY,2024-01-03,1,1,1,1,1\n", 7, "duplicate bar for SPY on 2024-01-03 (first given in row 4)"),
    "unknown_symbol": (GOOD + "ABCD,2024-01-03,1,1,1,1,1\n", 7, "symbol ABCD is not in the configured universe"),
    "invalid_symbol": (GOOD + "SP Y,2024-01-03,1,1,1,1,1\n", 7, "symbol 'SP Y' is not a valid ticker"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_gives_one_clear_message(tmp_path: Path, case: str) -> None:
    text, row, problem = BAD_CASES[case]
    path = _write(tmp_path, text)
    with pytest.raises(BacktestDataError) as info:
        load_history(path, UNIVERSE)
    message = str(info.value)
    assert message.startswith(f"{path}: row {row}: "), message
    assert problem in message
    assert "\n" not in message
    assert info.value.row == row


def test_blank_lines_keep_row_numbers_as_in_the_file(tmp_path: Path) -> None:
    text = GOOD.replace("QQQ,2024-01-03", "\nQQQ,2024-01-03").replace("SPY,2024-01-05,101", "SPY,2024-01-05,-1")
    with pytest.raises(BacktestDataError, match=r"row 7: open is -1"):
        load_history(_write(tmp_path, text), UNIVERSE)


def test_unknown_symbol_in_a_directory_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "ZZZZ.csv").write_text("timestamp,open,high,low,close\n2024-01-02,1,1,1,1\n")
    with pytest.raises(BacktestDataError, match=r"ZZZZ.csv: the file name gives symbol ZZZZ, which is not in"):
        load_history(folder, UNIVERSE)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(BacktestDataError, match="no such file or directory"):
        load_history(tmp_path / "nope.csv", UNIVERSE)
    with pytest.raises(BacktestDataError, match="the file is empty"):
        load_history(_write(tmp_path, ""), UNIVERSE)
    with pytest.raises(BacktestDataError, match="cannot be read as parquet"):
        load_history(_write(tmp_path, "not parquet at all", "bars.parquet"), UNIVERSE)
    with pytest.raises(BacktestDataError, match="unsupported file type"):
        load_history(_write(tmp_path, GOOD, "bars.txt"), UNIVERSE)


def _command(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    args = parser.parse_args([*argv, "--out", str(tmp_path / "out")])
    return run_backtest_command(args, make_config(tmp_path))


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_exits_2_through_the_command(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    text, row, problem = BAD_CASES[case]
    path = _write(tmp_path, text)
    assert _command(tmp_path, "--data", str(path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {path}: row {row}: ") and problem in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--start", "2024-02-30"], "--start '2024-02-30': expected a date YYYY-MM-DD"),
    (["--start", "2025-01-02", "--end", "2024-01-02"], "is after --end"),
    (["--symbols", "SPY,SPY"], "lists a symbol twice"),
    (["--symbols", "SPY,b@d"], "B@D is not a valid ticker"),
    (["--initial-cash", "-5"], "--initial-cash '-5'"),
    (["--slippage-bps", "abc"], "--slippage-bps 'abc': expected a number"),
    (["--seed", "x"], "--seed 'x': expected a whole number"),
    (["--start", "2003-06-02", "--end", "2004-12-31"], "the period 2003-06-02 .. 2004-12-31 leaves the NYSE calendar"),
    (["--start", "2004-01-05", "--end", "2004-12-31"], "needs 40 warm-up sessions"),
    (["--start", "2030-01-02", "--end", "2031-01-02"], "leaves the NYSE calendar"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, argv: list[str], needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _command(tmp_path, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and len(err.splitlines()) == 1, err


def test_symbols_missing_from_the_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, GOOD)
    assert _command(tmp_path, "--data", str(path), "--symbols", "SPY,AAPL") == 2
    assert "no bars for AAPL" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "needle"), [
    (["--slippage-bps", "10000"], "--slippage-bps '10000': expected a number below 10000"),
    (["--commission-bps", "20000"], "--commission-bps '20000': expected a number below 10000"),
])
def test_costs_of_100_percent_or_more_exit_2(tmp_path: Path, argv: list[str], needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """At 10,000 bps of slippage a sale fills at a price of zero (beyond, below zero): refused, not run."""
    assert _command(tmp_path, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {needle}", err
    assert not (tmp_path / "out").exists()


def test_a_symbol_outside_the_universe_on_the_synthetic_market_is_warned(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _command(tmp_path, "--symbols", "APPL,SPY", "--start", "2025-01-02", "--end", "2025-06-30") == 0
    err = capsys.readouterr().err
    assert ("warning: APPL not in the configured universe (SYMBOL_TIERS): the synthetic market makes up bars for any "
            "ticker") in err and "SPY not" not in err
