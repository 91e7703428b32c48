"""ONNX layout (NCHW, OIHW) to the CMSIS-NN layout (NHWC; conv weights OHWI, depthwise 1HWC).

A flatten of a spatial tensor reads NHWC bytes in H, W, C order, so the columns of the fully connected
weights after it are permuted from ONNX's C, H, W order to H, W, C order; the reshape itself stays a
free view of the same bytes.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph
from esc2c.errors import Esc2cError


def _nhwc(shape):
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def layout_nhwc(g: Graph) -> Graph:
    if g.layout == "NHWC":
        return g
    nchw = {n: t.shape for n, t in g.tensors.items()}
    for op in g.ops:
        if op.kind == "conv":
            op.weights = np.ascontiguousarray(op.weights.transpose(0, 2, 3, 1))
        elif op.kind == "depthwise_conv":
            op.weights = np.ascontiguousarray(op.weights.transpose(1, 2, 3, 0))
        elif op.kind == "reshape":
            src = nchw[op.inputs[0]]
            spatial = len(src) == 4 and src[2] * src[3] > 1 and src[1] > 1
            if not spatial:
                continue
            users = g.consumers(op.output)
            if op.output in g.outputs or any(u.kind != "fully_connected" for u in users):
                raise Esc2cError(f"reshape '{op.name}' flattens a spatial tensor {src} that is not fed to a "
                                 f"fully connected layer; its NHWC byte order would differ from ONNX's")
            for u in users:
                if not u.attrs.get("hwc_columns"):
                    c, h, w = src[1], src[2], src[3]
                    u.weights = np.ascontiguousarray(
                        u.weights.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(u.weights.shape[0], -1))
                    u.attrs["hwc_columns"] = True
    for t in g.tensors.values():
        t.shape = _nhwc(t.shape)
    g.layout = "NHWC"
    return g
