"""What the weighted kinds (conv, depthwise_conv, fully_connected, conv_pool) share: per-channel
requantization parameters, their C arrays, the ConvInteger lowering, the .tflite convolution writer and the
cost-model counts of a convolution call. A helper module, not an op kind."""
from __future__ import annotations

import math

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import conv_fast, conv_small
from esc2c.compiler.ops.base import count, end_pads, f32
from esc2c.contract import ONNXRUNTIME
from esc2c.errors import Esc2cError
from esc2c.quant import intparams, ortparams


def requant_params(op: Op, g: Graph) -> None:
    """Per-channel requantization of s_in * s_w[c] / s_out: multiplier/shift (tflite contract) or
    QLinearConv's float32 scale with zero shifts (onnxruntime contract); ``per_tensor`` when all channels
    are equal."""
    x, out = g.tensors[op.inputs[0]], g.tensors[op.output]
    if g.contract == ONNXRUNTIME:
        m = ortparams.conv_scale(x.scale, op.weight_scales, out.scale)
        s = np.zeros(m.shape, np.int32)
    else:
        m, s = intparams.conv_requant(x.scale, op.weight_scales, out.scale)
        m = m.astype(np.int32)
    op.multiplier, op.shift = m, s.astype(np.int32)
    op.attrs["per_tensor"] = bool(np.all(m == m[0]) and np.all(s == s[0]))


def mult_ctype(values: np.ndarray) -> str:
    """The C type of a multiplier array: the runtime's esc2c_mult_t is float under the onnxruntime contract."""
    return "float" if np.issubdtype(np.asarray(values).dtype, np.floating) else "int32_t"


def params_ready(op: Op) -> bool:
    return op.multiplier is not None


def weight_arrays(op: Op, L: dict, array, weights: np.ndarray | None = None) -> None:
    """The weights (in the fast kernel's order, int16 or int8 by its entry point, when it runs the op, else
    int8; ``weights``: in the layout the kernel reads, when it is not the IR's) and the int32 bias."""
    i = L["index"]
    if op.kernel in conv_fast.KERNELS:
        w8 = op.kernel == conv_fast.FAST_CONV_W8
        L["weights"] = array(f"esc2c_w{i}", "int8_t" if w8 else "int16_t", conv_fast.pack_weights(op.weights, w8))
    else:
        L["weights"] = array(f"esc2c_w{i}", "int8_t", op.weights if weights is None else weights)
    L["bias"] = array(f"esc2c_b{i}", "int32_t", op.bias)


def requant_arrays(op: Op, L: dict, array) -> None:
    i = L["index"]
    L["mult"] = array(f"esc2c_m{i}", mult_ctype(op.multiplier), op.multiplier)
    L["shift"] = array(f"esc2c_s{i}", "int32_t", op.shift)


def lower_onnx(op: Op, g: Graph, B, w_oihw: np.ndarray, group: int) -> None:
    """ConvInteger on the zero-point padded NCHW input, + bias, requantized, + zero point, clamped."""
    x = op.inputs[0]
    xt, yt = g.tensors[x], g.tensors[op.output]
    kernel, stride = op.attrs["kernel"], op.attrs["stride"]
    pads = end_pads(xt.shape[1:3], yt.shape[1:3], kernel, stride, op.attrs["pads"])
    xp = B.pad(B.nchw(x), pads, xt.zero_point)
    acc = B.node("ConvInteger", [xp, B.const(w_oihw, np.int8, "w"), B.const(xt.zero_point, np.int8, "xzp")],
                 kernel_shape=list(kernel), strides=list(stride), group=group)
    acc = B.i64(B.nhwc(acc))
    acc = B.node("Add", [acc, B.const(op.bias.astype(np.int64), np.int64, "bias")])
    B.finish_s8(B.requant(acc, op.multiplier, op.shift), op, yt.zero_point, op.output)


GROUP_CONV = "esc2c_group_conv_s8"  # the runtime's grouped convolution (any groups; per-channel, both contracts)


