"""``depthwise_conv``: a convolution with one input channel per group (ONNX Conv, group == C_in; imported by
ops/conv.py), run by CMSIS-NN's arm_depthwise_conv_wrapper_s8, or the runtime's esc2c_group_conv_s8 under the
onnxruntime contract.

Fields: as ``conv``, weights int8 [1, KH, KW, C_out] (1HWC; ONNX's OIHW until layout_nhwc); attrs also
ch_mult (C_out / C_in).
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import convlike
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, hwc, count
from esc2c.contract import ONNXRUNTIME, TFLITE

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
    contracts = (TFLITE, ONNXRUNTIME)

    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return True

    def to_nhwc(self, op: Op, g: Graph, nchw: dict) -> None:
        op.weights = np.ascontiguousarray(op.weights.transpose(1, 2, 3, 0))

    def qparams(self, op: Op, g: Graph) -> None:
        convlike.requant_params(op, g)

    def select_kernel(self, op: Op, g: Graph, options: dict):
        x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
        if g.contract == ONNXRUNTIME:  # the runtime's kernel, one group per input channel
            return convlike.GROUP_CONV, dict(NO_SCRATCH)
        return DW_CONV, dw_wrapper_buffer(x.shape, y.shape, op.attrs["kernel"])

    def template(self, op: Op) -> str:
        return "ops/group_conv.c.j2" if op.kernel == convlike.GROUP_CONV else "ops/depthwise_conv.c.j2"

    def macs(self, op: Op, g: Graph) -> int:
        kh, kw = op.attrs["kernel"]
        return g.tensors[op.output].size * kh * kw

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        if op.kernel == convlike.GROUP_CONV:  # [C_out, KH, KW, 1]: one input channel per group
            convlike.weight_arrays(op, L, array, np.ascontiguousarray(op.weights.transpose(3, 1, 2, 0)))
            L["group"] = g.tensors[op.inputs[0]].shape[3]
        else:
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
