"""Integer parameters of every op, all from esc2c.quant.intparams (the one place for integer maths): the
output clamp here, the rest by each op kind's ``qparams`` (esc2c/compiler/ops/)."""
from __future__ import annotations

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph
from esc2c.quant import intparams


def qparams(g: Graph) -> Graph:
    for op in g.ops:
        out = g.tensors[op.output]
        lo, hi = op.act if op.act is not None else (None, None)
        op.act_min, op.act_max = intparams.clip_range(out.scale, out.zero_point, lo, hi)
        ops.get(op.kind).qparams(op, g)
    return g
