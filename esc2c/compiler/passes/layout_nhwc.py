"""ONNX layout (NCHW, OIHW) to the CMSIS-NN layout (NHWC; conv weights OHWI, depthwise 1HWC).

Every tensor shape becomes NHWC; each op kind's ``to_nhwc`` moves its weights (and, for a flatten of a
spatial tensor, the columns of the fully connected layer reading it: ops/reshape.py).
"""
from __future__ import annotations

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph


def _nhwc(shape):
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def layout_nhwc(g: Graph) -> Graph:
    if g.layout == "NHWC":
        return g
    nchw = {n: t.shape for n, t in g.tensors.items()}
    for op in g.ops:
        ops.get(op.kind).to_nhwc(op, g, nchw)
    for t in g.tensors.values():
        t.shape = _nhwc(t.shape)
    g.layout = "NHWC"
    return g
