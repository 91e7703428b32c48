"""``reshape``: a view (ONNX Flatten/Reshape): the output aliases the input's bytes (a flatten of NHWC
data, or a no-op). Not a layer: no C code, no kernel.

A flatten of a spatial tensor reads NHWC bytes in H, W, C order, so the layout hook permutes the columns
of the fully connected weights after it from ONNX's C, H, W order; any other reader is an error.
"""
from __future__ import annotations

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops import fully_connected as fc
from esc2c.compiler.ops import requantize
from esc2c.compiler.ops.base import NO_SCRATCH, OpKind, Region
from esc2c.contract import ONNXRUNTIME, TFLITE
from esc2c.errors import Esc2cError

KIND = "reshape"


class Reshape(OpKind):
    kind = KIND
    contracts = (TFLITE, ONNXRUNTIME)
    onnx_anchors = ("Flatten", "Reshape")
    onnx_views = ("Flatten", "Reshape")
    view = True

    def from_onnx(self, imp, r: Region) -> None:
        """Flatten/Reshape -> Q: a view, and a requantize after it when the quantization changes."""
        n = r.node
        src = imp.act_input(n.input[0], n)
        st = imp.tensors[src]
        if abs(st.scale - r.s_out) <= 1e-9 * r.s_out and st.zero_point == r.zp_out and r.act is None:
            imp.new_tensor(r.y, r.out_shape, r.s_out, r.zp_out)
            imp.ops.append(Op(imp.op_name(n), KIND, [src], [r.y]))
            return
        mid = imp.new_tensor(f"{r.y}__view", r.out_shape, st.scale, st.zero_point)
        imp.ops.append(Op(imp.op_name(n), KIND, [src], [mid]))
        requantize.rescale(imp, r, mid)

    def view_from_onnx(self, imp, node, src: str, name: str) -> None:
        """DQ -> Flatten/Reshape -> (Gemm/MatMul): the view of the dequantized tensor ``src``."""
        if name not in imp.tensors:
            t = imp.tensors[src]
            imp.new_tensor(name, imp.shape(name, node), t.scale, t.zero_point)
            imp.ops.append(Op(imp.op_name(node), KIND, [src], [name]))

    def to_nhwc(self, op: Op, g: Graph, nchw: dict) -> None:
        src = nchw[op.inputs[0]]
        spatial = len(src) == 4 and src[2] * src[3] > 1 and src[1] > 1
        if not spatial:
            return
        users = g.consumers(op.output)
        if op.output in g.outputs or any(u.kind != fc.KIND for u in users):
            raise Esc2cError(f"reshape '{op.name}' flattens a spatial tensor {src} that is not fed to a "
                             f"fully connected layer; its NHWC byte order would differ from ONNX's")
        for u in users:
            fc.permute_columns_hwc(u, src[1], src[2], src[3])

    def select_kernel(self, op: Op, g: Graph, options: dict):
        return None, dict(NO_SCRATCH)

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        B.node("Reshape", [op.inputs[0], B.const(list(g.tensors[op.output].shape), np.int64, "shape")], op.output)

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        fb = w.fb
        shape = np.array(g.tensors[op.output].shape, np.int32)
        si = w.const(f"{op.name}/shape", shape, fb.TensorType.INT32)
        opt = fb.ReshapeOptionsT()
        opt.newShape = [int(d) for d in shape]
        w.operator("RESHAPE", [w.activation(op.inputs[0]), si], [w.activation(op.output)], opt, "ReshapeOptions")


OP = Reshape()
