"""``requantize``: int8 -> int8 with another scale and zero point, then the clamp (a DequantizeLinear read
directly by a QuantizeLinear, a rescaling max pool's second half, a Flatten/Reshape that rescales, a Relu
that could not be fused). The runtime's esc2c_requantize_s8.

Fields: inputs [x]; ``multiplier``/``shift`` of length 1: out = clamp(requant(x - zp_in) + zp_out).
Elementwise: the output may take the buffer of the input when it dies here.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, count, f32
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

KIND = "requantize"
REQUANT = "esc2c_requantize_s8"


def rescale(imp, r: Region, src: str) -> None:
    """The region's output as a requantize of ``src`` (named after its QuantizeLinear)."""
    imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
    imp.ops.append(Op(imp.op_name(r.qnode), KIND, [src], [r.y], act=r.act))


class Requantize(OpKind):
    """An elementwise rescale; a subclass changes ``elementwise`` (the integer function applied to x - zp_in
    before the rescale), its kernel and its TFLite operator (ops/abs.py)."""
    kind = KIND
    onnx_anchors = ("DequantizeLinear",)
    kernel = REQUANT
    tflite_op = "QUANTIZE"

    def from_onnx(self, imp, r: Region) -> None:
        rescale(imp, r, imp.act_input(r.node.output[0], r.node))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        m, s = intparams.rescale_params(g.tensors[op.inputs[0]].scale, g.tensors[op.output].scale)
        op.multiplier = np.array([m], np.int32)
        op.shift = np.array([s], np.int32)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        return self.kernel, dict(NO_SCRATCH)

    def macs(self, op: Op, g: Graph) -> int:
        return g.tensors[op.output].size

    def in_place_inputs(self, op: Op) -> list[str]:
        return list(op.inputs)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        L["mult_value"], L["shift_value"] = int(op.multiplier[0]), int(op.shift[0])

    def elementwise(self, B, centred: str) -> str:
        """The integer ONNX of the function applied to x - zp_in (int64) before the rescale: none here."""
        return centred

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        d = self.elementwise(B, B.node("Sub", [B.i64(x), B.const(g.tensors[x].zero_point, np.int64)]))
        B.finish_s8(B.requant(d, op.multiplier, op.shift), op, g.tensors[op.output].zero_point, op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        m, s = intparams.rescale_params(float(f32(x.scale)), float(f32(y.scale)))
        if (m, s) != (int(op.multiplier[0]), int(op.shift[0])):
            raise Esc2cError(f"layer '{op.name}': TFLite's {self.tflite_op} would use multiplier/shift {m}/{s}, the IR "
                             f"has {int(op.multiplier[0])}/{int(op.shift[0])}")
        if (op.act_min, op.act_max) != (intparams.INT8_MIN, intparams.INT8_MAX):
            raise Esc2cError(f"layer '{op.name}': a clamped {self.kind} has no TFLite form")
        w.operator(self.tflite_op, [w.activation(op.inputs[0])], [w.activation(op.output)])

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        count(f, "eltwise.elem", g.tensors[op.output].size)


OP = Requantize()
