"""``depthwise_conv``: a convolution with one input channel per group (ONNX Conv, group == C_in; imported by
ops/conv.py), run by CMSIS-NN's arm_depthwise_conv_wrapper_s8.

Fields: as ``conv``, weights int8 [1, KH, KW, C_out] (1HWC; ONNX's OIHW until layout_nhwc); attrs also
ch_mult (C_out / C_in).
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import convlike
from esc2c.compiler.ops.base import OpKind, hwc, count

KIND = "depthwise_conv"
DW_CONV = "arm_depthwise_conv_wrapper_s8"


def dw_wrapper_buffer(in_shape, out_shape, kernel) -> dict[str, int]:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size (v4.0.0)."""
    c_in, c_out = in_shape[3], out_shape[3]
    kh, kw = kernel
    dsp = c_in * kw * kh * 2 if c_in == c_out else 0  # arm_depthwise_conv_s8_opt_get_buffer_size
    return {"dsp": dsp, "host": 0}


class DepthwiseConv(OpKind):
    kind = KIND

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def to_nhwc(self, op: Op, g: Graph, nchw: dict) -> None:
        op.weights = np.ascontiguousarray(op.weights.transpose(1, 2, 3, 0))

    def qparams(self, op: Op, g: Graph) -> None:
        convlike.requant_params(op, g)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        return DW_CONV, dw_wrapper_buffer(x.shape, y.shape, op.attrs["kernel"])

    def macs(self, op: Op, g: Graph) -> int:
        kh, kw = op.attrs["kernel"]
        return g.tensors[op.output].size * kh * kw

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        convlike.weight_arrays(op, L, array)
        convlike.requant_arrays(op, L, array)
        L["ch_mult"] = op.attrs.get("ch_mult", 1)

    def params_ready(self, op: Op) -> bool:
        return convlike.params_ready(op)

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        convlike.lower_onnx(op, g, B, op.weights.transpose(3, 0, 1, 2), g.tensors[op.inputs[0]].shape[3])

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        convlike.write_tflite(op, g, w, depthwise=True)

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        """MAC-bound like CMSIS-NN's convolution."""
        kh, kw = op.attrs["kernel"]
        oh, ow, oc = hwc(g.tensors[op.output].shape)
        count(f, "cmsis.mac", oh * ow * oc * kh * kw)
        count(f, "cmsis.out", oh * ow * oc)
        count(f, "cmsis.call", 1)


OP = DepthwiseConv()
