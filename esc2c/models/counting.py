"""Parameter and multiply-accumulate counts, measured on the model itself.

MACs are counted by forward hooks during a real forward pass of a zero input of the given shape: every
Conv2d contributes out_elements * (in_channels / groups) * kh * kw, every Linear in_features * out_features
per output row. Pools, BN, ReLU and residual adds are not multiply-accumulates and are not counted (BN is
folded into the conv at deployment). ``include_aux`` adds the training-only aux heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esc2c.models.blocks import ESCNet


@dataclass
class LayerCount:
    name: str
    kind: str
    in_shape: tuple
    out_shape: tuple
    params: int
    macs: int


def _is_aux(name: str) -> bool:
    return name == "aux_heads" or name.startswith("aux_heads.")


def count_params(model: nn.Module, include_aux: bool = False) -> int:
    """Number of trainable parameters (BN affine included); aux heads excluded unless ``include_aux``."""
    return sum(p.numel() for n, p in model.named_parameters() if include_aux or not _is_aux(n))


def layer_table(model: ESCNet, in_shape, include_aux: bool = False) -> list[LayerCount]:
    """Per-layer counts (Conv2d and Linear) from one forward pass of a [1, *in_shape] input."""
    rows: list[LayerCount] = []
    hooks = []

    def hook(name):
        def fn(mod, inputs, out):
            x = inputs[0]
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
                kind = "conv"
            else:
                macs = out.numel() * mod.in_features
                kind = "fc"
            params = sum(p.numel() for p in mod.parameters())
            rows.append(LayerCount(name, kind, tuple(x.shape[1:]), tuple(out.shape[1:]), params, macs))
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and (include_aux or not _is_aux(name)):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        x = torch.zeros((1, *tuple(in_shape)), dtype=p.dtype, device=p.device)
        with torch.no_grad():
            if include_aux:
                model.forward_all(x)
            else:
                model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def count_macs(model: ESCNet, in_shape, include_aux: bool = False) -> int:
    """Multiply-accumulates of one inference on a single [1, *in_shape] input."""
    return sum(r.macs for r in layer_table(model, in_shape, include_aux))


def format_table(rows: list[LayerCount]) -> str:
    """The per-layer table as aligned text."""
    lines = [f"{'layer':32s} {'kind':4s} {'in':>16s} {'out':>16s} {'params':>10s} {'MACs':>12s}"]
    for r in rows:
        lines.append(f"{r.name:32s} {r.kind:4s} {str(list(r.in_shape)):>16s} {str(list(r.out_shape)):>16s} "
                     f"{r.params:10d} {r.macs:12d}")
    lines.append(f"{'total':32s} {'':4s} {'':>16s} {'':>16s} {sum(r.params for r in rows):10d} "
                 f"{sum(r.macs for r in rows):12d}")
    return "\n".join(lines)
