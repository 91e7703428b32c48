"""Integer-only ONNX lowering of the IR (DESIGN.md section 3, verification path 1).

Every IR tensor becomes an int8 graph output of the same name, in the C code's NHWC addressing, so it
can be compared element for element with the per-layer dumps of the emitted C. Arithmetic:
ConvInteger / MatMulInteger (int8 x int8 -> int32), int64 Mul/Add/Sub, floor division built from
Mod(fmod=0) and an exact Div, Less/Greater + Cast for the rounding terms, Clip, Cast. Requantization
reproduces arm_nn_requantize in both rounding modes (double: doubling high multiply + rounding shift
with ties away from zero; single: one rounding, ties up), exactly like esc2c.quant.intparams.requantize.
Under the onnxruntime contract the IR's float32 scales are applied as onnxruntime's kernels apply them
(esc2c.quant.ortparams): Cast to float32, Mul, Round (half to even); the add as a 64 K Gather table built
with the exact fma; the average pool as float32 slices, Add, Div.
The integer parameters all come from the IR (computed by the qparams pass). Each op kind lowers itself
(``OpKind.lower_onnx``, esc2c/compiler/ops/) with the :class:`_Builder` below.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.passes.fuse_conv_pool import unfuse
from esc2c.contract import ARITHMETICS, META_OUTPUT, META_ROUNDING, ORT_ROUNDING, contract_of

OPSET = 17


class _Builder:
    def __init__(self, rounding: str):
        if rounding not in ARITHMETICS:
            raise ValueError(f"rounding must be one of {ARITHMETICS}")
        self.rounding = rounding
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"_{hint}_{self.n}"

    def const(self, value, dtype, hint="c") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs, out: str | None = None, **attrs) -> str:
        out = out or self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def i64(self, x: str) -> str:
        return self.node("Cast", [x], to=TensorProto.INT64)

    def floordiv(self, x: str, pow2) -> str:
        """floor(x / d) for int64 x and positive constant d (Mod with fmod=0 takes the divisor's sign)."""
        d = self.const(pow2, np.int64, "d")
        rem = self.node("Mod", [x, d], fmod=0)
        return self.node("Div", [self.node("Sub", [x, rem]), d])

    def requant(self, acc: str, mult, shift) -> str:
        """arm_nn_requantize on an int64 tensor; mult/shift broadcast against it. Under the onnxruntime
        contract (rounding "float", mult the float32 scales): Round(float(acc) * scale), half to even."""
        if self.rounding == ORT_ROUNDING:
            if np.asarray(mult).dtype != np.float32:
                raise ValueError("the onnxruntime contract's requantization takes float32 scales")
            f = self.node("Mul", [self.node("Cast", [acc], to=TensorProto.FLOAT),
                                  self.const(np.asarray(mult, np.float32), np.float32, "scale")])
            return self.i64(self.node("Round", [f]))
        if np.issubdtype(np.asarray(mult).dtype, np.floating):
            raise ValueError(f"rounding {self.rounding}: integer multipliers expected, the IR has float32 scales "
                             "(the onnxruntime contract)")
        mult = np.asarray(mult, np.int64)
        shift = np.asarray(shift, np.int64)
        m = self.const(mult, np.int64, "mult")
        if self.rounding == "single":
            total = 31 - shift
            prod = self.node("Mul", [acc, m])
            res = self.floordiv(prod, np.left_shift(np.int64(1), total - 1))
            one = self.const(1, np.int64)
            return self.floordiv(self.node("Add", [res, one]), 2)
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        v = self.node("Mul", [acc, self.const(np.left_shift(np.int64(1), left), np.int64, "lsh")])
        t = self.node("Add", [self.node("Mul", [v, m]), self.const(1 << 30, np.int64)])
        high = self.floordiv(t, 1 << 31)
        # arm_nn_divide_by_power_of_two(high, right): ties away from zero
        p2 = np.left_shift(np.int64(1), right)
        q = self.floordiv(high, p2)
        rem = self.node("Sub", [high, self.node("Mul", [q, self.const(p2, np.int64, "p2")])])
        neg = self.i64(self.node("Less", [q, self.const(0, np.int64)]))
        thr = self.node("Add", [self.const((p2 - 1) >> 1, np.int64, "thr"), neg])
        up = self.i64(self.node("Greater", [rem, thr]))
        return self.node("Add", [q, up])

    def finish_s8(self, x64: str, op: Op, zp_out: int, out: str) -> str:
        y = self.node("Add", [x64, self.const(zp_out, np.int64, "zp")])
        y = self.node("Clip", [y, self.const(op.act_min, np.int64, "lo"), self.const(op.act_max, np.int64, "hi")])
        return self.node("Cast", [y], out, to=TensorProto.INT8)

    def nchw(self, x: str) -> str:
        return self.node("Transpose", [x], perm=[0, 3, 1, 2])

    def nhwc(self, x: str) -> str:
        return self.node("Transpose", [x], perm=[0, 2, 3, 1])

    def pad(self, x_nchw: str, pads, value: int) -> str:
        t, l, b, r = pads
        if not any(pads):
            return x_nchw
        p = self.const([0, 0, t, l, 0, 0, b, r], np.int64, "pads")
        return self.node("Pad", [x_nchw, p, self.const(value, np.int8, "pv")], mode="constant")


def lower_to_onnx(g: Graph, rounding: str = "double") -> onnx.ModelProto:
    """The IR as an integer-only ONNX model; every IR tensor is a graph output (int8, NHWC). A fused conv +
    pool (``conv_pool``) is lowered as its two ops, the conv output an output too (same values)."""
    g = unfuse(g)
    if g.layout != "NHWC" or not all(ops.get(op.kind).params_ready(op) for op in g.ops):
        raise ValueError("lower_to_onnx needs the IR after the layout and qparams passes")
    if contract_of(rounding) != g.contract:
        raise ValueError(f"rounding {rounding} belongs to the {contract_of(rounding)} contract; the IR's parameters "
                         f"follow the {g.contract} contract")
    B = _Builder(rounding)
    for op in g.ops:
        ops.get(op.kind).lower_onnx(op, g, B)
    inp = g.input
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT8, list(g.tensors[n].shape))
               for op in g.ops for n in op.outputs]
    graph = helper.make_graph(B.nodes, "esc2c_integer", [helper.make_tensor_value_info(
        inp.name, TensorProto.INT8, list(inp.shape))], outputs, B.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="esc2c")
    model.ir_version = 8
    helper.set_model_props(model, {META_ROUNDING: rounding, META_OUTPUT: g.outputs[0]})
    return model


def run_int_onnx(model: onnx.ModelProto, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run the integer ONNX on a batch of int8 inputs [N, ...input shape]; returns name -> [N, ...]."""

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    res: dict[str, list] = {n: [] for n in names}
    for x in inputs:
        for n, v in zip(names, sess.run(names, {in_name: x[None] if x.ndim == len(sess.get_inputs()[0].shape) - 1 else x})):
            res[n].append(v[0])
    return {n: np.stack(v) for n, v in res.items()}
