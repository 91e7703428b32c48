"""Integer parameters of every op, all from esc2c.quant.intparams (the one place for integer maths)."""
from __future__ import annotations

import math

import numpy as np

from esc2c.compiler.ir import Graph
from esc2c.quant import intparams


def qparams(g: Graph) -> Graph:
    for op in g.ops:
        out = g.tensors[op.output]
        x = g.tensors[op.inputs[0]]
        lo, hi = op.act if op.act is not None else (None, None)
        op.act_min, op.act_max = intparams.clip_range(out.scale, out.zero_point, lo, hi)
        if op.kind in ("conv", "depthwise_conv", "fully_connected"):
            m, s = intparams.conv_requant(x.scale, op.weight_scales, out.scale)
            op.multiplier, op.shift = m.astype(np.int32), s.astype(np.int32)
            op.attrs["per_tensor"] = bool(np.all(m == m[0]) and np.all(s == s[0]))
        elif op.kind == "avg_pool":
            same = math.isclose(x.scale, out.scale, rel_tol=1e-9) and x.zero_point == out.zero_point
            op.attrs["rescale"] = not same
            if not same:
                kh, kw = op.attrs["kernel"]
                op.avg_mult, op.avg_shift = intparams.avgpool_rescale_table(x.scale, out.scale, kh * kw)
        elif op.kind == "max_pool":
            if not (math.isclose(x.scale, out.scale, rel_tol=1e-9) and x.zero_point == out.zero_point):
                raise ValueError(f"max pool {op.name}: input and output quantization differ")
        elif op.kind == "add":
            b = g.tensors[op.inputs[1]]
            op.add = intparams.add_params(x.scale, b.scale, out.scale)
        elif op.kind == "requantize":
            m, s = intparams.rescale_params(x.scale, out.scale)
            op.multiplier = np.array([m], np.int32)
            op.shift = np.array([s], np.int32)
    return g
