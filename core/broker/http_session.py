"""The transport given to each SDK client: a `requests.Session` that adds what alpaca-py lacks.

alpaca-py sends every call through `client._session.request(...)` with no timeout. Handing it
this session (a documented extension point of `requests`, not a patch of any SDK class) gives
every request a timeout, a rate-limiter slot and a count, in one place.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from core.broker.rate_limiter import RateLimiter
from core.domain.request_stats import RequestStats


class GuardedSession(requests.Session):
    def __init__(self, api: str, limiter: RateLimiter, stats: RequestStats, timeout: float) -> None:
        super().__init__()
        self.api = api
        self._limiter = limiter
        self._stats = stats
        # (connect, read): a dead host fails fast; a slow body gets the full budget.
        self._timeout = (min(timeout, 5.0), timeout)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method_s = method.decode() if isinstance(method, bytes) else str(method)
        url_s = url.decode() if isinstance(url, bytes) else str(url)
        self._limiter.acquire(self.api)
        self._stats.record(self.api, method_s, urlsplit(url_s).path)
        kwargs["timeout"] = self._timeout
        response = super().request(method_s, url_s, *args, **kwargs)
        if response.status_code == 429:
            self._stats.rate_limited += 1
            reset = response.headers.get("X-RateLimit-Reset")
            try:
                if reset is not None:
                    self._limiter.block_until(self.api, float(reset))
            except ValueError:
                pass
        return response
