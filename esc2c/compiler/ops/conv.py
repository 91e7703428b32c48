"""``conv``: a 2-D convolution, plain or grouped.

Fields (after all passes; NHWC): inputs [x]; ``weights`` int8 [C_out, KH, KW, C_in / group] (OHWI; ONNX's
OIHW until layout_nhwc); ``bias`` int32 [C_out]; attrs kernel (kh, kw), stride (sh, sw), pads (top, left,
bottom, right), dilation (1, 1), group; ``multiplier``/``shift`` int32 [C_out]; act_min/act_max.

Kernels: grouped (1 < group) -> the runtime's esc2c_group_conv_s8 (CMSIS-NN v4.0.0 has none); plain with
``kernels="fast"`` -> the project's esc2c_conv_small_s8 when each output has few taps (first layers,
ops/conv_small.py), else its esc2c_conv_fast_s8 (ops/conv_fast.py); otherwise CMSIS-NN's
arm_convolve_wrapper_s8, or esc2c_group_conv_s8 with one group under the onnxruntime contract. ONNX Conv
with group == C_in and one input channel per group imports as a ``depthwise_conv``.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import conv_fast, conv_small, convlike
from esc2c.compiler.ops import depthwise_conv as dw
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region, hwc
from esc2c.contract import ONNXRUNTIME, TFLITE

KIND = "conv"
CONV = "arm_convolve_wrapper_s8"
GROUP_CONV = convlike.GROUP_CONV
TEMPLATES = {CONV: "ops/conv.c.j2", conv_fast.FAST_CONV: "ops/conv_fast.c.j2",
             conv_fast.FAST_CONV_W8: "ops/conv_fast.c.j2", conv_small.SMALL_CONV: "ops/conv_small.c.j2",
             GROUP_CONV: "ops/group_conv.c.j2"}


def _conv_s8_buffer(c_in: int, kh: int, kw: int) -> int:
    """arm_convolve_s8_get_buffer_size, non-MVE (DSP and host alike): two int16 im2col columns.

    v4.0.0 uses rhs_cols = C_in * KH * KW; later upstream releases round rhs_cols up to a multiple of 4, so
    the larger of the two is reserved and the project also builds against a current upstream checkout."""
    rhs_cols = c_in * kw * kh
    return max(2 * rhs_cols * 2, 2 * ((rhs_cols + 3) // 4 * 4) * 2)


def conv_wrapper_buffer(in_shape, out_shape, kernel, stride, pads) -> dict[str, int]:
    """arm_convolve_wrapper_s8_get_buffer_size (v4.0.0) for the DSP and host paths."""
    _, ih, _, c_in = in_shape
    _, _, ow, _ = out_shape
    kh, kw = kernel
    pad_h, pad_w = pads[0], pads[1]  # CMSIS-NN takes the leading pads; trailing ones follow from shapes
    if pad_w == 0 and pad_h == 0 and kh == 1 and kw == 1:
        size = 0  # arm_convolve_1x1_s8_fast / arm_convolve_1x1_s8
    elif ih == 1 and ow % 4 == 0 and kh == 1:
        size = _conv_s8_buffer(c_in, kh, kw)  # arm_convolve_1_x_n_s8
    else:
        size = _conv_s8_buffer(c_in, kh, kw)
    return {"dsp": size, "host": size}


class Conv(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("Conv",)
    folds_const_add = True

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        x = imp.act_input(n.input[0], n)
        xt = imp.tensors[x]
        if len(xt.shape) != 4:
            raise imp.err(n, f"only 2-D convolutions on NCHW tensors are supported (input shape {xt.shape})")
        w, s_w = imp.weights(n.input[1], n, 0, 4)
        kernel = tuple(int(k) for k in w.shape[2:])
        strides, pads = imp.spatial(n, kernel)
        group = int(imp.m.attr(n, "group", 1))
        c_in = xt.shape[1]
        c_out = w.shape[0]
        if group == c_in and group > 1 and w.shape[1] == 1:
            kind = dw.KIND
        elif group >= 1 and c_in % group == 0 and c_out % group == 0 and w.shape[1] * group == c_in:
            kind = KIND
        else:
            raise imp.err(n, f"group={group} does not divide {c_in} input / {c_out} output channels")
        b = imp.bias(n.input[2] if len(n.input) > 2 else None, n, xt.scale, s_w)
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        attrs = {"kernel": kernel, "stride": strides, "pads": pads, "dilation": (1, 1), "group": group}
        if kind == dw.KIND:
            attrs["ch_mult"] = c_out // c_in
        imp.ops.append(Op(imp.op_name(n), kind, [x], [r.y], attrs=attrs, weights=w, weight_scales=s_w,
                          bias=b, act=r.act))

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def to_nhwc(self, op: Op, g: Graph, nchw: dict) -> None:
        op.weights = np.ascontiguousarray(op.weights.transpose(0, 2, 3, 1))

    def qparams(self, op: Op, g: Graph) -> None:
        convlike.requant_params(op, g)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        if op.attrs.get("group", 1) > 1:
            return GROUP_CONV, dict(NO_SCRATCH)
        if options["kernels"] == "fast" and conv_small.applies(op, x.shape[3]):
            kh, kw = op.attrs["kernel"]
            size = conv_small.buffer_size(x.shape[3], kh, kw, y.shape[3])
            return conv_small.SMALL_CONV, {"dsp": size, "host": size}
        if options["kernels"] == "fast" and conv_fast.applies(op):
            kh, kw = op.attrs["kernel"]
            size = conv_fast.buffer_size(x.shape[3], kh, kw)
            return conv_fast.FAST_CONV, {"dsp": size, "host": size}
        if g.contract == ONNXRUNTIME:  # CMSIS-NN requantizes in the other contract
            return GROUP_CONV, dict(NO_SCRATCH)
        return CONV, conv_wrapper_buffer(x.shape, y.shape, op.attrs["kernel"], op.attrs["stride"], op.attrs["pads"])

    def macs(self, op: Op, g: Graph) -> int:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        kh, kw = op.attrs["kernel"]
        return y.size * kh * kw * (x.shape[3] // op.attrs.get("group", 1))

    def wide_weight_bytes(self, op: Op) -> int:
        """The fast kernel's int16 weights cost their int8 size again (and its padding) in flash; its int8
        entry point, the padding."""
        return conv_fast.extra_bytes(op)

    def narrow_saving(self, op: Op) -> int:
        return conv_fast.narrow_saving(op)

    def narrow_weights(self, op: Op, g: Graph) -> None:
        """The fast kernel's int8-weight entry point (same scratch, same bits)."""
        if op.kernel != conv_fast.FAST_CONV:
            raise ValueError(f"{op.name}: only the fast kernel's int16 weights narrow (kernel {op.kernel})")
        op.kernel = conv_fast.FAST_CONV_W8

    def raster_ordered(self, op: Op, g: Graph) -> bool:
        if op.kernel in (GROUP_CONV, *conv_fast.KERNELS, conv_small.SMALL_CONV):
            return True
        if op.kernel == CONV:
            kh, kw = op.attrs["kernel"]
            x = g.tensors[op.inputs[0]]
            # the wrapper's 1x1 kernels loop over output channels outside pixels; 1xN ones batch channels
            return not (kh == 1 and kw == 1) and not (x.shape[1] == 1 and kh == 1)
        return False

    def template(self, op: Op) -> str:
        return TEMPLATES[op.kernel]

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        convlike.weight_arrays(op, L, array)
        convlike.requant_arrays(op, L, array)
        L["group"] = op.attrs.get("group", 1)
        if op.kernel == conv_small.SMALL_CONV:
            kh, kw = op.attrs["kernel"]
            L["small"] = {"fn": conv_small.function(g.tensors[op.inputs[0]].shape[3], kh, kw), "pool": (1, 1),
                          "act": (op.act_min, op.act_max)}

    def params_ready(self, op: Op) -> bool:
        return convlike.params_ready(op)

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        convlike.lower_onnx(op, g, B, op.weights.transpose(0, 3, 1, 2), op.attrs.get("group", 1))

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        convlike.write_tflite(op, g, w, depthwise=False)

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        kh, kw = op.attrs["kernel"]
        cin = hwc(g.tensors[op.inputs[0]].shape)[2]
        oh, ow, _ = hwc(g.tensors[op.output].shape)
        pad_w = max(op.attrs["pads"][1], op.attrs["pads"][3])
        convlike.conv_counts(f, op.kernel, cin, int(op.weights.shape[0]), kh, kw, ow, [oh], pad_w)


OP = Conv()
