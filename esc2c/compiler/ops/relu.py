"""``relu``: a standalone ONNX Relu/Clip between two quantized tensors. It exists only between the importer
and fuse_activation, which folds it into its producer's clamp (``Op.act``) or makes it a ``requantize``.

Fields: inputs [x]; ``act`` the clamp as a real range (relu: (0, inf)).
"""
from __future__ import annotations

from esc2c.compiler.ir import Op
from esc2c.compiler.ops import requantize
from esc2c.compiler.ops.base import OpKind, Region

KIND = "relu"


class Relu(OpKind):
    kind = KIND
    onnx_anchors = ("Relu", "Clip")
    activation = True

    def from_onnx(self, imp, r: Region) -> None:
        n = r.node
        src = imp.act_input(n.input[0], n)
        act = imp.act_range([n] + list(reversed(r.chain)))
        imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
        imp.ops.append(Op(imp.op_name(n), KIND, [src], [r.y], act=act))

    def standalone(self, op: Op) -> None:
        op.kind = requantize.KIND  # rescale + clamp


OP = Relu()
