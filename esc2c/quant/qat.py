"""INT8 quantization-aware training that simulates the integer contract (DESIGN.md section 3).

:func:`quantize_model` turns a float :class:`~esc2c.models.blocks.ESCNet` into a :class:`QATNet`: BatchNorm
folded into the convs, fake quantization of weights, biases and activations (:mod:`esc2c.quant.fakequant`) in
quantized layers (:mod:`esc2c.quant.qlayers`), the integer contract's arithmetic in every pool and add.

* dropout of the float head is not applied (it would leave the int8 grid).
* auxiliary heads stay float (training only, never exported): they read the fake-quantized stage outputs, so
  the PoKD loss trains the quantized trunk through them.
* :func:`calibrate` records activation ranges, then switches fake quantization on; :func:`load_qat` rebuilds
  a trained net from its state dict; :func:`quantize_input` gives the int8 input codes.

:meth:`QATNet.integer_program` exports the integer program (int8 weights, int32 biases, float32 scales, zero
points, shapes) that :mod:`esc2c.quant.export` writes to ONNX; :meth:`QATNet.integer_forward` runs that
program with :func:`esc2c.quant.reference.run`, the one integer executor in Python, returning every layer's
int8 tensor.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from esc2c.errors import Esc2cError
from esc2c.models.blocks import AuxHead, ESCNet, Head, LinearAct, ModelOutput
from esc2c.quant import intparams as ip
from esc2c.quant import reference
from esc2c.quant.fakequant import ActQuant
from esc2c.quant.qlayers import QT, QAvgPool, QBasicBlock, QConv, QLinear, QMaxPool, convert_stage_module, record


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
                op = convert_stage_module(m, f"s{i}.{j}")
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
        qt = record(rec, "input", QT(self.input_q(x), self.input_q))
        feats = []
        for i, stage in enumerate(self.stages):
            for op in stage:
                qt = op(qt, rec)
            if i in self.aux_taps:
                feats.append(qt.t)
        qt = self.gap(qt, rec)
        qt = QT(torch.flatten(qt.t, 1), qt.q)
        record(rec, "head.flatten", qt)
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
