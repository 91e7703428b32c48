"""``pad``: an NHWC tensor surrounded by its zero point (the real value 0).

Made by the importer for ONNX AveragePool with count_include_pad=1 and padding (torch's AvgPool2d(padding>0)
default): the pool then runs without padding over the padded tensor, so every window divides by
kernel_h * kernel_w, the padded zeros included -- the ONNX semantics, with the pool kernels as they are.

Fields: inputs [x]; attrs ``pads`` (top, left, bottom, right); the output shares the input's scale and zero
point. C: a fill with the zero point and one copy per input row (templates/ops/pad.c.j2).
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, count
from esc2c.contract import ONNXRUNTIME, TFLITE

KIND = "pad"
PAD = "esc2c_pad_inline"  # the template's loop


def padded(imp, x: str, pads, name: str) -> str:
    """A pad op of the importer's NCHW tensor ``x`` by ``pads`` (top, left, bottom, right): its output."""
    t = imp.tensors[x]
    n, c, h, w = t.shape
    top, left, bottom, right = (int(p) for p in pads)
    imp.new_tensor(name, (n, c, h + top + bottom, w + left + right), t.scale, t.zero_point)
    imp.ops.append(Op(name, KIND, [x], [name], attrs={"pads": (top, left, bottom, right)}))
    return name


class Pad(OpKind):
    kind = KIND  # no ONNX anchor of its own: avg_pool's import makes it
    contracts = (TFLITE, ONNXRUNTIME)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        return PAD, dict(NO_SCRATCH)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        L["pads"] = op.attrs["pads"]

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        y = B.pad(B.nchw(x), op.attrs["pads"], g.tensors[x].zero_point)
        B.node("Identity", [B.nhwc(y)], op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        """PAD int8 fills with the output zero point (the input's)."""
        t, l, b, r = op.attrs["pads"]
        fb = w.fb
        paddings = w.const(f"{op.name}/paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32),
                           fb.TensorType.INT32, None)
        w.operator("PAD", [w.activation(op.inputs[0]), paddings], [w.activation(op.output)])

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        count(f, "eltwise.elem", g.tensors[op.output].size)


OP = Pad()
