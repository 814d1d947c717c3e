"""The operator's HTTP server: `/` (status page), `/metrics` (Prometheus), `/status.json`.

- Bound to 127.0.0.1 only; there is no setting for another address. Exposing it is the job of an
  SSH tunnel or an authenticating reverse proxy (docs/security.md).
- Read-only: GET and HEAD; every other method is answered 405. Nothing it serves can change the
  daemon, its state or its orders, and it never calls the broker.
- A request whose Host header is not this loopback address is refused (421), so a web page in the
  operator's browser cannot read it through DNS rebinding.
- It runs in daemon threads: a slow client or a failing page costs the trading loop nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

log = structlog.get_logger("ops_http")

LOOPBACK = "127.0.0.1"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
}


class OpsHttpServer:
    def __init__(self, port: int, *, page: Callable[[], str], metrics: Callable[[], tuple[bytes, str]],
                 status_json: Callable[[], dict[str, Any]]) -> None:
        self._routes: dict[str, Callable[[], tuple[bytes, str]]] = {
            "/": lambda: (page().encode("utf-8"), "text/html; charset=utf-8"),
            "/metrics": metrics,
            "/status.json": lambda: (json.dumps(status_json(), indent=2).encode("utf-8"), "application/json"),
            "/healthz": lambda: (b"ok\n", "text/plain; charset=utf-8"),
        }
        self._server = ThreadingHTTPServer((LOOPBACK, port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def _allowed_hosts(self) -> set[str]:
        return {f"{LOOPBACK}:{self.port}", f"localhost:{self.port}", LOOPBACK, "localhost"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "trading-daemon"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                log.debug("http_request", client=self.client_address[0], line=format % args)

            def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                host = (self.headers.get("Host") or "").strip().lower()
                if host and host not in server._allowed_hosts():
                    self._send(421, b"this server answers only to its loopback address\n", "text/plain; charset=utf-8")
                    return
                route = server._routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._send(404, b"not found: / (status page), /metrics, /status.json, /healthz\n",
                               "text/plain; charset=utf-8")
                    return
                try:
                    body, content_type = route()
                except Exception as exc:  # noqa: BLE001 - one bad page must not kill the server thread
                    log.warning("http_page_failed", path=self.path, error=f"{type(exc).__name__}: {exc}"[:300])
                    self._send(500, b"the status could not be built; see the daemon's log\n", "text/plain; charset=utf-8")
                    return
                self._send(200, body, content_type)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._serve()

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve()

            def _read_only(self) -> None:
                self._send(405, b"read-only: GET and HEAD only\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only  # noqa: N815

        return Handler

    def start(self) -> OpsHttpServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (status --serve) until `stop()` is called from elsewhere."""
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()
