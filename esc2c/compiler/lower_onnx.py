"""Integer-only ONNX lowering of the IR (DESIGN.md section 3, verification path 1).

Every IR tensor becomes an int8 graph output of the same name, in the C code's NHWC addressing, so it
can be compared element for element with the per-layer dumps of the emitted C. Arithmetic:
ConvInteger / MatMulInteger (int8 x int8 -> int32), int64 Mul/Add/Sub, floor division built from
Mod(fmod=0) and an exact Div, Less/Greater + Cast for the rounding terms, Clip, Cast. Requantization
reproduces arm_nn_requantize in both rounding modes (double: doubling high multiply + rounding shift
with ties away from zero; single: one rounding, ties up), exactly like esc2c.quant.intparams.requantize.
The integer parameters all come from the IR (computed by the qparams pass).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.passes.fuse_conv_pool import unfuse
from esc2c.contract import META_OUTPUT, META_ROUNDING, ROUNDING_MODES

OPSET = 17


class _Builder:
    def __init__(self, rounding: str):
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {ROUNDING_MODES}")
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
        """arm_nn_requantize on an int64 tensor; mult/shift broadcast against it."""
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


def _end_pads(in_hw, out_hw, kernel, stride, pads):
    """Leading pads from the IR; trailing pads as many as the output size needs (ceil mode included)."""
    t, l = pads[0], pads[1]
    b = max(0, (out_hw[0] - 1) * stride[0] + kernel[0] - in_hw[0] - t)
    r = max(0, (out_hw[1] - 1) * stride[1] + kernel[1] - in_hw[1] - l)
    return (t, l, b, r)


def _counts(in_hw, out_hw, kernel, stride, pads) -> np.ndarray:
    oh, ow = out_hw
    cnt = np.zeros((oh, ow), np.int64)
    for y in range(oh):
        y0 = y * stride[0] - pads[0]
        ny = min(y0 + kernel[0], in_hw[0]) - max(y0, 0)
        for x in range(ow):
            x0 = x * stride[1] - pads[1]
            nx = min(x0 + kernel[1], in_hw[1]) - max(x0, 0)
            cnt[y, x] = ny * nx
    return cnt


def lower_to_onnx(g: Graph, rounding: str = "double") -> onnx.ModelProto:
    """The IR as an integer-only ONNX model; every IR tensor is a graph output (int8, NHWC). A fused conv +
    pool (``conv_pool``) is lowered as its two ops, the conv output an output too (same values)."""
    g = unfuse(g)
    if g.layout != "NHWC" or any(op.kind in ("conv", "fully_connected") and op.multiplier is None for op in g.ops):
        raise ValueError("lower_to_onnx needs the IR after the layout and qparams passes")
    B = _Builder(rounding)
    T = g.tensors
    for op in g.ops:
        x = op.inputs[0]
        xt, yt = T[x], T[op.output]
        if op.kind in ("conv", "depthwise_conv"):
            kernel, stride = op.attrs["kernel"], op.attrs["stride"]
            pads = _end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
            xp = B.pad(B.nchw(x), pads, xt.zero_point)
            if op.kind == "conv":
                w = op.weights.transpose(0, 3, 1, 2)
                group = op.attrs.get("group", 1)
            else:
                w = op.weights.transpose(3, 0, 1, 2)
                group = xt.shape[3]
            acc = B.node("ConvInteger", [xp, B.const(w, np.int8, "w"), B.const(xt.zero_point, np.int8, "xzp")],
                         kernel_shape=list(kernel), strides=list(stride), group=group)
            acc = B.i64(B.nhwc(acc))
            acc = B.node("Add", [acc, B.const(op.bias.astype(np.int64), np.int64, "bias")])
            B.finish_s8(B.requant(acc, op.multiplier, op.shift), op, yt.zero_point, op.output)
        elif op.kind == "fully_connected":
            k = op.weights.shape[1]
            flat = B.node("Reshape", [x, B.const([1, k], np.int64, "shape")])
            acc = B.node("MatMulInteger", [flat, B.const(op.weights.T.copy(), np.int8, "w"),
                                           B.const(xt.zero_point, np.int8, "xzp")])
            acc = B.node("Add", [B.i64(acc), B.const(op.bias.astype(np.int64), np.int64, "bias")])
            mult, shift = (op.multiplier[:1], op.shift[:1]) if op.kernel == "arm_fully_connected_s8" else \
                (op.multiplier, op.shift)
            y = B.finish_s8(B.requant(acc, mult, shift), op, yt.zero_point, B.name("fc"))
            B.node("Reshape", [y, B.const(list(yt.shape), np.int64, "shape")], op.output)
        elif op.kind == "max_pool":
            kernel, stride = op.attrs["kernel"], op.attrs["stride"]
            pads = _end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
            y = B.node("MaxPool", [B.nchw(x)], kernel_shape=list(kernel), strides=list(stride), pads=list(pads))
            y = B.nhwc(y)
            if op.act_min > -128 or op.act_max < 127:
                B.finish_s8(B.i64(y), op, 0, op.output)
            else:
                B.node("Identity", [y], op.output)
        elif op.kind == "avg_pool":
            kernel, stride = op.attrs["kernel"], op.attrs["stride"]
            pads = _end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
            c = xt.shape[3]
            rescale = op.kernel == "esc2c_avgpool_rescale_s8"
            zp = xt.zero_point if rescale else 0  # rescale: sum(q - zp); CMSIS-NN: sum of raw q
            xp = B.pad(B.nchw(x), pads, zp)
            ones = np.ones((c, 1, kernel[0], kernel[1]), np.int8)
            s = B.node("ConvInteger", [xp, B.const(ones, np.int8, "ones"), B.const(zp, np.int8, "xzp")],
                       kernel_shape=list(kernel), strides=list(stride), group=c)
            s = B.i64(B.nhwc(s))
            cnt = _counts(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])[None, :, :, None]
            if rescale:
                B.finish_s8(B.requant(s, op.avg_mult[cnt], op.avg_shift[cnt]), op, yt.zero_point, op.output)
            else:  # CMSIS-NN: (sum +/- count/2) / count, C division (truncation)
                pos = B.node("Greater", [s, B.const(0, np.int64)])
                half = B.const(cnt // 2, np.int64, "half")
                num = B.node("Where", [pos, B.node("Add", [s, half]), B.node("Sub", [s, half])])
                quot = _trunc_div(B, num, cnt)
                B.finish_s8(quot, op, 0, op.output)
        elif op.kind == "add":
            b, bt = op.inputs[1], T[op.inputs[1]]
            ls = B.const(1 << op.add["left_shift"], np.int64, "ls")
            a64 = B.node("Mul", [B.node("Sub", [B.i64(x), B.const(xt.zero_point, np.int64)]), ls])
            b64 = B.node("Mul", [B.node("Sub", [B.i64(b), B.const(bt.zero_point, np.int64)]), ls])
            a64 = B.requant(a64, op.add["in1_mult"], op.add["in1_shift"])
            b64 = B.requant(b64, op.add["in2_mult"], op.add["in2_shift"])
            s = B.requant(B.node("Add", [a64, b64]), op.add["out_mult"], op.add["out_shift"])
            B.finish_s8(s, op, yt.zero_point, op.output)
        elif op.kind == "requantize":
            d = B.node("Sub", [B.i64(x), B.const(xt.zero_point, np.int64)])
            B.finish_s8(B.requant(d, op.multiplier, op.shift), op, yt.zero_point, op.output)
        elif op.kind == "reshape":
            B.node("Reshape", [x, B.const(list(yt.shape), np.int64, "shape")], op.output)
        else:
            raise ValueError(f"cannot lower op kind {op.kind}")
    inp = g.input
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT8, list(T[n].shape))
               for op in g.ops for n in op.outputs]
    graph = helper.make_graph(B.nodes, "esc2c_integer", [helper.make_tensor_value_info(
        inp.name, TensorProto.INT8, list(inp.shape))], outputs, B.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="esc2c")
    model.ir_version = 8
    helper.set_model_props(model, {META_ROUNDING: rounding, META_OUTPUT: g.outputs[0]})
    return model


def _trunc_div(B: _Builder, num: str, cnt: np.ndarray) -> str:
    """C integer division num / cnt (truncation toward zero) for positive constant cnt."""
    absn = B.node("Abs", [num])
    d = B.const(cnt, np.int64, "cnt")
    rem = B.node("Mod", [absn, d], fmod=0)
    q = B.node("Div", [B.node("Sub", [absn, rem]), d])
    return B.node("Mul", [q, B.node("Sign", [num])])


def run_int_onnx(model: onnx.ModelProto, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run the integer ONNX on a batch of int8 inputs [N, ...input shape]; returns name -> [N, ...]."""
    import onnxruntime as ort

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
