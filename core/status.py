"""`trading-daemon status`: what the daemon owns and did, read from the state database only
(no broker call, so it works while the daemon runs and while the network is down)."""

from __future__ import annotations

import math
from pathlib import Path

from config.settings import AppConfig
from core.cash_flow_tracker import stored_peak
from core.clock import SystemClock
from core.tier_exposure_tracker import TierExposureTracker


def render_status(config: AppConfig) -> str:
    from core.state.store import StateStore

    state_dir = Path(config.state_dir)
    if not (state_dir / "trading.db").exists():
        return f"No state database at {state_dir / 'trading.db'} yet: the daemon has not run with STATE_DIR={state_dir}."
    lines: list[str] = []
    with StateStore(state_dir, SystemClock()) as store:
        book = store.book()
        snapshot = {row["symbol"]: row for row in store.latest_snapshot()}
        lines.append(f"State: {state_dir / 'trading.db'}")
        lines.append("")
        lines.append(f"Positions ({len(book)}):")
        values: dict[str, float] = {}
        for symbol, pos in sorted(book.items()):
            snap = snapshot.get(symbol)
            value = float(snap["market_value"]) if snap else pos.qty * pos.avg_entry_price
            values[symbol] = value
            lines.append(f"  {symbol:<6} {pos.qty:>14.6g} @ {pos.avg_entry_price:>10.2f}  value {value:>11,.2f}  "
                         f"tier {config.symbol_tiers.get(symbol, '-'):<6} since {pos.entry_session or '-'}  ({pos.origin})")
        # The tracker needs a positive finite account value: a peak reset to 0 (or never set), or
        # positions worth nothing or less, must not end `status` in a traceback.
        equity = next((v for v in (stored_peak(store), sum(values.values())) if math.isfinite(v) and v > 0), 1.0)
        tracker = TierExposureTracker(values, config.symbol_tiers, config.tier_allocations, equity)
        lines.append("")
        lines.append(f"Tier exposure (against peak equity {equity:,.2f}):")
        for tier, row in tracker.report().items():
            lines.append(f"  {tier:<8} exposure {row['exposure']:>11,.2f} of budget {row['budget']:>11,.2f} "
                         f"({row['utilisation']:.0%})")
        open_orders = store.open_orders()
        lines.append("")
        lines.append(f"Open orders ({len(open_orders)}):")
        for order in open_orders:
            amount = f"qty {order.qty:g}" if order.qty is not None else f"notional {order.notional:,.2f}"
            lines.append(f"  {order.client_order_id}  {order.side.value} {order.symbol} {amount}  "
                         f"{order.status.value}, filled {order.filled_qty:g}")
        last = store.last_iteration()
        lines.append("")
        if last:
            lines.append(f"Last iteration: #{last['n']} at {last['started_at']} status {last['status']} "
                         f"signals {last['signals']} submitted {last['submitted']} rejected {last['rejected']} "
                         f"requests {last['requests']}" + (f" ({last['message']})" if last.get("message") else ""))
        else:
            lines.append("Last iteration: none")
        halts = store.active_halts()
        lines.append(f"Active halts ({len(halts)}):" if halts else "Active halts: none")
        for halt in halts:
            lines.append(f"  {halt.kind}: {halt.reason} (since {halt.started_at})")
        usage = store.api_usage()
        lines.append("")
        lines.append(f"API usage (total {sum(usage.values())} requests):")
        for endpoint, count in sorted(usage.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {count:>8}  {endpoint}")
    return "\n".join(lines)
