"""HTTP front of the simulated market: Alpaca's trading and market-data routes on 127.0.0.1, spoken
to by the unchanged alpaca-py SDK (`url_override=server.url` for both clients).

HTTP/1.1 keep-alive, one thread per connection, nothing written to stderr. Every answer carries
X-RateLimit-Limit/Remaining/Reset; the trading and data APIs each get a sliding 60 s window on the
exchange clock (simulated time under a SimClock), and a request over the limit gets Alpaca's 429.

Test hooks: `faults` injects failures (see `FaultInjector`), `request_log` records every request,
`rate_limited_count` counts the 429s the limiter itself sent. `GET /_sim/clock` and
`POST /_sim/advance` share a simulated clock with a daemon in another process (see `_control`);
`POST /_sim/<control>` drives the real-market events (core/sim/controls.py). A request target
longer than `max_url_bytes` gets the front proxy's 414 (docs/simulated-market.md).
"""

from __future__ import annotations

import hmac
import json
import math
import random
import re
import socket
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from core.sim.bars import SyntheticBars
from core.sim.controls import ControlError, run_control
from core.sim.exchange import SimExchange
from core.sim.marketdata import MarketData
from core.sim.wire import SimAPIError

WINDOW_SECONDS = 60.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
IDLE_TIMEOUT_SECONDS = 120.0
CONTROL_PREFIX = "/_sim/"
DEFAULT_MAX_URL_BYTES = 8192
# What Alpaca's front proxy (nginx) answers to an over-long request line, before any API code runs.
URI_TOO_LONG_HTML = (
    b"<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>414 Request-URI Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

FAULT_KINDS = frozenset(
    {"429", "500", "503", "504", "hang", "drop", "accept_then_drop", "504_after_accept", "body", "transform"}
)
# Kinds that answer (or drop) instead of processing, versus kinds that process for real first.
_BEFORE = frozenset({"429", "500", "503", "504", "drop", "body"})
_AFTER = frozenset({"accept_then_drop", "504_after_accept", "transform"})

_SERVER_ERRORS = {
    500: {"code": 50010000, "message": "internal server error occurred"},
    503: {"code": 50310000, "message": "service unavailable"},
    504: {"code": 50410000, "message": "gateway timeout"},
}
Payload = Any


# ================================================================================ faults
@dataclass
class Fault:
    kind: str
    method: str | None
    path_prefix: str | None
    remaining: int | None  # None: forever
    probability: float | None
    params: dict[str, Any]
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class FaultInjector:
    """Failures to inject into matching requests.

    `inject(kind, method=None, path_prefix=None, count=1, probability=None, **params)`:
      "429"  rate-limit answer, X-RateLimit-Reset = now + `reset_in` (default 2) seconds
      "500", "503", "504"  error answer (optional `body`: a JSON-able payload)
      "hang"  wait `seconds` (default 5) of wall time, then answer normally; `clear()`/stop ends it
      "drop"  close the connection (RST) without answering, before processing
      "accept_then_drop"  process for real (e.g. create the order), then drop the connection
      "504_after_accept"  process for real, then answer 504
      "body"  answer `status` (default 500) with raw `body` (str/bytes) and `content_type`
      "transform"  `fn(payload) -> payload` applied to the JSON payload before it is sent
    A fault is consumed `count` times (None: forever); with `probability`, each matching request
    fires it with that chance (seeded RNG, so runs repeat).
    """

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._release = threading.Event()

    def inject(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        count: int | None = 1,
        probability: float | None = None,
        **params: Any,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if kind == "transform":
            fn = params.get("fn", params.get("transform"))
            if not callable(fn):
                raise ValueError("a 'transform' fault needs fn=callable(payload) -> payload")
            params["fn"] = fn
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        if probability is not None and not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        fault = Fault(kind, method, path_prefix, count, probability, dict(params))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and release requests hanging right now."""
        with self._lock:
            self._faults.clear()
            self._release.set()
            self._release = threading.Event()

    def release_all(self) -> None:
        with self._lock:
            self._release.set()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def match(self, method: str, path: str) -> tuple[Fault, threading.Event] | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.probability is not None and self._rng.random() >= fault.probability:
                    continue
                fault.fired += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault, self._release
        return None


# ================================================================================ request log
@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    api: str  # "trading" or "data"
    wall_time: float
    sim_time: datetime
    status: int | None = None  # None: the connection was dropped
    fault: str | None = None


class _RateWindow:
    def __init__(self) -> None:
        self.stamps: deque[float] = deque()


# ================================================================================ HTTP plumbing
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: SimMarketServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer is normal under fault injection: stay quiet.
        return


@dataclass
class _Response:
    status: int
    payload: Payload = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sim-alpaca"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._dropped = False
        self.server.app._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            if self._dropped:
                self.rfile.close()
                self.wfile.close()
                self.connection.close()  # linger 0: the peer gets a reset, not a clean close
            else:
                super().finish()
        finally:
            self.server.app._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return

    def do_GET(self) -> None:
        self.server.app._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.app._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.app._handle(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.app._handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.app._handle(self, "PUT")

    def drop(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self._dropped = True

    def send(self, response: _Response, rate_headers: Mapping[str, str]) -> None:
        status = response.status
        if status == 204:
            body = b""
        elif response.raw is not None:
            body = response.raw
        else:
            body = json.dumps(response.payload, separators=(",", ":")).encode()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {formatdate(usegmt=True)}", "Server: sim-alpaca"]
        if status != 204:
            lines += [f"Content-Type: {response.content_type}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in rate_headers.items()]
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)  # one write: no Nagle/delayed-ACK stall between head and body
        except OSError:
            self.close_connection = True


# ================================================================================ the server
Route = Callable[[Mapping[str, str], Any, "re.Match[str]"], _Response]


class SimMarketServer:
    """Alpaca-compatible HTTP server for a SimExchange (trading) and SyntheticBars (data)."""

    def __init__(
        self,
        exchange: SimExchange,
        bars: SyntheticBars | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = "SIM-KEY",
        secret_key: str | None = "SIM-SECRET",
        *,
        rate_limit_per_minute: int = 200,
        fault_seed: int = 0,
        max_url_bytes: int = DEFAULT_MAX_URL_BYTES,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the simulated market binds to loopback only, not {host!r}")
        self.exchange = exchange
        self.bars = bars or exchange.bars
        self.clock = exchange.clock
        self.market_data = MarketData(self.bars, self.clock, exchange)
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self._api_key = api_key
        self._secret_key = secret_key
        self.rate_limit_per_minute = rate_limit_per_minute
        self.max_url_bytes = max_url_bytes  # longer request targets get the front proxy's 414
        self.faults = FaultInjector(fault_seed)
        self.request_log: list[RequestRecord] = []
        self.rate_limited_count = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._windows = {"trading": _RateWindow(), "data": _RateWindow()}
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SimMarketServer:
        if self._httpd is not None:
            return self
        if ":" in self.host:

            class _V6(_HTTPServer):
                address_family = socket.AF_INET6

            httpd: _HTTPServer = _V6((self.host, self._requested_port), _Handler)
        else:
            httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        httpd.app = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-market:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        self.faults.release_all()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimMarketServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ------------------------------------------------------------------ log helpers
    def count(self, path_prefix: str | None = None, method: str | None = None, api: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.request_log
                if (path_prefix is None or r.path.startswith(path_prefix))
                and (method is None or r.method == method.upper())
                and (api is None or r.api == api)
            )

    def clear_log(self) -> None:
        with self._lock:
            self.request_log.clear()

    # ------------------------------------------------------------------ rate limiting
    def _rate(self, api: str, *, take: bool) -> tuple[bool, dict[str, str]]:
        """(allowed, headers). `take` consumes a slot when one is free."""
        limit = self.rate_limit_per_minute
        now_m = self.clock.monotonic()
        now_epoch = self.clock.now().timestamp()
        with self._lock:
            stamps = self._windows[api].stamps
            while stamps and stamps[0] <= now_m - WINDOW_SECONDS:
                stamps.popleft()
            allowed = len(stamps) < limit
            if allowed and take:
                stamps.append(now_m)
            oldest = stamps[0] if stamps else now_m
            reset = math.ceil(now_epoch + (oldest + WINDOW_SECONDS - now_m))
            remaining = max(limit - len(stamps), 0)
        return allowed, {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    # ------------------------------------------------------------------ request handling
    def _authorized(self, handler: _Handler) -> bool:
        key = handler.headers.get("APCA-API-KEY-ID")
        secret = handler.headers.get("APCA-API-SECRET-KEY")
        if not key or not secret:
            return False
        if self._api_key is not None and not hmac.compare_digest(key.encode(), self._api_key.encode()):
            return False
        return self._secret_key is None or hmac.compare_digest(secret.encode(), self._secret_key.encode())

    def _handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        api = "data" if path.startswith(("/v2/stocks", "/v1beta", "/v1/corporate-actions")) else "trading"
        length = int(handler.headers.get("Content-Length") or 0)
        raw_body = handler.rfile.read(length) if length > 0 else b""
        if path.startswith(CONTROL_PREFIX):
            # Test controls: neither logged, rate-limited nor subject to faults.
            handler.send(self._control(handler, method, path, raw_body), {})
            return
        record = RequestRecord(method, path, query, api, time.time(), self.clock.now())
        with self._lock:
            self.request_log.append(record)
        if len(handler.path) > self.max_url_bytes:
            # The proxy refuses before the API sees it: no rate-limit slot, no faults, connection closed.
            record.status = 414
            handler.close_connection = True
            handler.send(_Response(414, raw=URI_TOO_LONG_HTML, content_type="text/html"), {})
            return

        matched = self.faults.match(method, path)
        fault = matched[0] if matched else None
        if fault is not None:
            record.fault = fault.kind
        if fault is not None and fault.kind == "hang":
            assert matched is not None
            matched[1].wait(float(fault.params.get("seconds", 5.0)))
        if fault is not None and fault.kind in _BEFORE:
            _, headers = self._rate(api, take=False)
            if fault.kind == "drop":
                handler.drop()
                return
            response = self._fault_response(fault, headers)
            record.status = response.status
            handler.send(response, headers)
            return

        if not self._authorized(handler):
            _, headers = self._rate(api, take=False)
            response = _Response(401, {"message": "unauthorized."})
        else:
            allowed, headers = self._rate(api, take=True)
            if not allowed:
                with self._lock:
                    self.rate_limited_count += 1
                response = _Response(429, {"message": "too many requests."})
            else:
                response = self._dispatch(method, path, query, raw_body)

        if fault is not None and fault.kind in _AFTER:
            if fault.kind == "accept_then_drop":
                handler.drop()
                return
            if fault.kind == "504_after_accept":
                response = _Response(504, fault.params.get("body", _SERVER_ERRORS[504]))
            elif fault.kind == "transform" and response.raw is None and response.status != 204:
                response.payload = fault.params["fn"](response.payload)
        record.status = response.status
        handler.send(response, headers)

    def _control(self, handler: _Handler, method: str, path: str, raw_body: bytes) -> _Response:
        """`GET /_sim/clock` -> {"now": iso}; `POST /_sim/advance` {"seconds": s} -> {"now": iso}.

        They let a daemon in another process share this market's simulated clock (the kill -9
        tests). Same API key headers as every other route. `POST /_sim/<event control>` calls the
        SimExchange control of that name (core/sim/controls.py).
        """
        if not self._authorized(handler):
            return _Response(401, {"message": "unauthorized."})
        if path == f"{CONTROL_PREFIX}clock" and method == "GET":
            return _Response(200, {"now": self.clock.now().isoformat()})
        if path == f"{CONTROL_PREFIX}advance" and method == "POST":
            advance = getattr(self.clock, "advance", None)
            if advance is None:
                return _Response(409, {"message": "the market's clock is not simulated; it cannot be advanced"})
            try:
                seconds = float(json.loads(raw_body or b"{}").get("seconds", 0.0))
            except (ValueError, TypeError, AttributeError):
                return _Response(400, {"message": 'expected a JSON body {"seconds": number}'})
            if not math.isfinite(seconds) or seconds < 0:
                return _Response(422, {"message": f"seconds must be a finite number >= 0, not {seconds!r}"})
            return _Response(200, {"now": advance(seconds).isoformat()})
        if method == "POST":  # the real-market events: core/sim/controls.py
            try:
                return _Response(200, run_control(self.exchange, path[len(CONTROL_PREFIX) :], raw_body))
            except ControlError as exc:
                return _Response(exc.status, {"message": str(exc)})
        return _Response(404, {"message": f"no control endpoint {method} {path}"})

    def _fault_response(self, fault: Fault, headers: dict[str, str]) -> _Response:
        if fault.kind == "429":
            reset_in = float(fault.params.get("reset_in", 2.0))
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(math.ceil(self.clock.now().timestamp() + reset_in))
            return _Response(429, fault.params.get("body", {"message": "too many requests."}))
        if fault.kind == "body":
            body = fault.params.get("body", "<html><body><h1>502 Bad Gateway</h1></body></html>")
            raw = body.encode() if isinstance(body, str) else bytes(body)
            return _Response(
                int(fault.params.get("status", 500)),
                raw=raw,
                content_type=str(fault.params.get("content_type", "text/html")),
            )
        status = int(fault.kind)
        return _Response(status, fault.params.get("body", _SERVER_ERRORS[status]))

    def _dispatch(self, method: str, path: str, query: Mapping[str, str], raw_body: bytes) -> _Response:
        body: Any = None
        try:
            self.exchange.process()  # orders move on every request, whichever API it is for
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    return _Response(400, {"code": 40010000, "message": "request body format is invalid"})
            allowed_methods = []
            for (route_method, pattern), fn in self._routes.items():
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                if route_method != method:
                    allowed_methods.append(route_method)
                    continue
                return fn(query, body, match)
            if allowed_methods:
                return _Response(405, {"code": 40510000, "message": "method not allowed"})
            if path.startswith("/v2/stocks"):
                return _Response(404, {"message": "Not Found"})
            return _Response(404, {"code": 40410000, "message": "endpoint not found"})
        except SimAPIError as exc:
            return _Response(exc.status, exc.body)
        except Exception:  # noqa: BLE001 - any bug becomes Alpaca's 500, and is kept for the tests
            with self._lock:
                self.errors.append(traceback.format_exc())
            return _Response(500, _SERVER_ERRORS[500])

    def _build_routes(self) -> dict[tuple[str, re.Pattern[str]], Route]:
        ex, md = self.exchange, self.market_data

        def ok(payload: Payload) -> _Response:
            return _Response(200, payload)

        def cancel(q: Mapping[str, str], b: Any, m: re.Match[str]) -> _Response:
            ex.cancel_order(m["id"])
            return _Response(204)

        def replace(q: Mapping[str, str], b: Any, m: re.Match[str]) -> _Response:
            return _Response(
                422,
                {"code": 40010001, "message": "order replacement is not supported by the simulated market"},
            )

        table: list[tuple[str, str, Route]] = [
            ("GET", r"/v2/account", lambda q, b, m: ok(ex.api_account())),
            ("GET", r"/v2/account/configurations", lambda q, b, m: ok(ex.api_account_configurations())),
            ("GET", r"/v2/account/activities", lambda q, b, m: ok(ex.api_activities(q))),
            (
                "GET",
                r"/v2/account/activities/(?P<type>[^/]+)",
                lambda q, b, m: ok(ex.api_activities(q, m["type"])),
            ),
            (
                "PATCH",
                r"/v2/account/configurations",
                lambda q, b, m: ok(ex.api_patch_account_configurations(b)),
            ),
            ("GET", r"/v2/clock", lambda q, b, m: ok(ex.api_clock())),
            ("GET", r"/v2/calendar", lambda q, b, m: ok(ex.api_calendar(q))),
            ("GET", r"/v2/assets", lambda q, b, m: ok(ex.api_assets(q))),
            ("GET", r"/v2/assets/(?P<sym>[^/]+)", lambda q, b, m: ok(ex.api_asset(m["sym"]))),
            ("GET", r"/v2/positions", lambda q, b, m: ok(ex.api_positions())),
            ("DELETE", r"/v2/positions", lambda q, b, m: _Response(207, ex.api_close_all_positions(q))),
            ("GET", r"/v2/positions/(?P<sym>[^/]+)", lambda q, b, m: ok(ex.api_position(m["sym"]))),
            (
                "DELETE",
                r"/v2/positions/(?P<sym>[^/]+)",
                lambda q, b, m: ok(ex.api_close_position(m["sym"], q)),
            ),
            ("POST", r"/v2/orders", lambda q, b, m: ok(ex.api_submit_order(b))),
            ("GET", r"/v2/orders", lambda q, b, m: ok(ex.api_orders(q))),
            ("DELETE", r"/v2/orders", lambda q, b, m: _Response(207, ex.api_cancel_all_orders())),
            (
                "GET",
                r"/v2/orders:by_client_order_id",
                lambda q, b, m: ok(ex.api_order_by_client_id(q.get("client_order_id", ""))),
            ),
            ("GET", r"/v2/orders/(?P<id>[^/:]+)", lambda q, b, m: ok(ex.api_order(m["id"]))),
            ("DELETE", r"/v2/orders/(?P<id>[^/:]+)", cancel),
            ("PATCH", r"/v2/orders/(?P<id>[^/:]+)", replace),
            ("GET", r"/v2/stocks/bars", lambda q, b, m: ok(md.api_bars(q))),
            ("GET", r"/v2/stocks/bars/latest", lambda q, b, m: ok(md.api_latest_bars(q))),
            ("GET", r"/v2/stocks/snapshots", lambda q, b, m: ok(md.api_snapshots(q))),
            ("GET", r"/v2/stocks/trades/latest", lambda q, b, m: ok(md.api_latest_trades(q))),
            ("GET", r"/v2/stocks/quotes/latest", lambda q, b, m: ok(md.api_latest_quotes(q))),
            ("GET", r"/v1/corporate-actions", lambda q, b, m: ok(md.api_corporate_actions(q))),
        ]
        return {(method, re.compile(pattern)): fn for method, pattern, fn in table}
