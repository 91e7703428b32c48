"""INT8 quantization-aware training that simulates the integer contract (DESIGN.md section 3).

:func:`quantize_model` turns a float :class:`~esc2c.models.blocks.ESCNet` into a :class:`QATNet`:

* BatchNorm is folded into its conv once, at conversion (``w * gamma / sigma``, ``beta - gamma * mean /
  sigma``): the QAT model trains the folded weights and bias directly, so what trains is what deploys.
* weights: int8 symmetric per output channel for conv, per tensor for fully connected (the contract has no
  per-channel FC); scales from :func:`intparams.symmetric_weight_scales`, rounded to float32 because that is
  what the ONNX file stores and what the compiler reads back.
* bias: int32 with scale ``s_in * s_w[c]`` (:func:`intparams.quantize_bias`), fake-quantized every forward.
* activations: int8 asymmetric per tensor (scale, zero point from :func:`intparams.choose_qparams`). Observers
  first record the global min/max over calibration batches, then follow an exponential moving average while
  the model trains (frozen in eval mode). Fake quantization uses ``torch.fake_quantize_per_tensor_affine``
  (straight-through gradient).
* ReLU is the output clamp of the conv / FC / add it follows; max pool keeps its input quantization (exact);
  average pools share input and output quantization and round like CMSIS-NN ``arm_avgpool_s8`` (sum of the
  valid taps, ``(sum +- count/2) / count`` truncated), which the fake-quant forward reproduces exactly.
* residual add: float add of the two dequantized inputs, fused ReLU, output fake-quant; its integer form is
  TFLite ADD (:func:`intparams.add_params`).
* dropout of the float head is not applied (it would leave the int8 grid).
* auxiliary heads stay float (training only, never exported): they read the fake-quantized stage outputs, so
  the PoKD loss trains the quantized trunk through them.

:meth:`QATNet.integer_program` exports the integer program (int8 weights, int32 biases, float32 scales, zero
points, shapes) that :mod:`esc2c.quant.export` writes to ONNX and :mod:`esc2c.quant.reference` executes;
:meth:`QATNet.integer_forward` runs that program with :func:`esc2c.quant.reference.run`, the one integer
executor in Python, returning every layer's int8 tensor.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import (
    AuxHead,
    BasicBlock,
    ConvBNAct,
    ESCNet,
    Head,
    LinearAct,
    ModelOutput,
)
from esc2c.quant import intparams as ip
from esc2c.quant import reference

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


def _fq_weight(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    q, s = weight_int(w, per_channel)
    shape = [-1] + [1] * (w.dim() - 1) if per_channel else [1] * w.dim()
    return w + (q * s.reshape(shape) - w).detach(), s


def bias_int(b: torch.Tensor, s_in: np.float32, s_w: torch.Tensor) -> np.ndarray:
    return ip.quantize_bias(b.detach().cpu().double().numpy(), float(s_in), s_w.cpu().numpy().astype(np.float64))


def _fq_bias(b: torch.Tensor, s_in: np.float32, s_w: torch.Tensor) -> torch.Tensor:
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


# ------------------------------------------------------------------------------------------------ QAT ops
@dataclass
class QT:
    """A fake-quantized tensor and the quantizer whose grid it lies on."""
    t: torch.Tensor
    q: ActQuant


def _record(rec, name, qt):
    if rec is not None:
        rec[name] = qt
    return qt


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
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
        wf, bf = _fold_bn(c, block.bn)
        self.weight = nn.Parameter(wf)
        self.bias = nn.Parameter(bf)
        self.stride, self.padding, self.groups = tuple(c.stride), tuple(c.padding), c.groups
        self.relu = bool(block.relu)
        self.name = name
        self.out_q = ActQuant(name)

    def forward(self, x: QT, rec=None) -> QT:
        if self.out_q.fake_quant:
            w, s_w = _fq_weight(self.weight, per_channel=True)
            b = _fq_bias(self.bias, x.q.qparams()[0], s_w)
        else:
            w, b = self.weight, self.bias
        y = F.conv2d(x.t, w, b, self.stride, self.padding, 1, self.groups)
        if self.relu:
            y = torch.relu(y)
        return _record(rec, self.name, QT(self.out_q(y), self.out_q))

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
        return _record(rec, self.name, QT(self.out_q(y), self.out_q))


class QMaxPool(nn.Module):
    def __init__(self, pool: nn.MaxPool2d, name: str):
        super().__init__()
        _check_pool(pool, name)
        self.kernel, self.stride, self.padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
        self.name = name

    def forward(self, x: QT, rec=None) -> QT:
        return _record(rec, self.name, QT(F.max_pool2d(x.t, self.kernel, self.stride, self.padding), x.q))

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
        return _record(rec, self.name, QT(smooth, x.q))

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
            w, s_w = _fq_weight(self.weight, per_channel=False)
            b = _fq_bias(self.bias, x.q.qparams()[0], s_w.expand(self.bias.shape[0]))
        else:
            w, b = self.weight, self.bias
        y = F.linear(x.t, w, b)
        if self.relu:
            y = torch.relu(y)
        return _record(rec, self.name, QT(self.out_q(y), self.out_q))

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


def _convert_stage_module(m: nn.Module, name: str) -> nn.Module:
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


# ------------------------------------------------------------------------------------------------ the model
class QATNet(nn.Module):
    """Fake-quantized ESCNet. ``forward`` gives float logits on the int8 grid; ``forward_all`` the
    :class:`ModelOutput` used by the distillation losses; ``integer_forward`` the exact integer result."""

    def __init__(self, model: ESCNet):
        super().__init__()
        self.input_q = ActQuant("input")
        stages = []
        for i, stage in enumerate(model.stages):
            ops = []
            for j, m in enumerate(stage):
                op = _convert_stage_module(m, f"s{i}.{j}")
                if op is not None:
                    ops.append(op)
            stages.append(nn.ModuleList(ops))
        self.stages = nn.ModuleList(stages)
        head: Head = model.head
        self.gap = QAvgPool("head.gap")
        hidden = []
        for k, la in enumerate(head.hidden):
            if not isinstance(la, LinearAct):
                raise Esc2cError(f"head.hidden.{k}: {type(la).__name__} cannot be quantized (LinearAct expected)")
            hidden.append(QLinear(la.fc, la.relu, f"head.fc{k}"))
        self.hidden = nn.ModuleList(hidden)
        self.fc = QLinear(head.fc, False, "logits")
        self.aux_taps = tuple(model.aux_taps)
        self.aux_heads = nn.ModuleList([copy.deepcopy(h) for h in model.aux_heads])
        for h in self.aux_heads:
            if not isinstance(h, AuxHead):
                raise Esc2cError(f"aux head {type(h).__name__} is not an AuxHead")
        self.arch = getattr(model, "arch", "escnet")
        self.num_classes = int(head.fc.out_features)
        for p in self.parameters():  # a model that served as a frozen teacher trains again once quantized
            p.requires_grad_(True)
        if hasattr(model, "in_shape"):
            self.in_shape = tuple(model.in_shape)

    # -- modes
    def quantizers(self):
        return [m for m in self.modules() if isinstance(m, ActQuant)]

    def set_mode(self, calibrating: bool, fake_quant: bool) -> "QATNet":
        for q in self.quantizers():
            q.calibrating, q.fake_quant = calibrating, fake_quant
        return self

    def drop_aux_heads(self) -> "QATNet":
        self.aux_heads = nn.ModuleList()
        return self

    # -- float (fake-quant) views
    def _trunk(self, x, rec=None):
        qt = _record(rec, "input", QT(self.input_q(x), self.input_q))
        feats = []
        for i, stage in enumerate(self.stages):
            for op in stage:
                qt = op(qt, rec)
            if i in self.aux_taps:
                feats.append(qt.t)
        qt = self.gap(qt, rec)
        qt = QT(torch.flatten(qt.t, 1), qt.q)
        _record(rec, "head.flatten", qt)
        for layer in self.hidden:
            qt = layer(qt, rec)
        return self.fc(qt, rec), feats

    def forward(self, x):
        return self._trunk(x)[0].t

    def forward_all(self, x) -> ModelOutput:
        out, feats = self._trunk(x)
        aux = [h(f) for h, f in zip(self.aux_heads, feats)] if self.aux_heads else []
        return ModelOutput(out.t, aux, feats)

    @torch.no_grad()
    def fake_quant_codes(self, x) -> dict[str, np.ndarray]:
        """int8 codes of every named tensor of the fake-quant forward (for comparison with the integers)."""
        rec: dict = {}
        self._trunk(x, rec)
        return {k: v.q.to_int(v.t).cpu().numpy().astype(np.int8) for k, v in rec.items()}

    # -- integer views
    @torch.no_grad()
    def integer_program(self, in_shape=None) -> dict:
        """The integer program of the deployed model (aux heads excluded). ``in_shape`` = (C, H, W).

        ``tensors`` maps every tensor name to its float32 scale, zero point and shape (without batch);
        ``layers`` lists ops in execution order with int8 weights, int32 biases, float32 weight scales."""
        for q in self.quantizers():
            if not q.calibrated:
                raise Esc2cError(f"quantizer {q.name!r} was never calibrated: run calibrate() first")
        if in_shape is None:
            in_shape = getattr(self, "in_shape", None)
            if in_shape is None:
                raise Esc2cError("integer_program needs the input shape (C, H, W)")
        was_training = self.training
        self.eval()
        rec: dict = {}
        x = torch.zeros((1,) + tuple(in_shape), device=self.input_q.scale.device)
        self._trunk(x, rec)
        self.train(was_training)
        tensors = {name: {"scale": qt.q.qparams()[0], "zero_point": qt.q.qparams()[1],
                          "shape": list(qt.t.shape[1:])} for name, qt in rec.items()}
        layers: list[dict] = []
        cur = "input"

        def conv_layer(op: QConv, src: str):
            layers.append(op.layer(src, rec[src].q))
            return op.name

        for stage in self.stages:
            for op in stage:
                if isinstance(op, QConv):
                    cur = conv_layer(op, cur)
                elif isinstance(op, QBasicBlock):
                    a = conv_layer(op.conv2, conv_layer(op.conv1, cur))
                    b = cur if op.shortcut is None else conv_layer(op.shortcut, cur)
                    layers.append({"op": "add", "name": op.name, "inputs": [a, b], "output": op.name,
                                   "act": "relu"})
                    cur = op.name
                elif isinstance(op, QMaxPool):
                    layers.append(op.layer(cur, rec[cur].q))
                    cur = op.name
                elif isinstance(op, QAvgPool):
                    layers.append(op.layer(cur, rec[cur].q, tensors[cur]["shape"]))
                    cur = op.name
        layers.append(self.gap.layer(cur, rec[cur].q, tensors[cur]["shape"]))
        layers.append({"op": "flatten", "name": "head.flatten", "inputs": ["head.gap"], "output": "head.flatten"})
        cur = "head.flatten"
        for layer in list(self.hidden) + [self.fc]:
            layers.append(layer.layer(cur, rec[cur].q))
            cur = layer.name
        return {"input": "input", "output": cur, "tensors": tensors, "layers": layers}

    def integer_forward(self, x_int8, rounding: str = "double", in_shape=None) -> dict[str, np.ndarray]:
        """Run the integer program exactly (:func:`esc2c.quant.reference.run`); returns {tensor name: int8 array
        [N, ...]} for every layer."""
        x = np.asarray(x_int8)
        prog = self.integer_program(in_shape or x.shape[1:])
        return reference.run(prog, x, rounding)


# ------------------------------------------------------------------------------------------------ API
def quantize_model(model: ESCNet) -> QATNet:
    """Float ESCNet -> QATNet (BN folded, quantizers inserted, not yet calibrated). The input is not changed."""
    model = copy.deepcopy(model).cpu().eval()
    return QATNet(model)


@torch.no_grad()
def calibrate(qmodel: QATNet, batches, max_batches: int | None = None) -> QATNet:
    """Record activation ranges over float forwards of ``batches`` (iterable of input tensors or (x, y)
    tuples), then switch fake quantization on. Returns ``qmodel``."""
    was_training = qmodel.training
    qmodel.eval().set_mode(calibrating=True, fake_quant=False)
    n = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        qmodel(x.to(next(qmodel.parameters()).device))
        n += 1
        if max_batches is not None and n >= max_batches:
            break
    if n == 0:
        raise Esc2cError("calibration needs at least one batch of data")
    qmodel.set_mode(calibrating=False, fake_quant=True)
    qmodel.train(was_training)
    return qmodel


def load_qat(float_model: ESCNet, state_dict: dict) -> QATNet:
    """Rebuild a trained QATNet from its float architecture (any weights) and its ``state_dict``; the
    quantizers come back calibrated, with fake quantization on."""
    q = quantize_model(float_model)
    if not float_model.aux_heads:
        q.drop_aux_heads()
    q.load_state_dict(state_dict)
    return q.set_mode(calibrating=False, fake_quant=True)


def quantize_input(qmodel: QATNet, x: torch.Tensor) -> np.ndarray:
    """Float features -> int8 input codes exactly like ONNX QuantizeLinear (round half to even)."""
    s, zp = qmodel.input_q.qparams()
    return ip.quantize(x.detach().cpu().numpy(), np.float64(s), zp)
