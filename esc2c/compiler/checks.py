"""What one check of ``esc2c verify`` returns, and what every check is given (checks live beside the
reference they run: compare_layers in verify.py, the TFLite Micro ones in tflm.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esc2c.compiler.ir import Graph


@dataclass
class CheckResult:
    """One check of a verify run. A check that could not run (``ran`` False: a missing optional dependency,
    a model with no form the reference accepts) is neither passed nor failed: the report names it and
    ``--strict`` fails on it."""
    name: str
    ok: bool
    detail: str
    ran: bool = True

    @classmethod
    def not_run(cls, name: str, reason: str) -> "CheckResult":
        return cls(name, False, reason, ran=False)

    @property
    def status(self) -> str:
        return "--" if not self.ran else "ok" if self.ok else "FAIL"


@dataclass
class VerifyContext:
    """What an extra check gets: the project, its IR, the inputs and the C build's logits."""
    out: Path
    graph: Graph
    rounding: str
    inputs: np.ndarray  # [N, H, W, C] int8 (NHWC, the C input layout)
    c_logits: np.ndarray  # [N, ESC2C_OUTPUT_SIZE] int8
    c_layers: dict[str, np.ndarray]  # IR tensor name -> [N, ...] int8, every layer output of the C build
