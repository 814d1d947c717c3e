"""`trading-daemon sweep`: arguments (placeholder until the sweep lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run_sweep_command(args: argparse.Namespace, config: Any) -> int:
    return 2
