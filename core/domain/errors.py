"""The project's own exception types. Nothing outside the adapter layer sees an SDK exception.

Broker errors split into two families, because the ExecutionAgent must treat them differently:
- *definitive*: the broker clearly did or did not do something (rejection, not found, duplicate id);
- *ambiguous*: we cannot know whether a write landed (timeout, dropped connection, 5xx, 504).
An ambiguous answer to an order POST is never retried blindly; see docs/failure-policy.md.
"""

from __future__ import annotations


class TradingDaemonError(Exception):
    """Base for every error this project raises on purpose. `str()` is a user-facing message."""


class BrokerError(TradingDaemonError):
    def __init__(self, message: str, *, status: int | None = None, code: int | None = None,
                 endpoint: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.endpoint = endpoint


class AmbiguousBrokerError(BrokerError):
    """The request may or may not have been applied by the broker."""


class BrokerTimeout(AmbiguousBrokerError):
    pass


class BrokerConnectionError(AmbiguousBrokerError):
    pass


class BrokerServerError(AmbiguousBrokerError):
    """5xx (including 504) from the broker."""


class RateLimitedError(BrokerError):
    def __init__(self, message: str, *, reset_at: float | None = None, endpoint: str = "") -> None:
        super().__init__(message, status=429, endpoint=endpoint)
        self.reset_at = reset_at


class OrderRejectedError(BrokerError):
    """A definitive 4xx rejection of an order (buying power, not fractionable, wash trade...)."""


class DuplicateClientOrderIdError(BrokerError):
    """422 40010001: an order with this client_order_id already exists at the broker."""


class NotFoundError(BrokerError):
    pass


class AuthenticationError(BrokerError):
    pass


class BadBrokerResponseError(BrokerError):
    """The broker answered, but not in a shape we can trust (non-JSON, unknown enum, bad values)."""


class DataError(TradingDaemonError):
    """Market data could not be fetched completely or failed validation as a whole."""


class IncompleteBatchError(DataError):
    """A batch fetch ended early; the caller must not treat the partial answer as the universe."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []


class StateError(TradingDaemonError):
    """The durable state cannot be trusted or reconciled with the broker."""


class ReconciliationError(StateError):
    pass


class StateUnavailableError(StateError):
    """The state's storage failed for a passing reason (disk full, I/O error, database locked or busy).
    Nothing about the state is wrong: the command fails with exit 1, so systemd starts it again."""


class StateDirUnusableError(StateError):
    """STATE_DIR cannot be created or used at all (a path under /proc, a file, no permission): a bad
    setting, exit 2."""


class CandidatesError(TradingDaemonError):
    """candidates.json is missing, corrupt or stale."""
