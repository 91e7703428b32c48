"""Fold standalone activation ops (relu: ONNX Relu/Clip) into the op producing their input (its output clamp).

An activation whose input is used only by it, produced by an op whose kind takes a clamp
(``OpKind.takes_activation``: conv, depthwise, fully connected, add, average pool, requantize; a max pool
keeps in == out quantization, so it takes one only when the activation does not rescale), disappears: the
producer writes the activation's output tensor directly (its scale and zero point) and clamps to its range.
Any activation left over runs on its own (``OpKind.standalone``: a requantize op with a clamp).
"""
from __future__ import annotations

import math

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph


def _intersect(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (max(a[0], b[0]), min(a[1], b[1]))


def fuse_activation(g: Graph) -> Graph:
    for relu in [op for op in g.ops if ops.get(op.kind).activation]:
        src = relu.inputs[0]
        prod = g.producer(src)
        t_in, t_out = g.tensors[src], g.tensors[relu.output]
        same_q = math.isclose(t_in.scale, t_out.scale, rel_tol=1e-9) and t_in.zero_point == t_out.zero_point
        ok = (prod is not None and ops.get(prod.kind).takes_activation(prod, rescales=not same_q)
              and len(g.consumers(src)) == 1 and src not in g.outputs)
        if ok:
            prod.outputs = [relu.output]
            prod.act = _intersect(prod.act, relu.act)
            g.ops.remove(relu)
            del g.tensors[src]
        else:
            ops.get(relu.kind).standalone(relu)
    g.check()
    return g
