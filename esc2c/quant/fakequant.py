"""Fake-quantization primitives of QAT (DESIGN.md section 3): the int8 activation quantizer, the int8 weight
and int32 bias codes with their straight-through fake-quantized tensors, and CMSIS-NN's average pool rounding.

* weights: int8 symmetric per output channel for conv, per tensor for fully connected (the contract has no
  per-channel FC); scales from :func:`intparams.symmetric_weight_scales`, rounded to float32 because that is
  what the ONNX file stores and what the compiler reads back.
* bias: int32 with scale ``s_in * s_w[c]`` (:func:`intparams.quantize_bias`), fake-quantized every forward.
* activations: int8 asymmetric per tensor (scale, zero point from :func:`intparams.choose_qparams`). Observers
  first record the global min/max over calibration batches, then follow an exponential moving average while
  the model trains (frozen in eval mode). Fake quantization uses ``torch.fake_quantize_per_tensor_affine``
  (straight-through gradient).
* average pools round like CMSIS-NN ``arm_avgpool_s8`` (:func:`cmsis_avgpool_int`, in torch so that the
  training forward on any device reproduces :func:`esc2c.quant.reference.avgpool` exactly).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from esc2c.quant import intparams as ip

EMA_MOMENTUM = 0.01


# ------------------------------------------------------------------------------------------------ quantizers
class ActQuant(nn.Module):
    """Per-tensor asymmetric int8 activation quantizer: min/max observer + fake quantization."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float32))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int64))
        self.calibrating = False
        self.fake_quant = False
        self.sync_ranks = False    # set while training on several ranks: observe the global batch's range

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.min_val))

    def qparams(self) -> tuple[np.float32, int]:
        return np.float32(self.scale.item()), int(self.zero_point.item())

    @torch.no_grad()
    def _observe(self, x: torch.Tensor):
        if self.sync_ranks:
            lo, hi = _global_range(x)
        else:
            lo, hi = x.min().float(), x.max().float()
        if self.calibrating or not self.calibrated:
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
        else:
            self.min_val.add_(EMA_MOMENTUM * (lo - self.min_val))
            self.max_val.add_(EMA_MOMENTUM * (hi - self.max_val))
        scale, zp = ip.choose_qparams(self.min_val.item(), self.max_val.item())
        self.scale.fill_(float(np.float32(scale)))
        self.zero_point.fill_(zp)

    def forward(self, x):
        if self.calibrating or (self.training and self.fake_quant):
            self._observe(x)
        if not self.fake_quant:
            return x
        s, zp = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, float(s), zp, ip.INT8_MIN, ip.INT8_MAX)

    def to_int(self, x: torch.Tensor) -> torch.Tensor:
        """int8 codes of a tensor on this quantizer's grid (as int64)."""
        s, zp = self.qparams()
        return torch.clamp(torch.round(x.double() / float(s)) + zp, ip.INT8_MIN, ip.INT8_MAX).long()


def _global_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of ``x`` over every rank's share of the batch (a rank may hold no rows)."""
    empty = x.numel() == 0
    lo = torch.tensor(float("inf"), device=x.device) if empty else x.min().float()
    hi = torch.tensor(float("-inf"), device=x.device) if empty else x.max().float()
    t = torch.stack([-lo, hi])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return -t[0], t[1]


def _weight_scales(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    arr = w.detach().cpu().double().numpy()
    s = ip.symmetric_weight_scales(arr if per_channel else arr.reshape(1, -1), axis=0).astype(np.float32)
    return torch.from_numpy(s).to(w.device)


def weight_int(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes as float tensor, float32 scales) of a weight: symmetric, zero point 0, range [-127, 127]."""
    s = _weight_scales(w, per_channel)
    shape = [-1] + [1] * (w.dim() - 1) if per_channel else [1] * w.dim()
    q = torch.clamp(torch.round(w.detach() / s.reshape(shape)), -127, 127)
    return q, s


def fake_quant_weight(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight on its int8 grid with a straight-through gradient, float32 scales)."""
    q, s = weight_int(w, per_channel)
    shape = [-1] + [1] * (w.dim() - 1) if per_channel else [1] * w.dim()
    return w + (q * s.reshape(shape) - w).detach(), s


def bias_int(b: torch.Tensor, s_in: np.float32, s_w: torch.Tensor) -> np.ndarray:
    """int32 codes of a bias with scale ``s_in * s_w``."""
    return ip.quantize_bias(b.detach().cpu().double().numpy(), float(s_in), s_w.cpu().numpy().astype(np.float64))


def fake_quant_bias(b: torch.Tensor, s_in: np.float32, s_w: torch.Tensor) -> torch.Tensor:
    """Bias on its int32 grid with a straight-through gradient."""
    bq = bias_int(b, s_in, s_w).astype(np.float64)
    scale = np.float64(s_in) * s_w.cpu().numpy().astype(np.float64)
    fq = torch.from_numpy(bq * scale).to(b.dtype).to(b.device).reshape(b.shape)
    return b + (fq - b).detach()


def cmsis_avgpool_int(q: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """arm_avgpool_s8 on int codes (any dtype holding integers): valid taps only, (sum +- count/2)/count
    truncated toward zero, as int64."""
    qd = q.double()
    ssum = F.avg_pool2d(qd, kernel, stride, padding, count_include_pad=True, divisor_override=1)
    ones = torch.ones_like(qd[:1, :1])
    count = F.avg_pool2d(ones, kernel, stride, padding, count_include_pad=True, divisor_override=1)
    ssum = torch.round(ssum).long()
    count = torch.round(count).long().expand_as(ssum)
    half = count // 2
    num = torch.where(ssum > 0, ssum + half, ssum - half)
    return torch.div(num, count, rounding_mode="trunc")
