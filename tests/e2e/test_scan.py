"""The daily scanner: the whole universe in one batched fetch, an atomic candidates.json with every
field, the baseline always included, and nothing done on a day that is not a session."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.broker.factory import SIM_BANNER
from core.daily_scan import scan
from core.domain.market_calendar import NEW_YORK, get_market_calendar, new_york_time
from core.state.candidates import load_candidates
from tests.harness.config import REPO_ROOT, command_env, make_config
from tests.harness.market import gateway_for, running_market

CAL = get_market_calendar()


def _run_scan(tmp_path: Path, when: datetime, **over: Any) -> tuple[Any, Any, Path]:
    config = make_config(tmp_path, **over)
    with running_market(when) as market:
        result = scan(config, gateway_for(market, config), market.clock, CAL)
        return result, market.server.count(path_prefix="/v2/stocks/bars"), Path(config.candidates_path)


def test_scan_writes_candidates_for_the_whole_universe(tmp_path: Path) -> None:
    previous = tmp_path / "candidates.json"
    previous.write_text(json.dumps({"symbols": ["AAPL"]}))  # a narrow old file must not narrow the scan
    when = datetime(2025, 6, 3, 16, 5, tzinfo=NEW_YORK)
    result, requests, path = _run_scan(tmp_path, when)
    assert requests == 1
    assert result is not None and result.universe_size == 29
    assert result.as_of.isoformat() == "2025-06-03"           # today's close is complete at 16:05
    assert set(result.scores) | set(result.excluded) == set(make_config(tmp_path).symbols)
    picked = [s for s in result.symbols if s not in ("SPY", "QQQ")]
    assert {"SPY", "QQQ"} <= set(result.symbols) and len(picked) <= 10
    assert all(result.scores[s] < -1.0 for s in picked)
    assert picked == sorted(picked, key=lambda s: result.scores[s])
    data = json.loads(path.read_text())
    assert set(data) >= {"as_of", "generated_at", "universe_size", "symbols", "scores", "excluded"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_candidates(path, set(make_config(tmp_path).symbols), CAL, when).symbols == result.symbols


def test_scan_on_a_non_session_day_does_nothing(tmp_path: Path) -> None:
    when = datetime(2025, 7, 4, 16, 5, tzinfo=NEW_YORK)  # Independence Day
    result, requests, path = _run_scan(tmp_path, when)
    assert result is None and requests == 0 and not path.exists()


def test_scan_respects_top_n(tmp_path: Path) -> None:
    result, _, _ = _run_scan(tmp_path, datetime(2025, 6, 3, 16, 5, tzinfo=NEW_YORK), scanner_top_n=5,
                             scanner_oversold_z=-0.1)
    assert result is not None
    picked = [s for s in result.symbols if s not in ("SPY", "QQQ")]
    assert len(picked) <= 5 and all("outside the top 5" in r for s, r in result.excluded.items()
                                    if "outside the top" in r)


def test_scripts_scan_opportunities_is_the_scan_command(tmp_path: Path) -> None:
    """The seed's scripts/scan_opportunities.py still runs as a script from the repository root: a thin
    entry point to `trading-daemon scan` (on the simulated market when no keys are set, the real date)."""
    env = command_env(tmp_path / "state", CANDIDATES_PATH=str(tmp_path / "candidates.json"), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "scripts/scan_opportunities.py"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == SIM_BANNER
    if not CAL.is_session(new_york_time(datetime.now(UTC)).date()):
        assert result.stdout.splitlines()[-1] == "scan skipped: not a trading session"
        return
    written = json.loads((tmp_path / "candidates.json").read_text())
    assert result.stdout.splitlines()[-1].startswith(
        f"candidates for {written['as_of']} (zscore score in brackets; the baseline SPY and QQQ always included): ")
    assert written["universe_size"] == 29 and {"SPY", "QQQ"} <= set(written["symbols"])
