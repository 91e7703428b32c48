"""``avg_pool``: ONNX AveragePool and GlobalAveragePool.

Fields: attrs kernel, stride, pads (the count excludes padding, ONNX's count_include_pad=0). An AveragePool
with count_include_pad=1 and padding is imported as a ``pad`` op (ops/pad.py: the zero point around the
input) and this pool without padding, whose windows then all count kernel_h * kernel_w elements. When input and output qparams are equal:
CMSIS-NN's arm_avgpool_s8 arithmetic (sum of raw int8 values, divided by the count, ties away from zero);
otherwise (``attrs['rescale']``) ``avg_mult``/``avg_shift`` tables indexed by the count and the runtime's
esc2c_avgpool_rescale_s8: out = requant(sum(q - zp_in), M[count]) + zp_out.

Under the onnxruntime contract (esc2c.quant.ortparams): ``attrs['ort_global']`` (a GlobalAveragePool, or an
AveragePool whose unpadded kernel covers its input, which onnxruntime runs as one) -> the integer sum times
``avg_mult[0]``, QLinearGlobalAveragePool's float32 scale, esc2c_global_avgpool_ort_s8; otherwise
QLinearAveragePool's float32 path, esc2c_avgpool_ort_s8.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import pad, pooling
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, c_float, end_pads, f32, same_qparams
from esc2c.contract import ONNXRUNTIME, TFLITE
from esc2c.errors import Esc2cError
from esc2c.quant import intparams, ortparams

KIND = "avg_pool"
AVG_POOL = "arm_avgpool_s8"
AVG_POOL_RESCALE = "esc2c_avgpool_rescale_s8"
AVG_POOL_ORT = "esc2c_avgpool_ort_s8"
GLOBAL_POOL_ORT = "esc2c_global_avgpool_ort_s8"
COST_KEY = "avg"
# the kernels that read and write in raster order (the output may start over consumed input bytes)
TEMPLATES = {AVG_POOL: "ops/avg_pool.c.j2", AVG_POOL_RESCALE: "ops/avg_pool_rescale.c.j2",
             AVG_POOL_ORT: "ops/avg_pool_ort.c.j2"}


def avgpool_buffer(c: int) -> dict[str, int]:
    return {"dsp": 4 * c, "host": 0}


def _counts(in_hw, out_hw, kernel, stride, pads) -> np.ndarray:
    """The number of in-bounds elements of every window."""
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


def _trunc_div(B, num: str, cnt: np.ndarray) -> str:
    """C integer division num / cnt (truncation toward zero) for positive constant cnt."""
    absn = B.node("Abs", [num])
    d = B.const(cnt, np.int64, "cnt")
    rem = B.node("Mod", [absn, d], fmod=0)
    q = B.node("Div", [B.node("Sub", [absn, rem]), d])
    return B.node("Mul", [q, B.node("Sign", [num])])


class AvgPool(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("AveragePool", "GlobalAveragePool")

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        x, attrs = pooling.onnx_pool(imp, n)
        # onnxruntime runs an AveragePool whose kernel covers the unpadded input as a global pool
        attrs["ort_global"] = n.op_type == "GlobalAveragePool" or (
            tuple(attrs["kernel"]) == tuple(imp.tensors[x].shape[2:]) and not any(attrs["pads"]))
        attrs["raw_offset"] = 128 if imp.qparams(r.qnode)[3] else 0  # uint8 model: its raw zero point
        if n.op_type == "AveragePool" and imp.m.attr(n, "count_include_pad", 0) and any(attrs["pads"]):
            if imp.m.attr(n, "ceil_mode", 0):
                raise imp.err(n, "count_include_pad=1 with padding and ceil_mode=1 is not supported")
            x = pad.padded(imp, x, attrs["pads"], f"{r.y}__padded")
            attrs = {**attrs, "pads": (0, 0, 0, 0)}
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        imp.ops.append(Op(imp.op_name(n), KIND, [x], [r.y], attrs=attrs, act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def qparams(self, op: Op, g: Graph) -> None:
        x, out = g.tensors[op.inputs[0]], g.tensors[op.output]
        if g.contract == ONNXRUNTIME:
            if op.attrs.get("ort_global"):
                kh, kw = op.attrs["kernel"]
                op.avg_mult = np.array([ortparams.global_pool_scale(x.scale, out.scale, kh * kw)], np.float32)
            return
        same = same_qparams(x, out)
        op.attrs["rescale"] = not same
        if not same:
            kh, kw = op.attrs["kernel"]
            op.avg_mult, op.avg_shift = intparams.avgpool_rescale_table(x.scale, out.scale, kh * kw)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        if g.contract == ONNXRUNTIME:
            return (GLOBAL_POOL_ORT if op.attrs.get("ort_global") else AVG_POOL_ORT), dict(NO_SCRATCH)
        if op.attrs.get("rescale"):
            return AVG_POOL_RESCALE, dict(NO_SCRATCH)
        return AVG_POOL, avgpool_buffer(g.tensors[op.inputs[0]].shape[3])

    def macs(self, op: Op, g: Graph) -> int:
        kh, kw = op.attrs["kernel"]
        return g.tensors[op.output].size * kh * kw

    def raster_ordered(self, op: Op, g: Graph) -> bool:
        return op.kernel in TEMPLATES

    def template(self, op: Op) -> str:
        return "ops/global_avg_pool_ort.c.j2" if op.kernel == GLOBAL_POOL_ORT else TEMPLATES[op.kernel]

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        if op.kernel == GLOBAL_POOL_ORT:
            L["n_pixels"], L["scale"] = x.shape[1] * x.shape[2], c_float(op.avg_mult[0])
        elif op.kernel == AVG_POOL_ORT:
            L["in_scale"], L["out_scale"] = c_float(x.scale), c_float(y.scale)
            L["raw_offset"] = op.attrs.get("raw_offset", 0)
        if op.kernel == AVG_POOL_RESCALE:
            i = L["index"]
            L["mult"] = array(f"esc2c_m{i}", "int32_t", op.avg_mult)
            L["shift"] = array(f"esc2c_s{i}", "int32_t", op.avg_shift)

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        x = op.inputs[0]
        xt, yt = g.tensors[x], g.tensors[op.output]
        kernel, stride = op.attrs["kernel"], op.attrs["stride"]
        pads = end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
        c = xt.shape[3]
        if op.kernel == AVG_POOL_ORT:
            _lower_ort_pool(op, g, B, pads)
            return
        # the global pool: the integer sum of q - zp and QLinearGlobalAveragePool's scale, like a rescale
        rescale = op.kernel in (AVG_POOL_RESCALE, GLOBAL_POOL_ORT)
        zp = xt.zero_point if rescale else 0  # rescale: sum(q - zp); CMSIS-NN: sum of raw q
        xp = B.pad(B.nchw(x), pads, zp)
        ones = np.ones((c, 1, kernel[0], kernel[1]), np.int8)
        s = B.node("ConvInteger", [xp, B.const(ones, np.int8, "ones"), B.const(zp, np.int8, "xzp")],
                   kernel_shape=list(kernel), strides=list(stride), group=c)
        s = B.i64(B.nhwc(s))
        cnt = _counts(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])[None, :, :, None]
        if op.kernel == GLOBAL_POOL_ORT:
            B.finish_s8(B.requant(s, op.avg_mult, np.zeros(1, np.int64)), op, yt.zero_point, op.output)
        elif rescale:
            B.finish_s8(B.requant(s, op.avg_mult[cnt], op.avg_shift[cnt]), op, yt.zero_point, op.output)
        else:  # CMSIS-NN: (sum +/- count/2) / count, C division (truncation)
            pos = B.node("Greater", [s, B.const(0, np.int64)])
            half = B.const(cnt // 2, np.int64, "half")
            num = B.node("Where", [pos, B.node("Add", [s, half]), B.node("Sub", [s, half])])
            B.finish_s8(_trunc_div(B, num, cnt), op, 0, op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        if op.attrs.get("rescale"):
            _write_rescale_tflite(op, g, w)
        else:
            pooling.write_tflite(op, g, w, "AVERAGE_POOL_2D", pad_with=None,
                                 why_not="an average pool's counts would change with an explicit PAD")

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        kh, kw = op.attrs["kernel"]
        pooling.pool_counts(f, COST_KEY, g.tensors[op.output].size, kh * kw, 1)


def _lower_ort_pool(op: Op, g: Graph, B, pads) -> None:
    """QLinearAveragePool in ONNX float32 operations that round where onnxruntime's kernel does: the
    dequantized window summed slice by slice in row-major order (padding adds 0.0: no change), divided by the
    in-bounds count, divided by the output scale, plus the zero point, rounded half to even (Round)."""
    x = op.inputs[0]
    xt, yt = g.tensors[x], g.tensors[op.output]
    (kh, kw), (sh, sw) = op.attrs["kernel"], op.attrs["stride"]
    oh, ow = yt.shape[1:3]
    d = B.node("Cast", [B.node("Sub", [B.i64(B.nchw(x)), B.const(xt.zero_point, np.int64)])], to=1)
    d = B.node("Mul", [d, B.const(np.float32(xt.scale), np.float32, "sx")])
    t, l, b, r = pads
    if any(pads):
        d = B.node("Pad", [d, B.const([0, 0, t, l, 0, 0, b, r], np.int64, "pads"), B.const(0.0, np.float32, "z")])
    total = None
    for i in range(kh):
        for j in range(kw):
            sl = B.node("Slice", [d, B.const([i, j], np.int64, "st"),
                                  B.const([i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1], np.int64, "en"),
                                  B.const([2, 3], np.int64, "ax"), B.const([sh, sw], np.int64, "sp")])
            total = sl if total is None else B.node("Add", [total, sl])
    cnt = _counts(xt.shape[1:3], yt.shape[1:3], (kh, kw), (sh, sw), op.attrs["pads"]).astype(np.float32)
    avg = B.node("Div", [total, B.const(cnt[None, None], np.float32, "cnt")])
    off = op.attrs.get("raw_offset", 0)
    q = B.node("Add", [B.node("Div", [avg, B.const(np.float32(yt.scale), np.float32, "sy")]),
                       B.const(np.float32(yt.zero_point + off), np.float32, "zy")])
    B.finish_s8(B.nhwc(B.node("Cast", [B.node("Round", [q])], to=7)), op, -off, op.output)


def _write_rescale_tflite(op: Op, g: Graph, w) -> None:
    """An average pool with its own output scale: a depthwise convolution of ones over the zero-point offset
    input; its float32 weight scale is chosen so the requantization of every possible window sum equals the
    IR's ``requant(sum, avg_mult[n], avg_shift[n])`` (checked over the whole sum range)."""
    fb = w.fb
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    kh, kw = op.attrs["kernel"]
    if w.padding(x.shape[1:3], y.shape[1:3], (kh, kw), op.attrs["stride"], op.attrs["pads"]) != "VALID":
        raise Esc2cError(f"layer '{op.name}': an average pool with its own output scale and padding "
                         f"(window counts vary) is not expressible exactly in TFLite")
    n = kh * kw
    sums = np.arange(n * (intparams.INT8_MIN - x.zero_point), n * (intparams.INT8_MAX - x.zero_point) + 1,
                     dtype=np.int64)
    want = np.clip(intparams.requantize(sums, op.avg_mult[n], op.avg_shift[n], "double") + y.zero_point,
                   op.act_min, op.act_max)
    s_w = _pool_weight_scale(op, w, x.scale, y.scale, n, sums, want, y.zero_point)
    c = x.shape[3]
    wi = w.const(f"{op.name}/ones", np.ones((1, kh, kw, c), np.int8), fb.TensorType.INT8,
                 w.quant(np.full(c, s_w), np.zeros(c, np.int64), 3))
    bi = w.const(f"{op.name}/bias", np.zeros(c, np.int32), fb.TensorType.INT32,
                 w.quant(np.full(c, float(f32(x.scale)) * float(s_w)), np.zeros(c, np.int64), 0))
    opt = fb.DepthwiseConv2DOptionsT()
    opt.padding = fb.Padding.VALID
    opt.strideH, opt.strideW = (int(v) for v in op.attrs["stride"])
    opt.depthMultiplier = 1
    opt.dilationHFactor = opt.dilationWFactor = 1
    opt.fusedActivationFunction = w.act(op)
    w.operator("DEPTHWISE_CONV_2D", [w.activation(op.inputs[0]), wi, bi], [w.activation(op.output)],
               opt, "DepthwiseConv2DOptions")
    w.pools_as_depthwise.append(op.name)


def _pool_weight_scale(op, w, s_in, s_out, n, sums, want, zp_out, search: int = 512) -> np.float32:
    base = np.float32(1.0) / np.float32(n)
    up = down = base
    candidates = [base]  # float32 values nearest 1/n first, alternating above and below
    for _ in range(search):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        candidates += [up, down]
    for s_w in candidates:
        m, s = w.conv_params(s_in, [s_w], s_out)
        got = np.clip(intparams.requantize(sums, m[0], s[0], "double") + zp_out, op.act_min, op.act_max)
        if np.array_equal(got, want):
            return np.float32(s_w)
    raise Esc2cError(f"layer '{op.name}': no float32 weight scale near 1/{n} reproduces this average pool's "
                     f"requantization exactly in TFLite")


OP = AvgPool()
