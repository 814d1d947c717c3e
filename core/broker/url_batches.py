"""Split a multi-symbol request so that no URL is too long, in as few requests as possible.

Alpaca's market-data API takes the symbols in the query string (`symbols=A%2CB%2C...`: requests
encodes each comma as three bytes). A request line longer than the front proxy's buffer is refused
with `414 Request-URI Too Large` before the API runs; Alpaca's front proxy is nginx, whose default
`large_client_header_buffers 4 8k` holds a request line of at most 8 KB, and a 12,000-symbol
universe (about 84 KB of symbols) failed every iteration that way.

`MAX_URL_BYTES` (8,000) is measured on the WHOLE URL (scheme and host included, which the request
line does not even carry) plus `PAGE_TOKEN_RESERVE_BYTES` for the `&page_token=...` that the SDK
adds on later pages, so the request line ("GET " + target + " HTTP/1.1") stays under 8,192 bytes.

Packing is greedy in the given order: each request takes symbols until the next one would not fit.
For an order-preserving split that is the fewest requests there can be (a later cut can never let
a request hold more), and every request but the last is full to within one symbol, so the count is
at most one above ceil(total bytes / room per request) in any split.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote_plus

MAX_URL_BYTES = 8_000
PAGE_TOKEN_RESERVE_BYTES = 160
SEPARATOR_BYTES = len(quote_plus(","))  # "%2C"


def symbol_bytes(symbol: str) -> int:
    return len(quote_plus(symbol))


def pack_symbols(symbols: Sequence[str], fixed_bytes: int, max_bytes: int = MAX_URL_BYTES) -> list[list[str]]:
    """`symbols` in order, cut into the fewest batches whose URL (`fixed_bytes` for everything but the
    symbols, plus the symbols and their separators) is at most `max_bytes` long."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = fixed_bytes
    for symbol in symbols:
        cost = symbol_bytes(symbol) + (SEPARATOR_BYTES if current else 0)
        if current and size + cost > max_bytes:
            batches.append(current)
            current, size, cost = [], fixed_bytes, symbol_bytes(symbol)
        if fixed_bytes + cost > max_bytes:
            raise ValueError(f"a URL of {fixed_bytes + cost} bytes for {symbol!r} alone exceeds {max_bytes}")
        current.append(symbol)
        size += cost
    if current:
        batches.append(current)
    return batches
