"""Case counts of the slow fuzz suite, scaled by ESC2C_FUZZ_SCALE (default 1; e.g. 0.02 for a short run)."""
from __future__ import annotations

import os


def scaled(n: int) -> int:
    return max(1, int(round(n * float(os.environ.get("ESC2C_FUZZ_SCALE", "1")))))
