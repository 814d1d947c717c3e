"""The read-only status page: `collect_status()` rendered as one self-contained HTML document.

No script, no external resource (no CDN, no font, no network): the equity curve is an SVG drawn
here on the server, the styles are inline, and the page's Content-Security-Policy forbids anything
else. There is no form and no write action. It refreshes itself every 30 seconds.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

REFRESH_SECONDS = 30
CHART_WIDTH, CHART_HEIGHT = 820, 240
CHART_PAD_LEFT, CHART_PAD_RIGHT, CHART_PAD_Y = 78, 16, 22
MAX_CHART_POINTS = 500

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2rem;color:#1d2330;background:#f6f7f9}
h1{font-size:1.3rem;margin:0 0 .3rem} h2{font-size:1.02rem;margin:1.4rem 0 .4rem}
.meta{color:#5b6475;font-size:.85rem} .badge{display:inline-block;padding:.05rem .45rem;border-radius:.3rem;
background:#dde3ee;font-size:.8rem;margin-left:.3rem} .badge.live{background:#f8d7da} .badge.halt{background:#f8d7da}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:.8rem 0} .card{background:#fff;border:1px solid #dfe3ea;
border-radius:.4rem;padding:.5rem .8rem;min-width:9rem} .card .v{font-size:1.15rem;font-weight:600}
.card .k{font-size:.75rem;color:#5b6475} table{border-collapse:collapse;background:#fff;font-size:.85rem;
min-width:30rem} th,td{border:1px solid #dfe3ea;padding:.25rem .5rem;text-align:right} th{background:#eef1f5}
td.t,th.t{text-align:left} .pos{color:#0a7d32} .neg{color:#b42318} .muted{color:#8a93a3}
.bar{background:#eef1f5;width:10rem;height:.7rem;border-radius:.2rem;overflow:hidden;display:inline-block}
.bar span{display:block;height:100%;background:#3d6fd6} .bar span.over{background:#b42318}
svg{background:#fff;border:1px solid #dfe3ea;border-radius:.4rem}
"""


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _signed(value: float | None) -> str:
    if value is None:
        return "<span class=muted>–</span>"
    css = "pos" if value >= 0 else "neg"
    return f"<span class={css}>{value:+,.2f}</span>"


def _pct(value: float | None) -> str:
    if value is None:
        return "<span class=muted>–</span>"
    return f"<span class={'pos' if value >= 0 else 'neg'}>{value:+.2%}</span>"


def _e(value: Any) -> str:
    return escape("–" if value is None else str(value))


def _bar(fraction: float | None) -> str:
    if fraction is None:
        return "<span class=muted>–</span>"
    width = max(0.0, min(fraction, 1.0)) * 100
    css = " class=over" if fraction > 1.0 + 1e-9 else ""
    return f"<span class=bar><span{css} style='width:{width:.1f}%'></span></span> {fraction:.0%}"


