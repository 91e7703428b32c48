"""Learning-rate schedules, stepped once per training batch.

  constant  the base rate throughout (the paper's setting)
  cosine    linear warm-up from ``base / warmup_steps`` to the base rate over ``warmup_steps`` batches, then a
            half cosine down to ``final_factor * base`` at the last batch (Loshchilov & Hutter 2017, without
            restarts)

:func:`make_scheduler` wraps the factor in ``torch.optim.lr_scheduler.LambdaLR``, whose state (the step count)
goes into the training checkpoint, so a resumed run continues on the same curve.
"""
from __future__ import annotations

import math

import torch

from esc2c.errors import Esc2cError

SCHEDULES = ("constant", "cosine")
# which epoch a stage keeps: the best on the selection set, or the last (see esc2c.compress.train)
SELECT = ("best", "last")


def lr_factor(step: int, total_steps: int, kind: str = "constant", warmup_steps: int = 0,
              final_factor: float = 0.01) -> float:
    """The multiplier of the base rate for batch ``step`` (0-based) of ``total_steps``."""
    if kind not in SCHEDULES:
        raise Esc2cError(f"unknown learning-rate schedule {kind!r} (choose {', '.join(SCHEDULES)})")
    if kind == "constant":
        return 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(opt: torch.optim.Optimizer, total_steps: int, kind: str = "constant", warmup_steps: int = 0,
                   final_factor: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total_steps, kind, warmup_steps, final_factor)        # validates the kind
    warmup_steps = max(0, min(int(warmup_steps), max(0, total_steps - 1)))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total_steps, kind, warmup_steps, final_factor))
