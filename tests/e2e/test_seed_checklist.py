"""The seed's Testing Checklist commands, run verbatim.

Each command is copied character for character from the "Pre-Deployment Tests" section of
HYBRID_SCALING_STATUS.md (with the markdown list indentation removed) and run with bash from the
repository root, with `python` resolving to this interpreter.
"""

from __future__ import annotations

import subprocess

from tests.harness.config import REPO_ROOT, venv_env

# The seed's "Batch Fetching Test" (DataAgent.process over 30 symbols in one API call) needs a market to
# fetch from: tests/adapters/test_data_agent.py runs it verbatim against the simulated market. Its "API
# Rate Limit Test" is tests/e2e/test_orchestrator_requests.py, its "Tier Allocation Immutability Test"
# tests/unit/test_tiered_position_sizer.py; neither has a command to copy.

TIERED_SIZING_TEST = """\
python core/tiered_position_sizer.py
# Should show:
# ✅ COST: 0.1667 shares (fractional) for $10k account
# ❌ COST: Skipped (no fractional) for $10k account
"""

FRACTIONAL_SHARES_TEST = """\
# Test with small account
python -c "
from core.tiered_position_sizer import TieredPositionSizer
sizer = TieredPositionSizer(10000.0, use_fractional=True)
shares, meta = sizer.calculate_shares('COST', 900.0, 'TIER3')
assert shares > 0, 'Should allow fractional shares'
assert meta['position_notional'] >= 10.0, 'Should meet minimum notional'
"
"""


def _run_verbatim(cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", cmd], cwd=REPO_ROOT, env=venv_env(), capture_output=True, text=True, encoding="utf-8", timeout=60
    )


def test_tiered_sizing_expensive_stock_trap() -> None:
    result = _run_verbatim(TIERED_SIZING_TEST)
    assert result.returncode == 0, result.stderr
    assert "COST: 0.1667 shares (fractional)" in result.stdout
    assert "COST: Skipped (no fractional)" in result.stdout
    assert "✅ COST: 0.1667 shares (fractional) for $10k account" in result.stdout
    assert "❌ COST: Skipped (no fractional) for $10k account" in result.stdout


def test_fractional_shares() -> None:
    result = _run_verbatim(FRACTIONAL_SHARES_TEST)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
