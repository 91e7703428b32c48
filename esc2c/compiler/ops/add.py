"""``add``: the residual add of two int8 tensors of the same shape (ONNX Add of two activations). Under the
tflite contract TFLite ADD arithmetic (left shift 20, per-input multipliers, output multiplier), the
runtime's esc2c_add_s8; under the onnxruntime contract QLinearAdd's float32 formula, esc2c_add_ort_s8.

Fields: inputs [a, b]; ``add`` the dict of esc2c.quant.intparams.add_params (tflite) or
esc2c.quant.ortparams.add_params (onnxruntime: ra, rb, k); act_min/act_max. Elementwise: the output may take
the buffer of an input that dies here.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, c_float, count, f32
from esc2c.contract import ONNXRUNTIME, TFLITE
from esc2c.errors import Esc2cError
from esc2c.quant import intparams, ortparams

KIND = "add"
ADD = "esc2c_add_s8"
ADD_ORT = "esc2c_add_ort_s8"


class Add(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("Add",)

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        a = imp.act_input(n.input[0], n)
        b = imp.act_input(n.input[1], n)
        if imp.tensors[a].shape != imp.tensors[b].shape:
            raise imp.err(n, f"residual add needs equal shapes, got {imp.tensors[a].shape} and "
                             f"{imp.tensors[b].shape} (broadcasting is not supported)")
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        # onnxruntime's QLinearAdd computes on the raw values of the model's activation type
        uint8 = imp.qparams(r.qnode)[3]
        imp.ops.append(Op(imp.op_name(n), KIND, [a, b], [r.y], attrs={"raw_offset": 128 if uint8 else 0},
                          act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        a, b, out = (g.tensors[t] for t in (*op.inputs[:2], op.output))
        if g.contract == ONNXRUNTIME:
            op.add = ortparams.add_params(a.scale, a.zero_point, b.scale, b.zero_point, out.scale, out.zero_point,
                                          op.attrs.get("raw_offset", 0))
        else:
            op.add = intparams.add_params(a.scale, b.scale, out.scale)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        return (ADD_ORT if g.contract == ONNXRUNTIME else ADD), dict(NO_SCRATCH)

    def template(self, op: Op) -> str:
        return "ops/add_ort.c.j2" if op.kernel == ADD_ORT else "ops/add.c.j2"

    def macs(self, op: Op, g: Graph) -> int:
        return g.tensors[op.output].size

    def in_place_inputs(self, op: Op) -> list[str]:
        return list(op.inputs)

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        b = g.tensors[op.inputs[1]]
        L["in2_off"], L["in2_offset"], L["add"] = b.offset, -b.zero_point, op.add
        if op.kernel == ADD_ORT:
            L["add_c"] = {k: c_float(op.add[k]) for k in ("ra", "rb", "k")}

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        (x, b), yt = op.inputs, g.tensors[op.output]
        if op.kernel == ADD_ORT:  # every (a, b) pair precomputed with the exact fma: a Gather from 64 K
            table = ortparams.add_table(op.add, (op.act_min, op.act_max)).reshape(-1)
            idx = B.node("Add", [B.node("Mul", [B.node("Add", [B.i64(x), B.const(128, np.int64)]),
                                                B.const(256, np.int64)]),
                                 B.node("Add", [B.i64(b), B.const(128, np.int64)])])
            B.node("Gather", [B.const(table, np.int8, "add_table"), idx], op.output, axis=0)
            return
        xt, bt = g.tensors[x], g.tensors[b]
        ls = B.const(1 << op.add["left_shift"], np.int64, "ls")
        a64 = B.node("Mul", [B.node("Sub", [B.i64(x), B.const(xt.zero_point, np.int64)]), ls])
        b64 = B.node("Mul", [B.node("Sub", [B.i64(b), B.const(bt.zero_point, np.int64)]), ls])
        a64 = B.requant(a64, op.add["in1_mult"], op.add["in1_shift"])
        b64 = B.requant(b64, op.add["in2_mult"], op.add["in2_shift"])
        s = B.requant(B.node("Add", [a64, b64]), op.add["out_mult"], op.add["out_shift"])
        B.finish_s8(s, op, yt.zero_point, op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        a, b, y = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.output]
        want = intparams.add_params(float(f32(a.scale)), float(f32(b.scale)), float(f32(y.scale)))
        if want != op.add:
            raise Esc2cError(f"layer '{op.name}': TFLite's ADD parameters from the float32 scales {want} differ "
                             f"from the IR's {op.add}")
        opt = w.fb.AddOptionsT()
        opt.fusedActivationFunction = w.act(op)
        w.operator("ADD", [w.activation(op.inputs[0]), w.activation(op.inputs[1])], [w.activation(op.output)],
                   opt, "AddOptions")

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        count(f, "eltwise.elem", g.tensors[op.output].size)


OP = Add()
