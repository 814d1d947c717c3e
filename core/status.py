"""`trading-daemon status`: what the daemon owns and did, read from the state database only
(no broker call, so it works while the daemon runs and while the network is down).

The figures come from `core.status_data.collect_status()`, the same structure `status --json`
prints and the status page renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from core.state.database import DB_NAME
from core.status_data import collect_status


def no_database_message(state_dir: Path, sim_dir: Path | None = None, command: str = "status") -> str:
    message = f"No state database at {state_dir / DB_NAME} yet: the daemon has not run with STATE_DIR={state_dir}."
    if sim_dir is not None and (sim_dir / DB_NAME).is_file():
        message += f"\nA simulated run's state is in {sim_dir}: see it with `trading-daemon {command} --sim`."
    return message


def render_status_json(config: AppConfig, state_dir: Path | None = None) -> str:
    return json.dumps(collect_status(config, state_dir=state_dir), indent=2, sort_keys=False)


def render_status(config: AppConfig, state_dir: Path | None = None, *, title: str | None = None) -> str:
    state_dir = Path(state_dir or config.state_dir)
    if not (state_dir / DB_NAME).exists():
        return no_database_message(state_dir)
    return render_status_text(collect_status(config, state_dir=state_dir), title=title)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.2f}"


def render_status_text(s: dict[str, Any], *, title: str | None = None) -> str:
    lines: list[str] = []
    if title:
        lines += [title]
    daemon = s["daemon"]
    running = f"running (pid {daemon['pid']})" if daemon["running"] else "not running"
    lines.append(f"State: {s['state_db']}  (daemon {running})")
    account, pnl = s["account"], s["pnl"]
    lines.append("")
    if account["equity"] is None:
        lines.append("Account: no equity yet (recorded when the daemon reads the account: a decision or the daily "
                     "summary after the close)")
    else:
        lines.append(f"Account: equity {_money(account['equity'])}  cash {_money(account['cash'])}  "
                     f"(as of {account['as_of']})")
    lines.append(f"P&L: day {_signed(pnl['day'])}  realised {_signed(pnl['realised'])}  "
                 f"unrealised {_signed(pnl['unrealised'])}")

    positions = s["positions"]
    lines.append("")
    priced = sorted({p["price_as_of"] for p in positions if p.get("price_as_of")})
    # The account and the position prices are read at different moments: say when each is from.
    when = f" (prices as of {priced[-1]})" if len(priced) == 1 else (
        f" (prices as of {priced[0]} .. {priced[-1]})" if priced else "")
    lines.append(f"Positions ({len(positions)}){when}:")
    for p in positions:
        price = f"{p['current_price']:>10.2f}" if p["current_price"] is not None else f"{'-':>10}"
        lines.append(f"  {p['symbol']:<6} {p['qty']:>14.6g} @ {p['avg_entry_price']:>10.2f}  now {price}  "
                     f"value {_money(p['market_value'] if p['market_value'] is not None else p['cost']):>11}  "
                     f"P&L {_signed(p['unrealised_pnl']):>10}  tier {p['tier']:<6} since {p['entry_session'] or '-'}  "
                     f"({p['origin']})")
    outside = s["outside_shares"]
    if outside:
        lines.append("")
        lines.append(f"Shares at the broker that are not the daemon's ({len(outside)}; reported, never traded by it):")
        for o in outside:
            lines.append(f"  {o['symbol']:<6} {o['qty']:>14.6g}  (broker {o['broker_qty']:g}, daemon's own "
                         f"{o['own_qty']:g}, seen {o['seen_at']})")

    exposure = s["exposure"]
    lines.append("")
    if exposure["equity"] is None:
        lines.append(f"Tier exposure ({exposure['note']}):")
    else:
        basis = "equity" if exposure["basis"] == "equity" else "peak equity"
        lines.append(f"Tier exposure (against {basis} {_money(exposure['equity'])}):")
    for row in exposure["tiers"]:
        if row["budget"] is None:
            lines.append(f"  {row['tier']:<8} exposure {row['exposure']:>11,.2f}")
        else:
            lines.append(f"  {row['tier']:<8} exposure {row['exposure']:>11,.2f} of budget {row['budget']:>11,.2f} "
                         f"({row['utilisation']:.0%})")

    lines.append("")
    lines.append(f"Open orders ({len(s['open_orders'])}):")
    for order in s["open_orders"]:
        amount = f"qty {order['qty']:g}" if order["qty"] is not None else f"notional {order['notional']:,.2f}"
        lines.append(f"  {order['client_order_id']}  {order['side']} {order['symbol']} {amount}  "
                     f"{order['status']}, filled {order['filled_qty']:g}")

    lines.append("")
    iterations = s["iterations"]
    if iterations:
        last = iterations[0]
        lines.append(f"Last iteration: #{last['n']} at {last['started_at']} status {last['status']}"
                     + (" (dry run: nothing sent)" if last["dry_run"] else "")
                     + f" signals {last['signals']} submitted {last['submitted']} rejected {last['rejected']} "
                     f"requests {last['requests']}" + (f" ({last['message']})" if last["message"] else ""))
        dry = sum(1 for it in iterations if it["dry_run"])
        if dry:
            lines.append(f"  {dry} of the last {len(iterations)} iterations were dry runs")
    else:
        lines.append("Last iteration: none")
    halts = s["halts"]
    lines.append(f"Active halts ({len(halts)}):" if halts else "Active halts: none")
    for halt in halts:
        lines.append(f"  {halt['kind']}: {halt['reason']} (since {halt['started_at']})")

    usage = s["api_usage"]
    total = sum(row["count"] for row in usage["totals"])
    lines.append("")
    mean = f", {usage['mean_per_iteration']:.2f} per recent iteration" if usage["mean_per_iteration"] is not None else ""
    lines.append(f"API usage (total {total} requests{mean}; budget {usage['budget_per_minute']}/min per API):")
    for row in usage["totals"]:
        lines.append(f"  {row['count']:>8}  {row['endpoint']}")
    return "\n".join(lines)
