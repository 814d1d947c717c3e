"""`trading-daemon download` against the simulated market through the real adapter and SDK: the
files the backtest reads, the request counts of first runs and reruns (from the sim's request log),
re-fetching a re-adjusted history, and resuming after the connection drops or a 429."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.backtest.data import load_history
from core.backtest.download import (
    MANIFEST,
    DownloadError,
    batches,
    download,
    missing_ranges,
    read_bars,
    read_manifest,
)
from core.domain.market_calendar import get_market_calendar
from tests.harness.config import make_config
from tests.harness.market import gateway_for

CAL = get_market_calendar()


# `main()` configures structlog to print to the stream of the moment (pytest's capture, closed after the
# test): every test here puts the defaults back so later tests do not log into a closed file.
pytestmark = pytest.mark.usefixtures("reset_logging")
SYMBOLS = ["AAPL", "COST", "MSFT", "QQQ", "SPY"]
START = date(2016, 1, 4)
BARS = "/v2/stocks/bars"
DAY = 86_400.0


def _run(sim: Any, gateway: Any, out: Path, symbols: list[str] = SYMBOLS, **kwargs: Any) -> Any:
    last = CAL.last_completed_session(gateway.get_clock().timestamp)
    return download(gateway, symbols, out, last_completed=last, start=kwargs.pop("start", START), calendar=CAL,
                    **kwargs)


def _bars_requests(sim: Any) -> int:
    return sim.server.count(BARS)


def test_plan_is_pure_and_page_sized() -> None:
    first, last = date(2024, 1, 2), date(2024, 12, 31)            # 252 sessions
    assert missing_ranges(None, first, last) == [(first, last)]
    assert missing_ranges((first, last), first, last) == []
    # Head and tail each overlap the covered range by one session.
    assert missing_ranges((date(2024, 3, 1), date(2024, 6, 28)), first, last) == [
        (first, date(2024, 3, 1)), (date(2024, 6, 28), last)]
    plan = batches({s: [(first, last)] for s in [f"S{i}" for i in range(100)]}, CAL)
    assert [len(f.symbols) for f in plan] == [39, 39, 22]       # 10,000 // 252 = 39 symbols per page


def test_download_then_backtest_and_minimal_reruns(sim: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, request_timeout_seconds=5.0)
    gateway = gateway_for(sim, config)
    out = tmp_path / "bars"
    summary = _run(sim, gateway, out)
    sessions = CAL.sessions_between(START, date(2025, 3, 7))      # the sim's now: 2025-03-10 11:00 New York
    per_page = 10_000 // len(sessions)
    expected = -(-len(SYMBOLS) // per_page)
    assert _bars_requests(sim) == summary.requests == expected == 2
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{s}.parquet" for s in SYMBOLS] + [MANIFEST])
    manifest = read_manifest(out)
    assert manifest["feed"] == "iex" and manifest["adjustment"] == "all"
    assert manifest["symbols"]["SPY"] == {"from": "2016-01-04", "to": "2025-03-07", "bars": len(sessions)}

    # The backtest reads the directory as is, and the bars are the market's.
    history = load_history(out, SYMBOLS, calendar=CAL)
    assert history.sessions[0] == START and history.sessions[-1] == date(2025, 3, 7)
    spy = history.close[:, history.symbols.index("SPY")]
    expected_close = [sim.bars.session_bar("SPY", d).close for d in (START, date(2020, 6, 1), date(2025, 3, 7))]
    assert [spy[history.sessions.index(d)] for d in (START, date(2020, 6, 1), date(2025, 3, 7))] == expected_close

    # Nothing missing: no bars request at all.
    before = _bars_requests(sim)
    again = _run(sim, gateway, out)
    assert _bars_requests(sim) == before and again.requests == 0 and sorted(again.up_to_date) == SYMBOLS

    # One more session: one request for every symbol (the window is 2 sessions, with the overlap).
    sim.clock.advance(DAY)
    before = _bars_requests(sim)
    again = _run(sim, gateway, out)
    assert _bars_requests(sim) - before == again.requests == 1
    request = sim.server.request_log[-1]
    assert request.query["symbols"] == ",".join(SYMBOLS) and request.query["adjustment"] == "all"
    assert read_manifest(out)["symbols"]["AAPL"]["to"] == "2025-03-10"
    assert read_bars(out, "AAPL").index[-1] == date(2025, 3, 10)

    # An earlier --start: only the head is fetched (one page: 5 symbols x 253 sessions).
    before = _bars_requests(sim)
    again = _run(sim, gateway, out, start=date(2015, 1, 2))
    assert _bars_requests(sim) - before == again.requests == 1
    assert read_bars(out, "MSFT").index[0] == date(2015, 1, 2)

    # A file deleted by hand is fetched again although download.json lists it.
    (out / "QQQ.parquet").unlink()
    before = _bars_requests(sim)
    again = _run(sim, gateway, out, start=date(2015, 1, 2))
    assert _bars_requests(sim) - before == again.requests == 1 and again.written == {"QQQ"}
    assert sim.server.request_log[-1].query["symbols"] == "QQQ"


def test_readjusted_history_is_fetched_whole(sim: Any, tmp_path: Path) -> None:
    """After a 2-for-1 split the provider divides every earlier AAPL bar by 2: the overlap bar no
    longer matches the stored one, so AAPL (and only AAPL) is fetched again from its first session."""
    config = make_config(tmp_path, request_timeout_seconds=5.0)
    gateway = gateway_for(sim, config)
    out = tmp_path / "bars"
    _run(sim, gateway, out, start=date(2023, 1, 3))

    def halve_aapl(payload: Any) -> Any:
        for bar in payload["bars"].get("AAPL", []):
            for key in ("o", "h", "l", "c", "vw"):
                bar[key] = bar[key] / 2.0
            bar["v"] = bar["v"] * 2
        return payload

    sim.server.faults.inject("transform", path_prefix=BARS, count=None, fn=halve_aapl)
    sim.clock.advance(DAY)
    before = _bars_requests(sim)
    summary = _run(sim, gateway, out, start=date(2023, 1, 3))
    assert summary.readjusted == ["AAPL"]
    assert _bars_requests(sim) - before == summary.requests == 2     # the tail for all, then AAPL whole
    whole = sim.server.request_log[-1].query
    assert whole["symbols"] == "AAPL" and whole["start"].startswith("2023-01-03")
    aapl = read_bars(out, "AAPL")
    truth = np.array([sim.bars.session_bar("AAPL", d).close for d in aapl.index]) / 2.0
    assert np.array_equal(aapl["close"].to_numpy(), truth)           # no stale, unhalved bar is left
    msft = read_bars(out, "MSFT")
    assert msft["close"].iloc[0] == sim.bars.session_bar("MSFT", date(2023, 1, 3)).close


def test_dropped_connection_keeps_what_was_written_and_a_rerun_continues(sim: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, request_timeout_seconds=5.0, max_get_retries=2, retry_backoff_seconds=0.01)
    gateway = gateway_for(sim, config)
    out = tmp_path / "bars"

    def drop_the_next_ones(payload: Any) -> Any:
        # After the first page is answered, the connection drops for longer than the adapter retries.
        sim.server.faults.inject("drop", path_prefix=BARS, count=3)
        return payload

    sim.server.faults.inject("transform", path_prefix=BARS, count=1, fn=drop_the_next_ones)
    with pytest.raises(DownloadError, match="connection"):
        _run(sim, gateway, out)
    written = read_manifest(out)["symbols"]
    assert sorted(written) == ["AAPL", "COST", "MSFT", "QQQ"]             # the first page: 4 symbols
    assert not (out / "SPY.parquet").exists()
    before = _bars_requests(sim)
    summary = _run(sim, gateway, out)
    assert _bars_requests(sim) - before == summary.requests == 1 and summary.written == {"SPY"}
    assert sorted(summary.up_to_date) == ["AAPL", "COST", "MSFT", "QQQ"]


def test_a_429_waits_for_the_reset_and_completes(sim: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, request_timeout_seconds=5.0)
    gateway = gateway_for(sim, config)
    out = tmp_path / "bars"
    sim.server.faults.inject("429", path_prefix=BARS, count=1, reset_in=2)
    summary = _run(sim, gateway, out)
    assert summary.requests == _bars_requests(sim) == 3               # 2 pages; the refused one asked again
    assert gateway.stats.rate_limited == 1
    assert sorted(read_manifest(out)["symbols"]) == SYMBOLS


def test_cli_download_then_backtest(sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    env = tmp_path / "sim.env"
    env.write_text(f"ALPACA_API_KEY={sim.api_key}\nALPACA_SECRET_KEY={sim.secret_key}\n"
                   f"ALPACA_TRADING_URL={sim.url}\nALPACA_DATA_URL={sim.url}\nSTATE_DIR={tmp_path / 'state'}\n")
    out = tmp_path / "bars"
    code = main(["--env-file", str(env), "download", "--symbols", "SPY,QQQ,AAPL", "--start", "2020-01-02",
                 "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "3 symbols" in printed.out and f"backtest --data {out}" in printed.out
    assert main(["--env-file", str(env), "download", "--symbols", "SPY,QQQ,AAPL", "--start", "2020-01-02",
                 "--out", str(out)]) == 0
    assert "0 bars requests" in capsys.readouterr().out
    report = tmp_path / "report"
    assert main(["--env-file", str(env), "backtest", "--data", str(out), "--out", str(report)]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0].startswith("Period 2020-01-02 .. 2025-03-07")
    assert "warning" not in printed.err                                # adjusted bars: no split-like move
    assert (report / "trades.csv").read_text().count("\n") > 1
    assert main(["--env-file", str(env), "download", "--start", "2020-13-01"]) == 2
    assert "--start '2020-13-01': expected a date" in capsys.readouterr().err
    assert main(["--env-file", str(env), "download", "--start", "2026-01-02", "--out", str(out)]) == 2
    assert "--start 2026-01-02 is after the last session to fetch, 2025-03-07" in capsys.readouterr().err
    early = tmp_path / "early"
    assert main(["--env-file", str(env), "download", "--symbols", "SPY", "--start", "2001-01-02", "--end",
                 "2004-01-30", "--out", str(early)]) == 0
    printed = capsys.readouterr()
    assert ("note: --start 2001-01-02 is before 2004-01-02, the first session of the NYSE calendar the daemon "
            "carries: the download starts there") in printed.err
    assert "Downloaded 2004-01-02 .. 2004-01-30 for 1 symbols" in printed.out


def test_split_in_the_simulated_market_refetches_only_that_symbol(sim: Any, tmp_path: Path) -> None:
    """A 4-for-1 AAPL split with ex-date 2025-03-12: bars stored before it are in the old basis (x4);
    asked after it, Alpaca (and the sim) divide every earlier bar by 4. The rerun sees the overlap bar
    change and replaces AAPL's whole history; the result has no split-like jump."""
    from core.backtest.adjustment import suspect_splits

    sim.exchange.add_split("AAPL", date(2025, 3, 12), 4.0)
    config = make_config(tmp_path, request_timeout_seconds=5.0)
    gateway = gateway_for(sim, config)
    out = tmp_path / "bars"
    _run(sim, gateway, out, start=date(2023, 1, 3))
    old_basis = read_bars(out, "AAPL")["close"].iloc[-1]
    assert old_basis == sim.bars.session_bar("AAPL", date(2025, 3, 7)).close     # the raw, pre-split basis

    sim.clock.advance(3 * DAY)                                     # Thursday 2025-03-13: the 12th is complete
    before = _bars_requests(sim)
    summary = _run(sim, gateway, out, start=date(2023, 1, 3))
    assert summary.readjusted == ["AAPL"]
    assert _bars_requests(sim) - before == summary.requests == 2   # the tail for all five, then AAPL whole
    assert sim.server.request_log[-1].query["symbols"] == "AAPL"
    aapl = read_bars(out, "AAPL")
    assert aapl.index[0] == date(2023, 1, 3) and aapl.index[-1] == date(2025, 3, 12)
    assert aapl["close"].loc[date(2025, 3, 7)] == pytest.approx(old_basis / 4, rel=1e-9)
    history = load_history(out, SYMBOLS, calendar=CAL)
    assert suspect_splits(history) == []
    # The other symbols kept their files and only gained the new sessions.
    assert read_bars(out, "MSFT").index[-1] == date(2025, 3, 12)


