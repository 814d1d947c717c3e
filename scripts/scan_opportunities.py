"""Daily scanner (4:05 PM New York): rank the whole configured universe by the selected strategy's
score and write candidates.json atomically; the same as `trading-daemon scan` (its options too).

A thin entry point: the scan is core/daily_scan.py, the ranking core/scanner.py.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from core.cli import main as cli_main

    return cli_main(["scan", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
