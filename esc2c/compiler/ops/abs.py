"""``abs``: the quantized elementwise absolute value (ONNX DequantizeLinear -> Abs -> QuantizeLinear).

Fields: inputs [x]; ``multiplier``/``shift`` of length 1 (esc2c.quant.intparams.rescale_params of
s_in / s_out); act_min/act_max: out = clamp(requant(|x - zp_in|) + zp_out). A requantize with |.| applied
first: the integer parameters, memory rules and cost are requantize's. The C is a loop inline in
templates/ops/abs.c.j2 calling the runtime's esc2c_requantize; TFLite's ABS int8 rescales the same way
(from the float32 scales, double rounding) and has no fused activation.
"""
from __future__ import annotations

from esc2c.compiler.ir import Op
from esc2c.compiler.ops.base import Region
from esc2c.compiler.ops.requantize import Requantize
from esc2c.contract import TFLITE

KIND = "abs"
ABS = "esc2c_abs_s8_inline"  # the template's loop


class Abs(Requantize):
    kind = KIND
    contracts = (TFLITE,)  # onnxruntime runs Abs in float between its DequantizeLinear and QuantizeLinear
    onnx_anchors = ("Abs",)
    kernel = ABS
    tflite_op = "ABS"

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        x = imp.act_input(n.input[0], n)
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        imp.ops.append(Op(imp.op_name(n), KIND, [x], [r.y], act=r.act))

    def elementwise(self, B, centred: str) -> str:
        return B.node("Abs", [centred])


OP = Abs()