def _table(table_id: str, headers: list[str], rows: list[list[str]], empty: str, left: int = 1) -> str:
    if not rows:
        return f"<p id='{table_id}' class=muted>{escape(empty)}</p>"
    head = "".join(f"<th{' class=t' if i < left else ''}>{escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=t' if i < left else ''}>{cell}</td>" for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------- the equity curve
def equity_svg(points: list[dict[str, Any]]) -> str:
    """The equity curve as an inline SVG: time on x, equity on y, first/last dates and min/max labelled."""
    w, h = CHART_WIDTH, CHART_HEIGHT
    head = (f"<svg id='equity-chart' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
            f"viewBox='0 0 {w} {h}' role='img' aria-label='Equity curve'>")
    if not points:
        return (head + f"<text x='{w / 2}' y='{h / 2}' text-anchor='middle' fill='#8a93a3'>no equity recorded yet "
                "(the daemon records it when it reads the account)</text></svg>")
    if len(points) > MAX_CHART_POINTS:
        step = len(points) / MAX_CHART_POINTS
        points = [points[int(i * step)] for i in range(MAX_CHART_POINTS - 1)] + [points[-1]]
    times = [datetime.fromisoformat(p["at"]).timestamp() for p in points]
    values = [float(p["equity"]) for p in points]
    t0, t1 = min(times), max(times)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    x0, x1 = CHART_PAD_LEFT, w - CHART_PAD_RIGHT
    y0, y1 = h - CHART_PAD_Y, CHART_PAD_Y

    def x(t: float) -> float:
        return x0 + (x1 - x0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)

    def y(v: float) -> float:
        return y0 + (y1 - y0) * (v - lo) / (hi - lo)

    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
    grid = "".join(f"<line x1='{x0}' x2='{x1}' y1='{y(lo + (hi - lo) * k / 4):.1f}' y2='{y(lo + (hi - lo) * k / 4):.1f}' "
                   f"stroke='#eef1f5'/><text x='{x0 - 6}' y='{y(lo + (hi - lo) * k / 4) + 4:.1f}' text-anchor='end' "
                   f"font-size='11' fill='#5b6475'>{lo + (hi - lo) * k / 4:,.0f}</text>" for k in range(5))
    first, last = points[0]["at"][:10], points[-1]["at"][:10]
    return (head + grid
            + f"<polyline class='equity-line' fill='none' stroke='#3d6fd6' stroke-width='2' points='{coords}'/>"
            + f"<circle cx='{x(times[-1]):.1f}' cy='{y(values[-1]):.1f}' r='3.5' fill='#3d6fd6'/>"
            + f"<text x='{x0}' y='{h - 4}' font-size='11' fill='#5b6475'>{escape(first)}</text>"
            + f"<text x='{x1}' y='{h - 4}' font-size='11' text-anchor='end' fill='#5b6475'>{escape(last)}</text>"
            + f"<text x='{x1}' y='14' font-size='12' text-anchor='end' fill='#1d2330'>{len(points)} points, last "
              f"{values[-1]:,.2f}</text></svg>")


# ---------------------------------------------------------------------- the page
def render_page(s: dict[str, Any]) -> str:
    daemon, account, pnl, exposure, usage = s["daemon"], s["account"], s["pnl"], s["exposure"], s["api_usage"]
    mode = daemon["mode"] or "from the state database"
    state = f"running, pid {daemon['pid']}" if daemon["running"] else "not running"
    market = {True: "market open", False: "market closed", None: "market state unknown"}[s["market"]["open"]]
    if s["market"]["next_change"]:
        market += f" (next change {s['market']['next_change']})"
    badges = f"<span class='badge{' live' if daemon['mode'] == 'live' else ''}'>{_e(mode)}</span>"
    if daemon["dry_run"]:
        badges += "<span class=badge>dry run</span>"
    if s["halts"]:
        badges += f"<span class='badge halt'>{len(s['halts'])} halt(s)</span>"

    cards = "".join(f"<div class=card><div class=k>{escape(k)}</div><div class=v>{v}</div></div>" for k, v in [
        ("equity", _money(account["equity"])), ("cash", _money(account["cash"])), ("day P&L", _signed(pnl["day"])),
        ("unrealised P&L", _signed(pnl["unrealised"])), ("realised P&L", _signed(pnl["realised"])),
        ("open positions", str(len(s["positions"]))), ("open orders", str(len(s["open_orders"]))),
    ])

    positions = _table("positions", ["symbol", "qty", "avg entry", "price", "value", "unrealised P&L", "%", "tier",
                                     "since", "origin", "price as of"], [
        [f"<b>{_e(p['symbol'])}</b>", f"{p['qty']:g}", _money(p["avg_entry_price"]), _money(p["current_price"]),
         _money(p["market_value"] if p["market_value"] is not None else p["cost"]), _signed(p["unrealised_pnl"]),
         _pct(p["unrealised_pnl_pct"]), _e(p["tier"]), _e(p["entry_session"]), _e(p["origin"]), _e(p["price_as_of"])]
        for p in s["positions"]], "No positions.")
    outside = _table("outside-shares", ["symbol", "shares not the daemon's", "broker holds", "daemon's own", "seen"], [
        [_e(o["symbol"]), f"{o['qty']:g}", f"{o['broker_qty']:g}", f"{o['own_qty']:g}", _e(o["seen_at"])]
        for o in s["outside_shares"]], "None: every share at the broker in a held symbol is the daemon's.")

    exposure_note = (f"against {'equity' if exposure['basis'] == 'equity' else 'peak equity'} "
                     f"{_money(exposure['equity'])}" if exposure["equity"] is not None else exposure["note"])
    tiers = _table("exposure", ["tier", "allocation", "exposure", "cap (budget)", "used"], [
        [_e(r["tier"]), "–" if r["allocation"] is None else f"{r['allocation']:.0%}", _money(r["exposure"]),
         _money(r["budget"]), _bar(r["utilisation"])] for r in exposure["tiers"]], "No tiers.")

    halts = _table("halts", ["kind", "reason", "session", "since"], [
        [_e(h["kind"]), _e(h["reason"]), _e(h["session"]), _e(h["started_at"])] for h in s["halts"]],
        "No active halts.", left=2)

    def order_rows(orders: list[dict[str, Any]]) -> list[list[str]]:
        return [[_e(o["client_order_id"]), _e(o["side"]), _e(o["symbol"]),
                 _e(o["qty"] if o["qty"] is not None else f"${o['notional']:,.2f}" if o["notional"] else None),
                 _e(o["status"]), f"{o['filled_qty']:g}", _money(o["filled_avg_price"]), _e(o["submitted_at"])]
                for o in orders]

    order_headers = ["client order id", "side", "symbol", "qty / notional", "status", "filled", "avg price", "submitted"]
    open_orders = _table("open-orders", order_headers, order_rows(s["open_orders"]), "No open orders.", left=3)
    recent_orders = _table("recent-orders", order_headers, order_rows(s["recent_orders"]), "No orders yet.", left=3)
    fills = _table("recent-fills", ["at", "side", "symbol", "qty", "price", "reason"], [
        [_e(f["at"]), _e(f["side"]), _e(f["symbol"]), f"{f['qty']:g}", _money(f["price"]), _e(f["reason"])]
        for f in s["recent_fills"]], "No fills yet.", left=3)
    exits = _table("recent-exits", ["closed", "symbol", "qty", "entry", "exit", "P&L", "reason"], [
        [_e(x["exit_session"]), _e(x["symbol"]), f"{x['qty']:g}", _money(x["entry_price"]), _money(x["exit_price"]),
         _signed(x["pnl"]), _e(x["reason"])] for x in s["recent_exits"]], "No closed positions yet.", left=2)
    iterations = _table("iterations", ["#", "started", "status", "dry run", "duration s", "requests", "signals",
                                       "submitted", "rejected", "message"], [
        [str(it["n"]), _e(it["started_at"]), _e(it["status"]), "yes" if it["dry_run"] else "", f"{it['duration_s']:.3f}",
         _e(", ".join(f"{k} {v}" for k, v in sorted(it["requests"].items()))), str(it["signals"]),
         str(it["submitted"]), str(it["rejected"]), _e(it["message"])] for it in s["iterations"]],
        "No iterations yet.", left=3)

    budget = usage["budget_per_minute"]
    window = usage["last_minute"]
    usage_rows = [[_e(api), str(n), str(budget), _bar(n / budget if budget else None)]
                  for api, n in sorted((window or {}).items())]
    api_window = _table("api-usage", ["API", "requests in the last minute", "budget per minute", "of budget"],
                        usage_rows, "Requests in the last minute: known only while the daemon runs." if window is None
                        else "No requests in the last minute.")
    mean = usage["mean_per_iteration"]
    api_note = (f"Last iteration: {_e(usage['last_iteration'])}; mean per recent iteration: "
                f"{'–' if mean is None else f'{mean:.2f}'}.")
    totals = _table("api-totals", ["API", "endpoint", "requests"], [
        [_e(r["api"]), _e(r["endpoint"]), str(r["count"])] for r in usage["totals"][:15]], "No requests recorded.",
        left=2)
    cand = s["candidates"]
    candidates = (f"{_e(cand['path'])}: as of {_e(cand['as_of'])}, generated {_e(cand['generated_at'])}, "
                  f"{', '.join(escape(x) for x in cand['symbols']) or 'no symbols'}" if cand["exists"]
                  else f"{_e(cand['path'])}: missing (the loop watches the whole universe)")

    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<meta http-equiv=refresh content="{REFRESH_SECONDS}"><title>trading-daemon status</title>
<style>{STYLE}</style></head><body>
<h1>trading-daemon {badges}</h1>
<div class=meta>{escape(state)} · {escape(market)} · generated {_e(s['generated_at'])} · {_e(s['state_db'])}
 · read-only page, refreshes every {REFRESH_SECONDS} s</div>
<div class=cards id=summary>{cards}</div>
<h2>Equity</h2>{equity_svg(s['equity_curve'])}
<h2>Positions</h2>{positions}
<h2>Shares that are not the daemon's <span class=meta>reported, never traded</span></h2>{outside}
<h2>Tier exposure <span class=meta>{escape(str(exposure_note))}</span></h2>{tiers}
<h2>Active halts</h2>{halts}
<h2>Open orders</h2>{open_orders}
<h2>Recent orders</h2>{recent_orders}
<h2>Recent fills</h2>{fills}
<h2>Closed positions</h2>{exits}
<h2>Last iterations</h2>{iterations}
<h2>API usage</h2>{api_window}<p class=meta>{api_note}</p>{totals}
<h2>Candidates</h2><p class=meta>{candidates}</p>
</body></html>
"""
