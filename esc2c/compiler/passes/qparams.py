"""Integer parameters of every op, all from esc2c.quant.intparams (the tflite contract) or
esc2c.quant.ortparams (the onnxruntime contract), the one place for each contract's maths: the output clamp
here, the rest by each op kind's ``qparams`` (esc2c/compiler/ops/), which reads ``g.contract``."""
from __future__ import annotations

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph
from esc2c.contract import ONNXRUNTIME
from esc2c.errors import Esc2cError
from esc2c.quant import intparams


def qparams(g: Graph) -> Graph:
    for op in g.ops:
        if g.contract not in ops.get(op.kind).contracts:
            raise Esc2cError(f"layer '{op.name}' ({op.kind}): no kernel computes it under the {g.contract} contract "
                             f"(choose another with esc2c emit --contract)")
        if g.contract == ONNXRUNTIME and op.attrs.get("folded_add"):
            raise Esc2cError(f"node '{op.attrs['folded_add']}': a constant Add after the quantized output of "
                             f"'{op.name}' was folded into its bias; onnxruntime computes the two separately "
                             f"(its QLinearAdd with a constant input), which the onnxruntime contract does not "
                             f"reproduce: use a Gemm with its bias, or esc2c emit --contract tflite")
        out = g.tensors[op.output]
        lo, hi = op.act if op.act is not None else (None, None)
        op.act_min, op.act_max = intparams.clip_range(out.scale, out.zero_point, lo, hi)
        ops.get(op.kind).qparams(op, g)
    return g
