"""Exponential moving average of a model's weights, the model a training run evaluates and keeps when asked.

``weight_average(model, decay)`` wraps ``torch.optim.swa_utils.AveragedModel`` (a copy of the model whose
parameters and buffers, BatchNorm statistics included, follow the trained ones) with an EMA whose decay warms
up: after ``n`` updates the averaged weights move towards the model's by ``1 - min(decay, (1 + n) / (10 + n))``,
so a short run is not dominated by the weights it started from. The first update copies the model.

The averaged model stays in float on the model's device; integer buffers (BatchNorm's batch counter) are copied
from the model rather than averaged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from esc2c.errors import Esc2cError


def ema_factor(n_averaged: int, decay: float) -> float:
    """The weight kept by the average at its ``n_averaged``-th update (the model's gets the rest)."""
    return min(decay, (1.0 + n_averaged) / (10.0 + n_averaged))


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (parameters and buffers); call ``.update_parameters(model)`` after each step."""
    if not 0.0 < float(decay) < 1.0:
        raise Esc2cError(f"weight-average decay must be in (0, 1) (got {decay})")

    @torch.no_grad()
    def ema(avg: list[torch.Tensor], cur: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        keep = ema_factor(int(n_averaged), float(decay))
        for a, c in zip(avg, cur, strict=True):
            if torch.is_floating_point(a):
                a.lerp_(c, 1.0 - keep)
            else:
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)
