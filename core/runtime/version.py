"""The installed trading-daemon version (from the package metadata), for `--version`, the status
page, metrics and notifications."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("trading-daemon")
    except PackageNotFoundError:
        return "unknown"
