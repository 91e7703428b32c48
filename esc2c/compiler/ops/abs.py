"""``abs``: the quantized elementwise absolute value (ONNX DequantizeLinear -> Abs -> QuantizeLinear).

Fields: inputs [x]; ``multiplier``/``shift`` of length 1 (esc2c.quant.intparams.rescale_params of
s_in / s_out); act_min/act_max: out = clamp(requant(|x - zp_in|) + zp_out). The C is a loop inline in
templates/ops/abs.c.j2 calling the runtime's esc2c_requantize; no kernel function of its own. Elementwise:
the output may take the buffer of the input when it dies here.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, count, f32
from esc2c.errors import Esc2cError
from esc2c.quant import intparams

KIND = "abs"
ABS = "esc2c_abs_s8_inline"  # the template's loop


class Abs(OpKind):
    kind = KIND
    onnx_anchors = ("Abs",)

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        x = imp.act_input(n.input[0], n)
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        imp.ops.append(Op(imp.op_name(n), KIND, [x], [r.y], act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        m, s = intparams.rescale_params(g.tensors[op.inputs[0]].scale, g.tensors[op.output].scale)
        op.multiplier, op.shift = np.array([m], np.int32), np.array([s], np.int32)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        return ABS, dict(NO_SCRATCH)

    def macs(self, op: Op, g: Graph) -> int:
        return g.tensors[op.output].size

    def in_place_inputs(self, op: Op) -> list[str]:
        return list(op.inputs)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        L["mult_value"], L["shift_value"] = int(op.multiplier[0]), int(op.shift[0])

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        d = B.node("Abs", [B.node("Sub", [B.i64(x), B.const(g.tensors[x].zero_point, np.int64)])])
        B.finish_s8(B.requant(d, op.multiplier, op.shift), op, g.tensors[op.output].zero_point, op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        """ABS int8: TFLite rescales |q - zp_in| by s_in / s_out (from the float32 scales, double rounding)
        and has no fused activation."""
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        m, s = intparams.rescale_params(float(f32(x.scale)), float(f32(y.scale)))
        if (m, s) != (int(op.multiplier[0]), int(op.shift[0])):
            raise Esc2cError(f"layer '{op.name}': TFLite's ABS would use multiplier/shift {m}/{s}, the IR has "
                             f"{int(op.multiplier[0])}/{int(op.shift[0])}")
        if (op.act_min, op.act_max) != (intparams.INT8_MIN, intparams.INT8_MAX):
            raise Esc2cError(f"layer '{op.name}': a clamped abs has no TFLite form")
        w.operator("ABS", [w.activation(op.inputs[0])], [w.activation(op.output)])

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        count(f, "eltwise.elem", g.tensors[op.output].size)


OP = Abs()
