"""Prometheus metrics (prometheus-client), served as `/metrics` by the daemon's HTTP server.

Two sources, one registry of its own (never the library's global one):
- counters and the duration histogram are fed by the event stream (iterations, fills, halts);
- everything else is read at scrape time: request counts from the gateway's `RequestStats`, and
  the gauges from `collect_status()`, the same figures the status page shows (state database
  plus the loop's in-memory figures). A scrape never calls the broker.

A scrape that cannot read the state database still answers, with `trading_daemon_status_ok 0`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from core.events import Event, HaltTripped, IterationCompleted, IterationFailed, OrderFilled
from core.state.store import api_of
from core.status_data import age_seconds

PREFIX = "trading_daemon"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class DaemonMetrics:
    def __init__(self, status: Callable[[], dict[str, Any]], *,
                 request_totals: Callable[[], tuple[dict[str, int], int, int]] | None = None,
                 notifier: Any = None, info: dict[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.iterations = Counter(f"{PREFIX}_iterations", "Loop iterations run by this process, by outcome.",
                                  ["status"], registry=self.registry)
        self.iteration_duration = Histogram(f"{PREFIX}_iteration_duration_seconds",
                                            "Wall-clock duration of completed loop iterations.",
                                            buckets=DURATION_BUCKETS, registry=self.registry)
        self.fills = Counter(f"{PREFIX}_fills", "Fills of the daemon's orders seen by this process.", ["side"],
                             registry=self.registry)
        self.halts_tripped = Counter(f"{PREFIX}_halts_tripped", "Risk halts tripped while this process ran.",
                                     ["kind"], registry=self.registry)
        for status_label in ("ok", "error"):
            self.iterations.labels(status=status_label)
        self.registry.register(_ScrapeCollector(status, request_totals, notifier, info or {}))

    def emit(self, event: Event) -> None:
        if isinstance(event, IterationCompleted):
            self.iterations.labels(status="ok").inc()
            self.iteration_duration.observe(event.duration_s)
        elif isinstance(event, IterationFailed):
            self.iterations.labels(status="error").inc()
        elif isinstance(event, OrderFilled):
            self.fills.labels(side=event.side).inc()
        elif isinstance(event, HaltTripped):
            self.halts_tripped.labels(kind=event.kind).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=sorted(labels) if labels else None)
    if value is not None:
        if labels:
            family.add_metric([labels[k] for k in sorted(labels)], float(value))
        else:
            family.add_metric([], float(value))
    return family


class _ScrapeCollector:
    def __init__(self, status: Callable[[], dict[str, Any]],
                 request_totals: Callable[[], tuple[dict[str, int], int, int]] | None, notifier: Any,
                 info: dict[str, str]) -> None:
        self._status = status
        self._request_totals = request_totals
        self._notifier = notifier
        self._info = info

    def describe(self) -> list[Metric]:
        return []  # collected fresh at every scrape: nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(f"{PREFIX}_build", "Version and mode of the process serving these metrics.")
        info.add_metric([], self._info)
        yield info
        yield from self._notifications()
        try:
            status: dict[str, Any] | None = self._status()
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database cannot be read
            status = None
        yield _gauge("status_ok", "1 if the state database could be read for this scrape.", float(status is not None))
        yield from self._requests(status)
        if status is not None:
            yield from self._from_status(status)

    def _requests(self, status: dict[str, Any] | None) -> Iterator[Metric]:
        requests = CounterMetricFamily(f"{PREFIX}_requests", "Alpaca requests by API and endpoint: made by this "
                                       "process (daemon), or the database's per-iteration totals (status --serve).",
                                       labels=["api", "endpoint"])
        if self._request_totals is None:
            for row in (status or {}).get("api_usage", {}).get("totals", []):
                requests.add_metric([row["api"], row["endpoint"]], row["count"])
            yield requests
            return
        by_endpoint, rate_limited, retries = self._request_totals()
        for endpoint, count in sorted(by_endpoint.items()):
            requests.add_metric([api_of(endpoint), endpoint], count)
        yield requests
        yield CounterMetricFamily(f"{PREFIX}_rate_limited", "HTTP 429 answers from Alpaca.", value=rate_limited)
        yield CounterMetricFamily(f"{PREFIX}_request_retries", "Read requests retried after a transient failure.",
                                  value=retries)

    def _notifications(self) -> Iterator[Metric]:
        if self._notifier is None:
            return
        family = CounterMetricFamily(f"{PREFIX}_notifications", "Notification messages by outcome (sent and "
                                     "failed count per URL; dropped when the queue was full).", labels=["result"])
        family.add_metric(["sent"], self._notifier.sent)
        family.add_metric(["failed"], self._notifier.failed)
        family.add_metric(["dropped"], self._notifier.dropped)
        yield family

    def _from_status(self, s: dict[str, Any]) -> Iterator[Metric]:
        now = datetime.fromisoformat(s["generated_at"])
        account, exposure = s["account"], s["exposure"]
        yield _gauge("equity_dollars", "Account equity last reported by the broker.", account["equity"])
        yield _gauge("cash_dollars", "Account cash last reported by the broker.", account["cash"])
        yield _gauge("day_pnl_dollars", "Equity against the previous close's equity.", s["pnl"]["day"])
        yield _gauge("unrealised_pnl_dollars", "Unrealised P&L of the book at the last known prices.",
                     s["pnl"]["unrealised"])
        yield _gauge("realised_pnl_dollars", "Realised P&L of the daemon's closed round trips.", s["pnl"]["realised"])
        yield _gauge("open_positions", "Positions in the daemon's book.", len(s["positions"]))
        tier_exposure = GaugeMetricFamily(f"{PREFIX}_exposure_dollars", "Market value held per tier.", labels=["tier"])
        tier_budget = GaugeMetricFamily(f"{PREFIX}_exposure_budget_dollars", "Tier budget: equity x allocation.",
                                        labels=["tier"])
        for row in exposure["tiers"]:
            tier_exposure.add_metric([row["tier"]], row["exposure"])
            if row["budget"] is not None:
                tier_budget.add_metric([row["tier"]], row["budget"])
        yield tier_exposure
        yield tier_budget
        orders = GaugeMetricFamily(f"{PREFIX}_orders", "Orders in the state database, by status.", labels=["status"])
        for status, count in sorted(s["orders_by_status"].items()):
            orders.add_metric([status], count)
        yield orders
        yield _gauge("open_orders", "Orders not yet in a final state.", len(s["open_orders"]))
        yield _gauge("halts_active", "Active risk halts (new entries stopped).", len(s["halts"]))
        halt = GaugeMetricFamily(f"{PREFIX}_halt_active", "1 per active halt, by kind.", labels=["kind"])
        for row in s["halts"]:
            halt.add_metric([row["kind"]], 1.0)
        yield halt
        yield _gauge("last_iteration_age_seconds", "Seconds since the last completed (ok) loop iteration.",
                     age_seconds(now, s["last_completed_iteration_at"]))
        yield _gauge("last_fill_age_seconds", "Seconds since the daemon's last fill.", age_seconds(now, s["last_fill_at"]))
        yield _gauge("candidates_age_seconds", "Seconds since the scanner generated candidates.json.",
                     s["candidates"]["age_seconds"])
        market = s["market"]["open"]
        yield _gauge("market_open", "1 while the market is open, as the loop last saw it.",
                     None if market is None else float(market))
        yield _gauge("daemon_running", "1 if a daemon holds this state directory.", float(s["daemon"]["running"]))
        usage = s["api_usage"]
        yield _gauge("api_budget_per_minute", "Client-side request budget per API and minute.",
                     usage["budget_per_minute"])
        window = GaugeMetricFamily(f"{PREFIX}_api_requests_last_minute", "Requests in the rate limiter's current "
                                   "window, per API.", labels=["api"])
        for api, count in sorted((usage["last_minute"] or {}).items()):
            window.add_metric([api], count)
        yield window
        last = s["iterations"][0] if s["iterations"] else None
        yield _gauge("last_iteration_duration_seconds", "Duration of the most recent iteration.",
                     last["duration_s"] if last else None)
        yield _gauge("last_iteration_dry_run", "1 if the most recent iteration was a dry run.",
                     float(last["dry_run"]) if last else None)
