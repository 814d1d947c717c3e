"""The seed's path for the tiered position sizer: `python core/tiered_position_sizer.py` prints its demo, and
`from core.tiered_position_sizer import TieredPositionSizer` works as the seed's checklist writes it.

The sizer itself lives with the pure domain, in core/domain/tiered_position_sizer.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a script: sys.path[0] is core/, so the project root goes first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.domain.tiered_position_sizer import (  # noqa: E402
    COMPRESSIBLE_TIERS,
    DEFAULT_MAX_POSITION_PCT_OF_TIER,
    DEFAULT_TIERS,
    FRACTIONAL_DECIMALS,
    TierConfig,
    TieredPositionSizer,
    build_tiers,
    floor_to,
    print_demo,
)

__all__ = [
    "COMPRESSIBLE_TIERS",
    "DEFAULT_MAX_POSITION_PCT_OF_TIER",
    "DEFAULT_TIERS",
    "FRACTIONAL_DECIMALS",
    "TierConfig",
    "TieredPositionSizer",
    "build_tiers",
    "floor_to",
    "print_demo",
]

if __name__ == "__main__":
    print_demo()
