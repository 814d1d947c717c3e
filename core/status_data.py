"""One function builds what the daemon shows about itself: `collect_status()`.

`trading-daemon status` (text), `status --json`, the status page and the gauges of `/metrics`
all render this one structure, so they cannot disagree. It is built from the state database
through a read-only connection plus, for a running daemon, its in-memory figures (`LiveSnapshot`):
never from the broker, so it costs no request and works for a stopped daemon too.

The shape is documented by `docs/status.schema.json` (validated in the tests). Figures that are
not known are `null`, never made up: a fresh database has no equity, so tier exposure says
"no equity yet" instead of dividing by a placeholder.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from core.domain.tier_exposure_tracker import UNTIERED
from core.live_figures import LiveSnapshot
from core.runtime.process_lock import PID_FILE_NAME
from core.runtime.version import version
from core.state.readonly import StateReader

STATUS_SCHEMA_VERSION = 1
RECENT_ORDERS = 20
RECENT_FILLS = 20
RECENT_EXITS = 10
RECENT_ITERATIONS = 10
EQUITY_POINTS = 2000
NO_EQUITY_YET = "no equity yet"


def collect_status(config: AppConfig, *, now: datetime | None = None, live: LiveSnapshot | None = None,
                   state_dir: Path | None = None) -> dict[str, Any]:
    """The status of the daemon whose state is in `state_dir` (default: config.state_dir).

    Raises StateError when there is no database there (yet)."""
    state_dir = Path(state_dir or config.state_dir)
    now = live.now if live is not None else (now or datetime.now(UTC))
    with StateReader(state_dir) as db:
        book = db.book()
        snapshot = {row["symbol"]: row for row in db.latest_position_snapshot()}
        equity_points = db.equity_history(EQUITY_POINTS)
        account = _account(live, equity_points)
        positions = _positions(config, book, snapshot, live)
        iterations = [_iteration(row) for row in db.recent_iterations(RECENT_ITERATIONS)]
        status: dict[str, Any] = {
            "schema_version": STATUS_SCHEMA_VERSION,
            "generated_at": _iso(now),
            "state_db": str(db.path),
            "database_schema": db.schema_version(),
            "daemon": _daemon(state_dir, live),
            "market": {"open": live.market_open if live else None,
                       "next_change": _iso(live.market_next_change) if live else None},
            "account": account,
            "pnl": {"day": _round(account["equity"] - account["last_equity"])
                    if account["equity"] is not None and account["last_equity"] is not None else None,
                    "realised": _round(db.realised_pnl()),
                    "unrealised": _round(sum(p["unrealised_pnl"] for p in positions
                                             if p["unrealised_pnl"] is not None))
                    if any(p["unrealised_pnl"] is not None for p in positions) else None},
            "positions": positions,
            "outside_shares": [{"symbol": row["symbol"], "qty": row["outside_qty"], "broker_qty": row["qty"],
                                "own_qty": row["own_qty"], "seen_at": row["seen_at"]} for row in db.outside_shares()],
            "exposure": _exposure(config, positions, account, db.value("peak_equity")),
            "open_orders": [_order(row) for row in db.open_orders()],
            "recent_orders": [_order(row) for row in db.recent_orders(RECENT_ORDERS)],
            "orders_by_status": db.order_counts_by_status(),
            "recent_fills": [_fill(row) for row in db.recent_fills(RECENT_FILLS)],
            "last_fill_at": _iso(live.last_fill_at) if live and live.last_fill_at else db.last_fill_at(),
            "recent_exits": [_exit(row) for row in db.recent_closed_positions(RECENT_EXITS)],
            "halts": [dict(row) for row in db.active_halts()],
            "iterations": iterations,
            "last_completed_iteration_at": _iso(live.last_iteration.at) if live and live.last_iteration
            else db.last_ok_iteration_at(),
            "api_usage": _api_usage(config, live, iterations, db.api_usage()),
            "equity_curve": [{"at": row["recorded_at"], "equity": row["equity"], "source": row["source"]}
                             for row in equity_points],
            "candidates": _candidates(Path(config.candidates_path), now),
        }
    return status


# ---------------------------------------------------------------------- parts
def _daemon(state_dir: Path, live: LiveSnapshot | None) -> dict[str, Any]:
    if live is not None:
        return {"running": True, "pid": live.pid, "mode": live.mode, "dry_run": live.dry_run,
                "version": live.version, "started_at": _iso(live.started_at), "source": "live"}
    pid = _running_pid(state_dir)
    return {"running": pid is not None, "pid": pid, "mode": None, "dry_run": None, "version": version(),
            "started_at": None, "source": "database"}


def _running_pid(state_dir: Path) -> int | None:
    """The pid in the state directory's pid file if that process exists (the lock holder writes it)."""
    try:
        pid = int((state_dir / PID_FILE_NAME).read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _account(live: LiveSnapshot | None, equity_points: list[dict[str, Any]]) -> dict[str, Any]:
    last = equity_points[-1] if equity_points else None
    if live is not None and live.account is not None and (last is None or _iso(live.account.at) >= last["recorded_at"]):
        a = live.account
        return {"equity": a.equity, "cash": a.cash, "last_equity": a.last_equity, "as_of": _iso(a.at), "source": "live"}
    if last is not None:
        return {"equity": last["equity"], "cash": last["cash"], "last_equity": last["last_equity"],
                "as_of": last["recorded_at"], "source": "equity_history"}
    return {"equity": None, "cash": None, "last_equity": None, "as_of": None, "source": None}


def _positions(config: AppConfig, book: list[dict[str, Any]], snapshot: dict[str, dict[str, Any]],
               live: LiveSnapshot | None) -> list[dict[str, Any]]:
    marks = {m.symbol: m for m in live.positions} if live is not None and live.positions is not None else None
    rows = []
    for pos in book:
        symbol, qty, avg = pos["symbol"], float(pos["qty"]), float(pos["avg_entry_price"])
        price: float | None = None
        as_of: str | None = None
        if marks is not None and symbol in marks:
            price, as_of = marks[symbol].current_price, _iso(live.positions_at) if live else None
        elif symbol in snapshot:
            price, as_of = float(snapshot[symbol]["current_price"]), snapshot[symbol]["recorded_at"]
        value = price * qty if price is not None else None
        pnl = (price - avg) * qty if price is not None else None
        rows.append({
            "symbol": symbol, "qty": qty, "avg_entry_price": avg, "current_price": price,
            "market_value": _round(value), "cost": _round(avg * qty), "unrealised_pnl": _round(pnl),
            "unrealised_pnl_pct": (price / avg - 1.0) if price is not None and avg > 0 else None,
            "tier": config.symbol_tiers.get(symbol, UNTIERED), "entry_session": pos["entry_session"],
            "origin": pos["origin"], "price_as_of": as_of,
        })
    return rows


def _exposure(config: AppConfig, positions: list[dict[str, Any]], account: dict[str, Any],
              peak_equity: str | None) -> dict[str, Any]:
    equity, basis = account["equity"], "equity"
    peak = _finite_or_none(peak_equity)
    if equity is None and peak is not None and peak > 0:
        equity, basis = peak, "peak_equity"  # a database from before the equity history
    if equity is not None and equity <= 0:
        equity = None
    allocations = config.tier_allocations
    exposure: dict[str, float] = {tier: 0.0 for tier in allocations}
    for pos in positions:
        value = pos["market_value"] if pos["market_value"] is not None else pos["cost"]
        exposure[pos["tier"]] = exposure.get(pos["tier"], 0.0) + abs(value)
    tiers = []
    for tier, amount in exposure.items():
        allocation = allocations.get(tier)
        budget = equity * allocation if equity is not None and allocation is not None else None
        tiers.append({"tier": tier, "allocation": allocation, "exposure": _round(amount), "budget": _round(budget),
                      "utilisation": amount / budget if budget else None})
    return {"basis": basis if equity is not None else None, "equity": equity,
            "note": None if equity is not None else NO_EQUITY_YET, "tiers": tiers}


def _order(row: dict[str, Any]) -> dict[str, Any]:
    return {"client_order_id": row["client_order_id"], "symbol": row["symbol"], "side": row["side"],
            "status": row["status"], "qty": row["qty"], "notional": row["notional"], "filled_qty": row["filled_qty"],
            "filled_avg_price": row["filled_avg_price"], "submitted_at": row["submitted_at"],
            "updated_at": row["updated_at"]}


def _fill(row: dict[str, Any]) -> dict[str, Any]:
    return {"symbol": row["symbol"], "side": row["side"], "qty": row["delta_qty"], "price": row["price"],
            "client_order_id": row["client_order_id"], "reason": row.get("reason"), "at": row["recorded_at"]}


def _exit(row: dict[str, Any]) -> dict[str, Any]:
    entry, exit_, qty = row["entry_price"], row["exit_price"], float(row["qty"])
    pnl = (exit_ - entry) * qty if entry is not None and exit_ is not None else None
    return {"symbol": row["symbol"], "qty": qty, "entry_price": entry, "exit_price": exit_, "pnl": _round(pnl),
            "reason": row["reason"], "entry_session": row["entry_session"], "exit_session": row["exit_session"],
            "closed_at": row["closed_at"]}


def _iteration(row: dict[str, Any]) -> dict[str, Any]:
    try:
        requests = json.loads(row["requests"]) if row["requests"] else {}
    except ValueError:
        requests = {}
    return {"n": int(row["n"]), "started_at": row["started_at"], "duration_s": float(row["duration_s"]),
            "requests": {str(k): int(v) for k, v in requests.items()}, "signals": int(row["signals"]),
            "submitted": int(row["submitted"]), "rejected": int(row["rejected"]), "status": row["status"],
            "message": row["message"] or "", "dry_run": bool(row["dry_run"])}


def _api_usage(config: AppConfig, live: LiveSnapshot | None, iterations: list[dict[str, Any]],
               totals: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [it for it in iterations if it["status"] == "ok"]
    return {
        "budget_per_minute": config.api_rate_limit_per_minute,
        "last_minute": dict(live.requests_last_minute) if live is not None else None,
        "last_iteration": ok[0]["requests"] if ok else None,
        "mean_per_iteration": (sum(sum(it["requests"].values()) for it in ok) / len(ok)) if ok else None,
        "totals": [{"api": row["api"], "endpoint": row["endpoint"], "count": int(row["count"])} for row in totals],
    }


def _candidates(path: Path, now: datetime) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(path), "exists": path.is_file(), "as_of": None, "generated_at": None,
                            "age_seconds": None, "symbols": []}
    if not info["exists"]:
        return info
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:1_000_000])
        generated = datetime.fromisoformat(str(data["generated_at"]))
        info.update(as_of=str(data.get("as_of")), generated_at=_iso(generated), age_seconds=age_seconds(now, generated),
                    symbols=[str(s) for s in data.get("symbols", [])][:20])
    except (OSError, ValueError, TypeError, KeyError):
        pass  # a corrupt file shows as existing with nothing known; the loop logs why it ignores it
    return info


# ---------------------------------------------------------------------- helpers
def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def age_seconds(now: datetime, then: datetime | str | None) -> float | None:
    """Seconds from `then` (a datetime or an ISO text; naive = UTC) to `now`; None when unknown or unreadable."""
    if then is None:
        return None
    try:
        moment = datetime.fromisoformat(then) if isinstance(then, str) else then
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round((now - moment).total_seconds(), 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _finite_or_none(text: str | None) -> float | None:
    """A stored number, or None when it is missing or unreadable (a hand-edited kv row must not end status)."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None
