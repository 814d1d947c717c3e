"""AlpacaGateway: every Alpaca call the project makes, through the official alpaca-py SDK.

Policy, in one place:
- Every request has a timeout and takes a rate-limiter slot (see `GuardedSession`).
- The SDK's own retry is switched off (`_retry = 0`): it would re-POST orders on 429/504 blindly.
- Idempotent GETs (and cancels) are retried here on 5xx, timeouts and connection errors, with
  bounded exponential backoff; a 429 waits until `X-RateLimit-Reset` (bounded too).
- An order POST is never retried here. An ambiguous answer is raised as `AmbiguousBrokerError`
  and the ExecutionAgent resolves it by looking the order up by `client_order_id`.
- SDK and transport errors become `core.domain.errors` types with a message naming the endpoint.
- Responses become `core.domain.models` types; a value that is not a finite number, or an unknown
  enum, raises `BadBrokerResponseError` instead of flowing into sizing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, TypeVar

import pydantic
import requests
from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CorporateActionsType, DataFeed
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    CorporateActionsRequest,
    StockBarsRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)

from config.settings import AppConfig
from config.universe import is_valid_ticker
from core.broker.http_session import GuardedSession
from core.broker.rate_limiter import RateLimiter
from core.broker.url_batches import PAGE_TOKEN_RESERVE_BYTES, pack_symbols
from core.domain.cash_flows import (
    FLOW_ACTIVITY_TYPES,
    ActivityError,
    CashFlows,
    is_counted,
    parse_activity,
    unreadable,
)
from core.domain.clock import Clock, SystemClock
from core.domain.errors import (
    AuthenticationError,
    BadBrokerResponseError,
    BrokerConnectionError,
    BrokerError,
    BrokerServerError,
    BrokerTimeout,
    DuplicateClientOrderIdError,
    NotFoundError,
    OrderRejectedError,
    RateLimitedError,
)
from core.domain.market_calendar import NEW_YORK
from core.domain.models import (
    AccountView,
    AssetInfo,
    BrokerOrder,
    ClockView,
    LatestPrice,
    MarketDay,
    OrderSpec,
    OrderStatus,
    PositionView,
    Side,
)
from core.domain.ownership import SplitEvent
from core.domain.ports import BarsAnswer
from core.domain.request_stats import RequestStats
from core.runtime.logging_setup import redact, register_secrets

T = TypeVar("T")
BARS_PAGE_SIZE = 10_000  # the SDK's page size for bars (alpaca.data.historical.stock.get_stock_bars)
MAX_RATE_LIMIT_WAIT_SECONDS = 65.0
ACTIVITIES_PAGE_SIZE = 100
MAX_ACTIVITY_PAGES = 20


def _num(value: Any, what: str, endpoint: str, *, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadBrokerResponseError(
            f"{endpoint}: {what}={value!r} is not a number", endpoint=endpoint
        ) from None
    if not math.isfinite(number):
        raise BadBrokerResponseError(f"{endpoint}: {what}={value!r} is not a finite number", endpoint=endpoint)
    return number


def _error_body(exc: APIError) -> tuple[int | None, str]:
    """(code, message) from an Alpaca error body, tolerating non-JSON and HTML bodies.

    Redacted first: a body that echoes the request (a proxy's error page, say) can carry the keys,
    and a snippet cut from it later could keep part of one where no redaction would recognise it.
    """
    text = redact(str(exc))
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        snippet = " ".join(text.split())[:160]
        return None, f"non-JSON error body: {snippet!r}"
    if not isinstance(body, dict):
        return None, f"unexpected error body: {str(body)[:160]!r}"
    code = body.get("code")
    message = str(body.get("message", "")) or "no message"
    return (code if isinstance(code, int) else None), message


def _validation_summary(exc: pydantic.ValidationError) -> str:
    """The first bad field of an SDK model, e.g. `status='teleported': Input should be 'new', ...`."""
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc).splitlines()[0][:200]
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or exc.title
    if first.get("type") == "missing":
        text = f"field {where} is missing"
    else:
        text = f"{where}={first.get('input')!r}"[:80] + f": {first.get('msg', 'invalid')}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{exc.title}: {text}"[:240] + more


class AlpacaGateway:
    """Typed, policy-enforcing facade over TradingClient and StockHistoricalDataClient."""

    # Split- and dividend-adjusted daily bars: what the DataAgent's z-scores and the downloaded
    # backtest data are computed on (one place, so the two cannot drift apart).
    DAILY_BARS_ADJUSTMENT = Adjustment.ALL

    def __init__(self, config: AppConfig, clock: Clock | None = None, *, api_key: str | None = None,
                 secret_key: str | None = None, trading_url: str | None = None,
                 data_url: str | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.config = config
        key = api_key or (config.alpaca_api_key.get_secret_value() if config.alpaca_api_key else None)
        secret = secret_key or (config.alpaca_secret_key.get_secret_value() if config.alpaca_secret_key else None)
        if not key or not secret:
            raise AuthenticationError("ALPACA_API_KEY and ALPACA_SECRET_KEY are required for the Alpaca gateway")
        # An error body can echo the request, keys included: whatever this process logs or stores is
        # redacted for the keys actually in use, whether or not logging was configured with them.
        register_secrets((key, secret))
        self.stats = RequestStats()
        self.limiter = RateLimiter(self.clock, config.api_rate_limit_per_minute)
        self.feed = DataFeed(config.alpaca_data_feed)
        self._trading = TradingClient(
            key, secret, paper=config.alpaca_paper,
            url_override=trading_url or config.alpaca_trading_url,
        )
        self._data = StockHistoricalDataClient(
            key, secret, raw_data=True, url_override=data_url or config.alpaca_data_url,
        )
        self._data_base_url = str(data_url or config.alpaca_data_url or BaseURL.DATA.value)
        # Corporate actions (splits) live on the data host: asked only when a split is suspected.
        self._corporate = CorporateActionsClient(key, secret, raw_data=True,
                                                 url_override=data_url or config.alpaca_data_url)
        for client, api in ((self._trading, "trading"), (self._data, "data"), (self._corporate, "data")):
            client._retry = 0  # the SDK would re-send order POSTs on 429/504; retries live here
            client._session = GuardedSession(api, self.limiter, self.stats, config.request_timeout_seconds)

    def __repr__(self) -> str:
        return f"AlpacaGateway(paper={self.config.alpaca_paper}, feed={self.feed.value})"

    # ------------------------------------------------------------------ error mapping, retries
    def _map_error(self, exc: BaseException, endpoint: str) -> BrokerError:
        if isinstance(exc, BrokerError):
            return exc
        if isinstance(exc, requests.exceptions.InvalidJSONError):
            # A 2xx whose body is not JSON (a proxy's or captive portal's HTML page): an answer we
            # cannot trust, not a connection failure.
            doc = getattr(exc, "doc", None)
            snippet = " ".join(redact(str(doc)).split())[:160] if doc else redact(str(exc))[:160]
            return BadBrokerResponseError(f"{endpoint}: the answer is not JSON: {snippet!r}", endpoint=endpoint)
        if isinstance(exc, requests.exceptions.Timeout):
            return BrokerTimeout(f"{endpoint}: no answer within {self.config.request_timeout_seconds:g}s",
                                 endpoint=endpoint)
        if isinstance(exc, requests.exceptions.RequestException):
            return BrokerConnectionError(f"{endpoint}: connection failed ({type(exc).__name__})", endpoint=endpoint)
        if isinstance(exc, APIError):
            status = exc.status_code
            code, message = _error_body(exc)
            text = f"{endpoint}: HTTP {status}" + (f" code {code}" if code else "") + f": {message}"
            if status == 429:
                reset = None
                try:
                    reset = float(exc.response.headers.get("X-RateLimit-Reset"))  # type: ignore[union-attr,arg-type]
                except (AttributeError, TypeError, ValueError):
                    pass
                return RateLimitedError(text, reset_at=reset, endpoint=endpoint)
            if status is not None and status >= 500:
                return BrokerServerError(text, status=status, code=code, endpoint=endpoint)
            if status == 404 and message.startswith(("non-JSON error body", "unexpected error body")):
                # Not Alpaca saying "no such order" (its 404s are JSON) but a proxy or a wrong URL:
                # never proof that an order is absent.
                return BadBrokerResponseError(text, status=status, endpoint=endpoint)
            if status == 404:
                return NotFoundError(text, status=status, code=code, endpoint=endpoint)
            if status == 401:
                return AuthenticationError(f"{endpoint}: HTTP 401: the Alpaca keys were refused", status=401,
                                           endpoint=endpoint)
            if status == 422 and (code == 40010001 and "unique" in message.lower()):
                return DuplicateClientOrderIdError(text, status=status, code=code, endpoint=endpoint)
            if status in (400, 403, 422) and endpoint.startswith("POST /v2/orders"):
                return OrderRejectedError(text, status=status, code=code, endpoint=endpoint)
            return BrokerError(text, status=status, code=code, endpoint=endpoint)
        if isinstance(exc, pydantic.ValidationError):
            return BadBrokerResponseError(f"{endpoint}: unexpected answer: {_validation_summary(exc)}",
                                          endpoint=endpoint)
        if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | IndexError):
            first = redact(str(exc)).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return BadBrokerResponseError(f"{endpoint}: unexpected answer: {first}", endpoint=endpoint)
        return BrokerError(f"{endpoint}: {type(exc).__name__}", endpoint=endpoint)

    def _call(self, endpoint: str, fn: Callable[[], T], *, idempotent: bool) -> T:
        attempts = 1 + (self.config.max_get_retries if idempotent else 0)
        delay = self.config.retry_backoff_seconds
        last: BrokerError | None = None
        for attempt in range(attempts):
            try:
                return fn()
            except InterruptedError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is mapped to a project type
                last = self._map_error(exc, endpoint)
            if not idempotent or attempt == attempts - 1:
                break
            if isinstance(last, RateLimitedError):
                now = self.clock.now().timestamp()
                wait = (last.reset_at - now) if last.reset_at else delay
                wait = min(max(wait, 0.05), MAX_RATE_LIMIT_WAIT_SECONDS)
            elif isinstance(last, BrokerServerError | BrokerTimeout | BrokerConnectionError):
                wait = min(delay, self.config.retry_backoff_max_seconds)
                delay *= 2
            else:
                break  # definitive answers (4xx, bad shapes) are not retried
            self.stats.record_retry()
            if not self.clock.sleep(wait):
                break
        assert last is not None
        raise last

    # ------------------------------------------------------------------ trading: reads
    def get_account(self) -> AccountView:
        ep = "GET /v2/account"
        acct: Any = self._call(ep, self._trading.get_account, idempotent=True)
        return AccountView(
            equity=_num(acct.equity, "equity", ep),
            cash=_num(acct.cash, "cash", ep),
            buying_power=_num(acct.buying_power, "buying_power", ep),
            last_equity=_num(acct.last_equity if acct.last_equity is not None else acct.equity, "last_equity", ep),
            trading_blocked=bool(acct.trading_blocked) or bool(acct.account_blocked),
        )

    def get_fractional_trading(self) -> bool:
        ep = "GET /v2/account/configurations"
        conf: Any = self._call(ep, self._trading.get_account_configurations, idempotent=True)
        return bool(conf.fractional_trading)

    def get_clock(self) -> ClockView:
        ep = "GET /v2/clock"
        timing: dict[str, datetime] = {}

        def timed() -> Any:
            # Around the attempt that answers (not the retries' back-off): the skew's error bar.
            timing["sent"] = self.clock.now()
            answer = self._trading.get_clock()
            timing["received"] = self.clock.now()
            return answer

        clk: Any = self._call(ep, timed, idempotent=True)
        return ClockView(
            timestamp=clk.timestamp.astimezone(UTC), is_open=bool(clk.is_open),
            next_open=clk.next_open.astimezone(UTC), next_close=clk.next_close.astimezone(UTC),
            sent_at=timing.get("sent"), received_at=timing.get("received"),
        )

    def get_calendar(self, start: date, end: date) -> list[MarketDay]:
        """The broker's market days from `start` to `end` (its own calendar: unscheduled closures included)."""
        ep = "GET /v2/calendar"
        raw: Any = self._call(ep, lambda: self._trading.get_calendar(GetCalendarRequest(start=start, end=end)),
                              idempotent=True)
        days: list[MarketDay] = []
        for day in raw:
            # The SDK parses "date open" and "date close" as naive New York wall-clock times.
            opens = day.open.replace(tzinfo=NEW_YORK).astimezone(UTC)
            closes = day.close.replace(tzinfo=NEW_YORK).astimezone(UTC)
            if not opens < closes:
                raise BadBrokerResponseError(f"{ep}: {day.date} opens at {day.open:%H:%M}, not before its close "
                                             f"{day.close:%H:%M}", endpoint=ep)
            days.append(MarketDay(session=day.date, open=opens, close=closes))
        return days

    def get_positions(self) -> dict[str, PositionView]:
        ep = "GET /v2/positions"
        raw: Any = self._call(ep, self._trading.get_all_positions, idempotent=True)
        positions: dict[str, PositionView] = {}
        for pos in raw:
            qty = _num(pos.qty, f"{pos.symbol}.qty", ep)
            if str(getattr(pos.side, "value", pos.side)) == "short":
                qty = -abs(qty)
            price = _num(pos.current_price, f"{pos.symbol}.current_price", ep, allow_none=True)
            avg = _num(pos.avg_entry_price, f"{pos.symbol}.avg_entry_price", ep)
            if math.isnan(price):
                price = avg
            market_value = _num(pos.market_value, f"{pos.symbol}.market_value", ep, allow_none=True)
            positions[pos.symbol] = PositionView(
                symbol=pos.symbol, qty=qty, avg_entry_price=avg,
                market_value=qty * price if math.isnan(market_value) else market_value, current_price=price,
            )
        return positions

    def get_asset(self, symbol: str) -> AssetInfo:
        self._check_symbol(symbol)
        ep = f"GET /v2/assets/{symbol}"
        asset: Any = self._call(ep, lambda: self._trading.get_asset(symbol), idempotent=True)
        status = str(getattr(asset.status, "value", asset.status))
        return AssetInfo(symbol=asset.symbol, tradable=bool(asset.tradable) and status == "active",
                         fractionable=bool(asset.fractionable))

    def get_orders(self, status: str = "open", symbols: list[str] | None = None,
                   after: datetime | None = None, limit: int = 500) -> list[BrokerOrder]:
        ep = "GET /v2/orders"
        for symbol in symbols or []:
            self._check_symbol(symbol)
        request = GetOrdersRequest(status=QueryOrderStatus(status), limit=limit, symbols=symbols, after=after,
                                   nested=False)
        raw: Any = self._call(ep, lambda: self._trading.get_orders(request), idempotent=True)
        return [self._order(o, ep) for o in raw]

    def get_open_orders(self) -> list[BrokerOrder]:
        return self.get_orders("open")

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, or None when the broker surely has none."""
        ep = "GET /v2/orders:by_client_order_id"
        try:
            raw: Any = self._call(ep, lambda: self._trading.get_order_by_client_id(client_order_id),
                                  idempotent=True)
        except NotFoundError:
            return None
        return self._order(raw, ep)

    # ------------------------------------------------------------------ trading: writes
    def submit_order(self, spec: OrderSpec) -> BrokerOrder:
        """POST once. Never retried here: see docs/failure-policy.md for what the caller does."""
        self._check_symbol(spec.symbol)
        ep = "POST /v2/orders"
        side = OrderSide.BUY if spec.side is Side.BUY else OrderSide.SELL
        common: dict[str, Any] = {
            "symbol": spec.symbol, "side": side, "time_in_force": TimeInForce(spec.time_in_force),
            "client_order_id": spec.client_order_id,
        }
        if spec.notional is not None:
            common["notional"] = round(spec.notional, 2)
        else:
            common["qty"] = spec.qty
        request: MarketOrderRequest | LimitOrderRequest
        if spec.order_type == "limit":
            request = LimitOrderRequest(limit_price=spec.limit_price, **common)
        else:
            request = MarketOrderRequest(**common)
        raw: Any = self._call(ep, lambda: self._trading.submit_order(request), idempotent=False)
        return self._order(raw, ep)

    def cancel_order(self, order_id: str) -> None:
        ep = "DELETE /v2/orders/{id}"
        self._call(ep, lambda: self._trading.cancel_order_by_id(order_id), idempotent=True)

    # ------------------------------------------------------------------ market data
    def get_daily_bars(self, symbols: list[str], start: datetime, end: datetime | None = None) -> BarsAnswer:
        """Raw daily bars for all `symbols`: as few requests as the URL length allows (one up to
        roughly a thousand symbols; see core/broker/url_batches.py), each paginated by the SDK.

        Raw dicts, not SDK models: one malformed bar must exclude one symbol, not fail the batch.
        The window is set by start/end only; `limit` is never used because it is global across symbols.
        The answer carries the number of HTTP requests it took (URL batches x pages, retries included).
        """
        for symbol in symbols:
            self._check_symbol(symbol)
        ep = "GET /v2/stocks/bars"
        sent_before = self.stats.count(ep)

        def request_for(batch: list[str]) -> StockBarsRequest:
            return StockBarsRequest(
                symbol_or_symbols=batch, timeframe=TimeFrame.Day, start=start.replace(microsecond=0),
                end=end.replace(microsecond=0) if end else None, feed=self.feed,
                adjustment=self.DAILY_BARS_ADJUSTMENT,
            )

        bars: dict[str, Any] = {}
        for batch in pack_symbols(symbols, self._bars_url_fixed_bytes(request_for)):
            raw: Any = self._call(ep, partial(self._data.get_stock_bars, request_for(batch)), idempotent=True)
            if not isinstance(raw, dict):
                raise BadBrokerResponseError(f"{ep}: expected an object keyed by symbol, got {type(raw).__name__}",
                                             endpoint=ep)
            bars.update(raw)
        return BarsAnswer(bars, requests=self.stats.count(ep) - sent_before)

    def _bars_url_fixed_bytes(self, request_for: Callable[[list[str]], StockBarsRequest]) -> int:
        """Bytes of a bars URL apart from its symbols, as requests encodes it for the SDK, plus the
        room a later page's token takes."""
        fields = request_for(["A"]).to_request_fields()
        fields["limit"] = BARS_PAGE_SIZE
        url = requests.Request("GET", f"{self._data_base_url}/v2/stocks/bars", params=fields).prepare().url or ""
        return len(url) - len("A") + PAGE_TOKEN_RESERVE_BYTES

    def get_latest_prices(self, symbols: list[str]) -> dict[str, LatestPrice]:
        """The broker's latest price per symbol: the last trade, else the quote's midpoint.

        One batched `GET /v2/stocks/trades/latest` for all symbols; a second batched
        `GET /v2/stocks/quotes/latest` only for symbols without a usable trade. A symbol with
        neither is absent from the answer (the caller refuses to size it).
        """
        for symbol in symbols:
            self._check_symbol(symbol)
        if not symbols:
            return {}
        ep = "GET /v2/stocks/trades/latest"
        trades: Any = self._call(ep, lambda: self._data.get_stock_latest_trade(
            StockLatestTradeRequest(symbol_or_symbols=list(symbols), feed=self.feed)), idempotent=True)
        prices: dict[str, LatestPrice] = {}
        for symbol in symbols:
            raw = trades.get(symbol) if isinstance(trades, dict) else None
            found = _latest(symbol, raw, "trade")
            if found is not None:
                prices[symbol] = found
        missing = [s for s in symbols if s not in prices]
        if missing:
            ep = "GET /v2/stocks/quotes/latest"
            quotes: Any = self._call(ep, lambda: self._data.get_stock_latest_quote(
                StockLatestQuoteRequest(symbol_or_symbols=missing, feed=self.feed)), idempotent=True)
            for symbol in missing:
                raw = quotes.get(symbol) if isinstance(quotes, dict) else None
                found = _latest(symbol, raw, "quote")
                if found is not None:
                    prices[symbol] = found
        return prices

    def get_cash_flows(self, after: date) -> CashFlows:
        """Deposits, withdrawals and cash journals (CSD, CSW, JNLC) dated after `after`, oldest first;
        `.unreadable` names each activity that could not be read (its id, the field, the value).

        alpaca-py has no method for account activities; the trading client's public `get()` sends
        the request through this adapter's session (timeout, limiter, counting) and `_call` (retries,
        error mapping). Pages of 100 follow `page_token` (the last id), at most MAX_ACTIVITY_PAGES.
        """
        ep = "GET /v2/account/activities"
        params: dict[str, Any] = {"activity_types": ",".join(FLOW_ACTIVITY_TYPES), "after": after.isoformat(),
                                  "direction": "asc", "page_size": ACTIVITIES_PAGE_SIZE}
        flows = CashFlows()
        for _ in range(MAX_ACTIVITY_PAGES):
            page: Any = self._call(ep, lambda: self._trading.get("/account/activities", dict(params)),
                                   idempotent=True)
            if not isinstance(page, list):
                raise BadBrokerResponseError(f"{ep}: expected a list of activities, got {type(page).__name__}",
                                             endpoint=ep)
            for raw in page:
                if not is_counted(raw):
                    continue
                try:
                    flow = parse_activity(raw)
                except ActivityError as exc:
                    # Named, not fatal: every other activity is still read (core/cash_flow_tracker.py halts
                    # entries until the owner acknowledges this one).
                    if not (isinstance(exc.kind, str) and exc.kind and exc.kind not in FLOW_ACTIVITY_TYPES):
                        flows.unreadable.append(unreadable(exc))
                    continue
                if flow.kind in FLOW_ACTIVITY_TYPES:
                    flows.append(flow)
            if len(page) < ACTIVITIES_PAGE_SIZE:
                return flows
            params["page_token"] = page[-1].get("id") if isinstance(page[-1], dict) else None
            if not params["page_token"]:
                break
        raise BadBrokerResponseError(f"{ep}: more than {MAX_ACTIVITY_PAGES} pages of cash activities after {after}",
                                     endpoint=ep)

    def get_splits(self, symbols: list[str], start: date, end: date) -> list[SplitEvent]:
        """Forward and reverse splits of `symbols` with an ex-date in [start, end] (GET /v1/corporate-actions)."""
        for symbol in symbols:
            self._check_symbol(symbol)
        ep = "GET /v1/corporate-actions"
        request = CorporateActionsRequest(
            symbols=symbols, start=start, end=end,
            types=[CorporateActionsType.FORWARD_SPLIT, CorporateActionsType.REVERSE_SPLIT],
        )
        raw: Any = self._call(ep, lambda: self._corporate.get_corporate_actions(request), idempotent=True)
        if not isinstance(raw, dict):
            raise BadBrokerResponseError(f"{ep}: expected an object keyed by action type, got {type(raw).__name__}",
                                         endpoint=ep)
        events: list[SplitEvent] = []
        for kind in ("forward_splits", "reverse_splits"):
            items = raw.get(kind) or []
            if not isinstance(items, list):
                raise BadBrokerResponseError(f"{ep}: {kind} is not a list", endpoint=ep)
            for item in items:
                try:
                    new_rate = _num(item["new_rate"], f"{kind}.new_rate", ep)
                    old_rate = _num(item["old_rate"], f"{kind}.old_rate", ep)
                    ex_date = date.fromisoformat(str(item["ex_date"]))
                    symbol = str(item["symbol"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise BadBrokerResponseError(f"{ep}: unreadable {kind} entry: {exc}", endpoint=ep) from None
                if new_rate <= 0 or old_rate <= 0:
                    raise BadBrokerResponseError(f"{ep}: {symbol} split rates {new_rate}:{old_rate} must be positive",
                                                 endpoint=ep)
                events.append(SplitEvent(symbol, ex_date, new_rate / old_rate, kind.rstrip("s"), new_rate, old_rate))
        return events

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_symbol(symbol: str) -> None:
        if not is_valid_ticker(symbol):
            raise ValueError(f"refusing to send symbol {symbol!r}: not a valid US equity ticker")

    @staticmethod
    def _order(raw: Any, ep: str) -> BrokerOrder:
        try:
            status = OrderStatus(str(getattr(raw.status, "value", raw.status)))
            side = Side(str(getattr(raw.side, "value", raw.side)))
        except ValueError as exc:
            raise BadBrokerResponseError(f"{ep}: unexpected order field: {exc}", endpoint=ep) from None
        qty = None if raw.qty is None else _num(raw.qty, "qty", ep)
        notional = None if raw.notional is None else _num(raw.notional, "notional", ep)
        filled_qty = 0.0 if raw.filled_qty in (None, "") else _num(raw.filled_qty, "filled_qty", ep)
        avg = None if raw.filled_avg_price in (None, "") else _num(raw.filled_avg_price, "filled_avg_price", ep)
        order_type = str(getattr(raw.order_type, "value", raw.order_type) or "market")
        return BrokerOrder(
            id=str(raw.id), client_order_id=str(raw.client_order_id), symbol=str(raw.symbol), side=side,
            status=status, qty=qty, notional=notional, filled_qty=filled_qty, filled_avg_price=avg,
            submitted_at=raw.submitted_at, order_type=order_type,
        )


def _latest(symbol: str, raw: Any, source: str) -> LatestPrice | None:
    """A LatestPrice from one raw trade ({"t", "p"}) or quote ({"t", "ap", "bp"}), or None if unusable."""
    if not isinstance(raw, dict):
        return None
    try:
        at = datetime.fromisoformat(str(raw.get("t")))
        if source == "trade":
            price = float(raw.get("p"))  # type: ignore[arg-type]
        else:
            ask, bid = float(raw.get("ap")), float(raw.get("bp"))  # type: ignore[arg-type]
            if not (math.isfinite(ask) and math.isfinite(bid) and ask > 0 and bid > 0 and ask >= bid):
                return None
            price = (ask + bid) / 2.0
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None or not (math.isfinite(price) and price > 0):
        return None
    return LatestPrice(symbol=symbol, price=price, at=at.astimezone(UTC), source=source)
