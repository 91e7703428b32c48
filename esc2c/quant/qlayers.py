"""The quantized layers of a :class:`~esc2c.quant.qat.QATNet`: each wraps one float module of an ESCNet,
runs its fake-quantized forward on a :class:`QT` (a tensor and the quantizer whose grid it lies on) and
describes itself as a layer of the integer program (:meth:`layer`).

* conv: BatchNorm folded in once, at conversion (``w * gamma / sigma``, ``beta - gamma * mean / sigma``): the
  QAT model trains the folded weights and bias directly, so what trains is what deploys. Per-channel int8
  weights, int32 bias, fused ReLU as the output clamp, int8 output.
* residual block: float add of the two dequantized inputs, fused ReLU, output fake-quant; its integer form is
  TFLite ADD (:func:`intparams.add_params`).
* max pool keeps its input quantization (exact); average pools share input and output quantization and round
  like CMSIS-NN ``arm_avgpool_s8``, which the fake-quant forward reproduces exactly.
* fully connected: per-tensor int8 weights, int32 bias, fused ReLU, int8 output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import BasicBlock, ConvBNAct
from esc2c.quant.fakequant import ActQuant, bias_int, cmsis_avgpool_int, fake_quant_bias, fake_quant_weight, weight_int


@dataclass
class QT:
    """A fake-quantized tensor and the quantizer whose grid it lies on."""
    t: torch.Tensor
    q: ActQuant


def record(rec, name, qt):
    """Store ``qt`` under ``name`` in ``rec`` (a dict, or None: not recording); returns ``qt``."""
    if rec is not None:
        rec[name] = qt
    return qt


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``conv`` with the eval-mode ``bn`` after it folded in."""
    w = conv.weight.detach().double()
    sigma = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(sigma)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(sigma)
    b0 = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(sigma)
    wf = w * (gamma / sigma).reshape(-1, 1, 1, 1)
    bf = beta + (b0 - bn.running_mean.double()) * gamma / sigma
    return wf.float(), bf.float()


class QConv(nn.Module):
    """Conv with BN folded in, per-channel int8 weights, int32 bias, fused ReLU, int8 output."""

    def __init__(self, block: ConvBNAct, name: str):
        super().__init__()
        c = block.conv
        if tuple(c.dilation) != (1, 1):
            raise Esc2cError(f"{name}: dilated convolution is not part of the integer contract")
        if isinstance(c.padding, str):
            raise Esc2cError(f"{name}: conv padding must be numeric, got {c.padding!r}")
        wf, bf = fold_bn(c, block.bn)
        self.weight = nn.Parameter(wf)
        self.bias = nn.Parameter(bf)
        self.stride, self.padding, self.groups = tuple(c.stride), tuple(c.padding), c.groups
        self.relu = bool(block.relu)
        self.name = name
        self.out_q = ActQuant(name)

    def forward(self, x: QT, rec=None) -> QT:
        if self.out_q.fake_quant:
            w, s_w = fake_quant_weight(self.weight, per_channel=True)
            b = fake_quant_bias(self.bias, x.q.qparams()[0], s_w)
        else:
            w, b = self.weight, self.bias
        y = F.conv2d(x.t, w, b, self.stride, self.padding, 1, self.groups)
        if self.relu:
            y = torch.relu(y)
        return record(rec, self.name, QT(self.out_q(y), self.out_q))

    def layer(self, x_name: str, x_q: ActQuant) -> dict:
        q, s_w = weight_int(self.weight, per_channel=True)
        return {"op": "conv", "name": self.name, "inputs": [x_name], "output": self.name,
                "weight": q.cpu().numpy().astype(np.int8), "w_scale": s_w.cpu().numpy().astype(np.float32),
                "bias": bias_int(self.bias, x_q.qparams()[0], s_w).astype(np.int32),
                "stride": list(self.stride), "pad": list(self.padding), "groups": int(self.groups),
                "act": "relu" if self.relu else None}


class QBasicBlock(nn.Module):
    def __init__(self, block: BasicBlock, name: str):
        super().__init__()
        self.conv1 = QConv(block.conv1, f"{name}.conv1")
        self.conv2 = QConv(block.conv2, f"{name}.conv2")
        self.shortcut = QConv(block.shortcut, f"{name}.shortcut") if block.shortcut is not None else None
        self.name = name
        self.out_q = ActQuant(name)

    def forward(self, x: QT, rec=None) -> QT:
        a = self.conv2(self.conv1(x, rec), rec)
        b = x if self.shortcut is None else self.shortcut(x, rec)
        y = torch.relu(a.t + b.t)
        return record(rec, self.name, QT(self.out_q(y), self.out_q))