def write_tflite(op: Op, g: Graph, w, depthwise: bool) -> None:
    """CONV_2D (weights OHWI, quantized dimension 0) or DEPTHWISE_CONV_2D (1HWC, dimension 3)."""
    fb = w.fb
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    xi, padding = w.padded_input(op, pad_with="zero_point")
    s_w = np.asarray(op.weight_scales, np.float64)
    w.check_requant(op, x.scale, s_w, y.scale, op.multiplier, op.shift)
    wq = w.quant(s_w, np.zeros(s_w.size, np.int64), 3 if depthwise else 0)
    wi = w.const(f"{op.name}/weights", np.asarray(op.weights, np.int8), fb.TensorType.INT8, wq)
    bq = w.quant(f32(x.scale).astype(np.float64) * f32(s_w), np.zeros(s_w.size, np.int64), 0)
    bi = w.const(f"{op.name}/bias", np.asarray(op.bias, np.int32), fb.TensorType.INT32, bq)
    sh, sw = op.attrs["stride"]
    if tuple(op.attrs.get("dilation", (1, 1))) != (1, 1):
        raise Esc2cError(f"layer '{op.name}': dilated convolutions are not written to TFLite")
    pad = getattr(fb.Padding, padding)
    if depthwise:
        opt = fb.DepthwiseConv2DOptionsT()
        opt.depthMultiplier = int(op.attrs.get("ch_mult", 1))
        code, otype = "DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions"
    else:
        opt = fb.Conv2DOptionsT()
        code, otype = "CONV_2D", "Conv2DOptions"
    opt.padding, opt.strideH, opt.strideW = pad, int(sh), int(sw)
    opt.dilationHFactor = opt.dilationWFactor = 1
    opt.fusedActivationFunction = w.act(op)
    w.operator(code, [xi, wi, bi], [w.activation(op.output)], opt, otype)


def conv_counts(f: dict, kernel: str, cin: int, cout: int, kh: int, kw: int, out_w: int,
                rows: list[int], pad_w: int) -> None:
    """Cost-model counts of a convolution computed as one call per entry of ``rows`` (output rows of that
    call), on the fast kernel or CMSIS-NN's (costmodel.py's module doc)."""
    if kernel == conv_small.SMALL_CONV:
        small_counts(f, cin, cout, kh, kw, sum(rows) * out_w, (1, 1))  # no pool: never the shared path
    elif kernel in conv_fast.KERNELS:
        kp = conv_fast.padded_taps(cin, kh, kw)
        pairs = (cout + 1) // 2
        for r in rows:
            p = r * out_w
            s = math.ceil(p / conv_fast.PIXELS)
            count(f, "fast.dot", s * pairs * kp)
            if kernel == conv_fast.FAST_CONV_W8:  # the straight run widens with paired loads, the chunked one not
                count(f, "fast8.dot" if kp // 2 <= conv_fast.DOT_LONG else "fast8.chunk", s * pairs * kp)
            count(f, "fast.pair", s * pairs)
            count(f, "fast.col", s * conv_fast.PIXELS * kp)
            edge = r * min(out_w, 2 * math.ceil(pad_w / 1)) if pad_w else 0
            count(f, "fast.edge", edge * kh * kw * cin)
            count(f, "fast.out", p * cout)
            count(f, "fast.step", s)
            count(f, "fast.table", cout)
            count(f, "fast.call", 1)
    else:
        k = cin * kh * kw
        for r in rows:
            p = r * out_w
            count(f, "cmsis.mac", p * cout * k)
            count(f, "cmsis.col", p * k)
            count(f, "cmsis.out", p * cout)
            count(f, "cmsis.pix", p)
            count(f, "cmsis.call", 1)


def small_counts(f: dict, cin: int, cout: int, kh: int, kw: int, n_out: int, pool: tuple[int, int],
                 stride: tuple[int, int] = (1, 1)) -> None:
    """Cost-model counts of one call of the small-tap kernel: n_out output (pooled) pixels, each a window of
    pool[0] x pool[1] conv pixels (costmodel.py's module doc). A 2x2 window of a stride-1 conv with 3 kernel
    rows of one quad each widens its shared input rows once and runs one asm loop per channel (the runtime's
    window_rows, max_dots_w6_p4_shared, and max_dots_k3c1_p4 for one input channel and a 3x3 kernel): those
    layers count windows x channels and windows instead (all their windows: the border ones are few)."""
    nw = conv_small.words(cin, kh, kw)
    win = pool[0] * pool[1]
    if tuple(pool) == (2, 2) and tuple(stride) == (1, 1) and kh == 3 and nw == 6:
        count(f, "small.k3c1" if (cin, kw) == (1, 3) else "small.shared", n_out * cout)
        count(f, "small.swin", n_out)
    else:
        count(f, "small.dot", n_out * win * cout * nw)
        count(f, "small.win", n_out * win * cout)
        count(f, "small.col", n_out * win * nw)
    count(f, "small.out", n_out * cout)
    count(f, "small.pix", n_out)
    count(f, "small.setup", cout * nw)
    count(f, "small.call", 1)
