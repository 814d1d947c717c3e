"""Request counting per API and endpoint, in total and for the current loop iteration."""

from __future__ import annotations

import re
import threading
from collections import Counter

_ID_PATTERNS = (
    (re.compile(r"^/v2/orders/[0-9a-fA-F-]{36}$"), "/v2/orders/{id}"),
    (re.compile(r"^/v2/assets/[^/]+$"), "/v2/assets/{symbol}"),
    (re.compile(r"^/v2/positions/[^/]+$"), "/v2/positions/{symbol}"),
)


def endpoint_key(method: str, path: str) -> str:
    for pattern, replacement in _ID_PATTERNS:
        if pattern.match(path):
            path = replacement
            break
    return f"{method.upper()} {path}"


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total: Counter[str] = Counter()
        self.iteration: Counter[str] = Counter()
        self.by_api_total: Counter[str] = Counter()
        self.by_api_iteration: Counter[str] = Counter()
        self.rate_limited = 0
        self.errors = 0
        self.retries = 0

    def record(self, api: str, method: str, path: str) -> None:
        key = endpoint_key(method, path)
        with self._lock:
            self.total[key] += 1
            self.iteration[key] += 1
            self.by_api_total[api] += 1
            self.by_api_iteration[api] += 1

    def count(self, endpoint: str) -> int:
        """Requests sent so far to one endpoint key, e.g. "GET /v2/stocks/bars"."""
        with self._lock:
            return self.total[endpoint]

    def begin_iteration(self) -> None:
        with self._lock:
            self.iteration.clear()
            self.by_api_iteration.clear()

    def iteration_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_api_iteration)

    def iteration_endpoints(self) -> dict[str, int]:
        with self._lock:
            return dict(self.iteration)

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def totals(self) -> tuple[dict[str, int], int, int]:
        """(requests per endpoint key, 429 answers, retries) since the process started, for /metrics."""
        with self._lock:
            return dict(self.total), self.rate_limited, self.retries

    def iteration_total(self) -> int:
        with self._lock:
            return sum(self.by_api_iteration.values())
