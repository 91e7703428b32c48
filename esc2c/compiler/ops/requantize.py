"""``requantize``: int8 -> int8 with another scale and zero point, then the clamp (a DequantizeLinear read
directly by a QuantizeLinear, a rescaling max pool's second half, a Flatten/Reshape that rescales, a Relu
that could not be fused). The runtime's esc2c_requantize_s8.

Fields: inputs [x]; ``multiplier``/``shift`` of length 1: out = clamp(requant(x - zp_in) + zp_out); under
the onnxruntime contract ``multiplier`` holds the two float32 scales (s_in, s_out) and esc2c_rescale_ort_s8
computes DequantizeLinear then QuantizeLinear (esc2c.quant.ortparams.rescale).
Elementwise: the output may take the buffer of the input when it dies here.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, c_float, count, f32
from esc2c.contract import ONNXRUNTIME, TFLITE
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

KIND = "requantize"
REQUANT = "esc2c_requantize_s8"
RESCALE_ORT = "esc2c_rescale_ort_s8"


def rescale(imp, r: Region, src: str) -> None:
    """The region's output as a requantize of ``src`` (named after its QuantizeLinear)."""
    imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
    imp.ops.append(Op(imp.op_name(r.qnode), KIND, [src], [r.y], act=r.act))


class Requantize(OpKind):
    """An elementwise rescale; a subclass changes ``elementwise`` (the integer function applied to x - zp_in
    before the rescale), its kernel and its TFLite operator (ops/abs.py)."""
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("DequantizeLinear",)
    kernel = REQUANT
    tflite_op = "QUANTIZE"

    def from_onnx(self, imp, r: Region) -> None:
        rescale(imp, r, imp.act_input(r.node.output[0], r.node))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        if g.contract == ONNXRUNTIME:  # DequantizeLinear then QuantizeLinear: the two scales, no multiplier
            op.multiplier = np.array([g.tensors[op.inputs[0]].scale, g.tensors[op.output].scale], np.float32)
            op.shift = np.zeros(1, np.int32)
            return
        m, s = intparams.rescale_params(g.tensors[op.inputs[0]].scale, g.tensors[op.output].scale)
        op.multiplier = np.array([m], np.int32)
        op.shift = np.array([s], np.int32)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        if g.contract == ONNXRUNTIME:
            return RESCALE_ORT, dict(NO_SCRATCH)
        return self.kernel, dict(NO_SCRATCH)

    def template(self, op: Op) -> str:
        return "ops/rescale_ort.c.j2" if op.kernel == RESCALE_ORT else super().template(op)

    def macs(self, op: Op, g: Graph) -> int:
        return g.tensors[op.output].size

    def in_place_inputs(self, op: Op) -> list[str]:
        return list(op.inputs)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        if op.kernel == RESCALE_ORT:
            L["in_scale"], L["out_scale"] = c_float(op.multiplier[0]), c_float(op.multiplier[1])
            return
        L["mult_value"], L["shift_value"] = int(op.multiplier[0]), int(op.shift[0])

    def elementwise(self, B, centred: str) -> str:
        """The integer ONNX of the function applied to x - zp_in (int64) before the rescale: none here."""
        return centred

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        if op.kernel == RESCALE_ORT:  # float(q - zp_in) * s_in / s_out, rounded half to even, + zp_out
            d = B.node("Cast", [B.node("Sub", [B.i64(x), B.const(g.tensors[x].zero_point, np.int64)])], to=1)
            d = B.node("Mul", [d, B.const(op.multiplier[0], np.float32, "sx")])
            d = B.node("Round", [B.node("Div", [d, B.const(op.multiplier[1], np.float32, "sy")])])
            B.finish_s8(B.node("Cast", [d], to=7), op, g.tensors[op.output].zero_point, op.output)
            return
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
