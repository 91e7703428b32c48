"""``max_pool``: ONNX MaxPool, CMSIS-NN's arm_max_pool_s8; under ``kernels="fast"`` a pool whose 2x2 windows
tile its input at stride 2 runs on the runtime's esc2c_max_pool_2x2_s8 (4 channels per SSUB8/SEL pair).

Fields: attrs kernel, stride, pads; act_min/act_max; input and output share scale and zero point (an ONNX
max pool with its own output scale imports as a max pool and a ``requantize`` after it: max commutes with
the monotone requantization).
"""
from __future__ import annotations

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import pooling, requantize
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, end_pads, same_qparams
from esc2c.contract import ONNXRUNTIME, TFLITE

KIND = "max_pool"
MAX_POOL = "arm_max_pool_s8"
MAX_POOL_2X2 = "esc2c_max_pool_2x2_s8"
KERNELS = (MAX_POOL, MAX_POOL_2X2)
COST_KEYS = {MAX_POOL: "pool", MAX_POOL_2X2: "pool2"}  # cost-model counts per kernel (costmodel.COEFFS)


def tiles_2x2(op: Op, g: Graph) -> bool:
    """True when the pool is esc2c_max_pool_2x2_s8's: 2x2 windows, stride 2, no padding, every window inside
    the input (not ceil_mode's last partial one)."""
    a = op.attrs
    (_, h, w, _), (_, oh, ow, _) = g.tensors[op.inputs[0]].shape, g.tensors[op.output].shape
    return (tuple(a["kernel"]) == (2, 2) and tuple(a["stride"]) == (2, 2) and not any(a["pads"])
            and (oh, ow) == (h // 2, w // 2))


class MaxPool(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("MaxPool",)

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        x, attrs = pooling.onnx_pool(imp, n)
        if imp.m.attr(n, "storage_order", 0):
            raise imp.err(n, "storage_order=1 is not supported")
        xt = imp.tensors[x]
        if abs(xt.scale - r.s_out) <= 1e-9 * r.s_out and xt.zero_point == r.zp_out:
            imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
            imp.ops.append(Op(imp.op_name(n), KIND, [x], [r.y], attrs=attrs, act=r.act))
        else:  # max commutes with the monotone requantization: pool, then rescale
            mid = imp.new_tensor(f"{r.y}__pool", r.out_shape, xt.scale, xt.zero_point)
            imp.ops.append(Op(imp.op_name(n), KIND, [x], [mid], attrs=attrs))
            imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
            imp.ops.append(Op(imp.op_name(n) + "_rescale", requantize.KIND, [mid], [r.y], act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return not rescales  # its output keeps the input's quantization

    def qparams(self, op: Op, g: Graph) -> None:
        if not same_qparams(g.tensors[op.inputs[0]], g.tensors[op.output]):
            raise ValueError(f"max pool {op.name}: input and output quantization differ")

    def select_kernel(self, op: Op, g: Graph, options: dict):
        if options["kernels"] == "fast" and tiles_2x2(op, g):
            return MAX_POOL_2X2, dict(NO_SCRATCH)
        return MAX_POOL, dict(NO_SCRATCH)

    def template(self, op: Op) -> str:
        return "ops/max_pool_2x2.c.j2" if op.kernel == MAX_POOL_2X2 else super().template(op)

    def macs(self, op: Op, g: Graph) -> int:
        kh, kw = op.attrs["kernel"]
        return g.tensors[op.output].size * kh * kw

    def raster_ordered(self, op: Op, g: Graph) -> bool:
        return op.kernel in KERNELS

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        xt, yt = g.tensors[x], g.tensors[op.output]
        kernel, stride = op.attrs["kernel"], op.attrs["stride"]
        pads = end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
        y = B.node("MaxPool", [B.nchw(x)], kernel_shape=list(kernel), strides=list(stride), pads=list(pads))
        y = B.nhwc(y)
        if op.act_min > -128 or op.act_max < 127:
            B.finish_s8(B.i64(y), op, 0, op.output)
        else:
            B.node("Identity", [y], op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        pooling.write_tflite(op, g, w, "MAX_POOL_2D", pad_with="lowest")

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        kh, kw = op.attrs["kernel"]
        pooling.pool_counts(f, COST_KEYS[op.kernel], g.tensors[op.output].size, kh * kw, 1)


OP = MaxPool()
