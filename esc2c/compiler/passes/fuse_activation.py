"""Fold standalone Relu/Clip ops into the op producing their input (its output clamp).

A relu op whose input is used only by it, produced by a conv / depthwise / fully connected / add /
average pool / requantize op, disappears: the producer writes the relu's output tensor directly (its
scale and zero point) and clamps to the relu's range. A max pool keeps in == out quantization, so it
takes a relu only when the relu does not rescale. Any relu left over becomes a requantize op with a
clamp (rescale + clip), which the runtime executes.
"""
from __future__ import annotations

import math

from esc2c.compiler.ir import Graph

FUSABLE = ("conv", "depthwise_conv", "fully_connected", "add", "avg_pool", "requantize", "max_pool")


def _intersect(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (max(a[0], b[0]), min(a[1], b[1]))


def fuse_activation(g: Graph) -> Graph:
    for relu in [op for op in g.ops if op.kind == "relu"]:
        src = relu.inputs[0]
        prod = g.producer(src)
        t_in, t_out = g.tensors[src], g.tensors[relu.output]
        same_q = math.isclose(t_in.scale, t_out.scale, rel_tol=1e-9) and t_in.zero_point == t_out.zero_point
        ok = (prod is not None and prod.kind in FUSABLE and len(g.consumers(src)) == 1
              and src not in g.outputs and (prod.kind != "max_pool" or same_q))
        if ok:
            prod.outputs = [relu.output]
            prod.act = _intersect(prod.act, relu.act)
            g.ops.remove(relu)
            del g.tensors[src]
        else:
            relu.kind = "requantize"
    g.check()
    return g