def test_download_command_imports_neither_matplotlib_nor_dask(tmp_path: Path) -> None:
    """A command that does not plot does not import matplotlib (nor the sweep's Dask)."""
    import subprocess
    import sys

    from tests.harness.config import REPO_ROOT

    code = f"""
import sys
from datetime import UTC, datetime
from core.domain.clock import SimClock
from core.sim import start_sim_market
sim = start_sim_market(clock=SimClock(datetime(2025, 3, 10, 15, tzinfo=UTC)), seed=42)
env = {str(tmp_path / 'e.env')!r}
open(env, "w").write(f"ALPACA_API_KEY={{sim.api_key}}\\nALPACA_SECRET_KEY={{sim.secret_key}}\\n"
                     f"ALPACA_TRADING_URL={{sim.url}}\\nALPACA_DATA_URL={{sim.url}}\\nSTATE_DIR={str(tmp_path / 'state')}\\n")
from core.cli import main
rc = main(["--env-file", env, "download", "--symbols", "SPY,QQQ", "--start", "2024-01-02",
           "--out", {str(tmp_path / 'bars')!r}])
sim.stop()
print("RESULT", rc, sorted(m for m in ("matplotlib", "dask", "distributed") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "RESULT 0 []" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "bars" / "SPY.parquet").is_file()