class QMaxPool(nn.Module):
    def __init__(self, pool: nn.MaxPool2d, name: str):
        super().__init__()
        _check_pool(pool, name)
        self.kernel, self.stride, self.padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
        self.name = name

    def forward(self, x: QT, rec=None) -> QT:
        return record(rec, self.name, QT(F.max_pool2d(x.t, self.kernel, self.stride, self.padding), x.q))

    def layer(self, x_name: str, x_q: ActQuant) -> dict:
        return {"op": "maxpool", "name": self.name, "inputs": [x_name], "output": self.name,
                "kernel": list(self.kernel), "stride": list(self.stride), "pad": list(self.padding)}


class QAvgPool(nn.Module):
    """Average pool sharing input and output quantization with arm_avgpool_s8 rounding (``kernel=None``:
    global average pool over the whole feature map)."""

    def __init__(self, name: str, kernel=None, stride=None, padding=(0, 0)):
        super().__init__()
        self.kernel = None if kernel is None else _pair(kernel)
        self.stride = None if stride is None else _pair(stride)
        self.padding = _pair(padding)
        self.name = name

    def _geom(self, t):
        if self.kernel is None:
            return tuple(t.shape[2:]), (1, 1), (0, 0)
        return self.kernel, self.stride, self.padding

    def forward(self, x: QT, rec=None) -> QT:
        k, s, p = self._geom(x.t)
        smooth = F.avg_pool2d(x.t, k, s, p, count_include_pad=False)
        if x.q.fake_quant:
            scale, zp = x.q.qparams()
            exact = (cmsis_avgpool_int(x.q.to_int(x.t), k, s, p) - zp).to(x.t.dtype) * float(scale)
            smooth = smooth + (exact - smooth).detach()
        return record(rec, self.name, QT(smooth, x.q))

    def layer(self, x_name: str, x_q: ActQuant, in_shape) -> dict:
        k, s, p = self._geom(torch.empty((1, 1) + tuple(in_shape[1:])))
        return {"op": "avgpool", "name": self.name, "inputs": [x_name], "output": self.name,
                "kernel": list(k), "stride": list(s), "pad": list(p), "global": self.kernel is None}


class QLinear(nn.Module):
    """Fully connected with per-tensor symmetric int8 weights, int32 bias, fused ReLU, int8 output."""

    def __init__(self, fc: nn.Linear, relu: bool, name: str):
        super().__init__()
        self.weight = nn.Parameter(fc.weight.detach().clone().float())
        b = fc.bias.detach().clone().float() if fc.bias is not None else torch.zeros(fc.out_features)
        self.bias = nn.Parameter(b)
        self.relu = relu
        self.name = name
        self.out_q = ActQuant(name)

    def forward(self, x: QT, rec=None) -> QT:
        if self.out_q.fake_quant:
            w, s_w = fake_quant_weight(self.weight, per_channel=False)
            b = fake_quant_bias(self.bias, x.q.qparams()[0], s_w.expand(self.bias.shape[0]))
        else:
            w, b = self.weight, self.bias
        y = F.linear(x.t, w, b)
        if self.relu:
            y = torch.relu(y)
        return record(rec, self.name, QT(self.out_q(y), self.out_q))

    def layer(self, x_name: str, x_q: ActQuant) -> dict:
        q, s_w = weight_int(self.weight, per_channel=False)
        return {"op": "fc", "name": self.name, "inputs": [x_name], "output": self.name,
                "weight": q.cpu().numpy().astype(np.int8), "w_scale": np.float32(s_w.item()),
                "bias": bias_int(self.bias, x_q.qparams()[0], s_w.expand(self.bias.shape[0])).astype(np.int32),
                "act": "relu" if self.relu else None}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _check_pool(pool, name):
    if getattr(pool, "ceil_mode", False):
        raise Esc2cError(f"{name}: ceil_mode pooling is not supported by the integer contract")
    if _pair(getattr(pool, "dilation", 1)) != (1, 1):
        raise Esc2cError(f"{name}: dilated pooling is not supported by the integer contract")


def convert_stage_module(m: nn.Module, name: str) -> nn.Module | None:
    """The quantized layer of one module of an ESCNet stage (None: dropped, e.g. Identity, Dropout)."""
    if isinstance(m, ConvBNAct):
        return QConv(m, name)
    if isinstance(m, BasicBlock):
        return QBasicBlock(m, name)
    if isinstance(m, nn.MaxPool2d):
        return QMaxPool(m, name)
    if isinstance(m, nn.AvgPool2d):
        _check_pool(m, name)
        stride = m.stride if m.stride is not None else m.kernel_size
        return QAvgPool(name, m.kernel_size, stride, m.padding)
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return None
    raise Esc2cError(f"{name}: {type(m).__name__} cannot be quantized; supported stage modules are "
                     "ConvBNAct, BasicBlock, MaxPool2d, AvgPool2d")
