"""What an IR op kind tells the compiler: the hooks of :class:`OpKind`, each with a default.

One module per kind (esc2c/compiler/ops/<kind>.py) defines a subclass and one instance of it named ``OP``;
the registry (ops/__init__.py) finds it there. The generic code -- importer, passes, emission, the integer
ONNX and .tflite writers, the cost model -- asks ``ops.get(op.kind)`` and never branches on kinds or
kernel names. The hooks, in the order the compiler calls them:

  import      ``onnx_anchors``: the ONNX op types whose quantized region becomes this kind;
              ``from_onnx(imp, region)`` builds the IR op (importer/fold_qdq.py: ``imp`` is the folder,
              ``region`` a :class:`Region`); ``onnx_views``/``view_from_onnx`` for the Flatten/Reshape
              between a DequantizeLinear and its reader; ``folds_const_add``: a constant Add after it joins
              its int32 bias
  fuse_activation  ``activation``: a standalone clamp (relu) folded into its producer, or made standalone
              by ``standalone(op)``; ``takes_activation(op, rescales)``: whether the kind takes it
  layout      ``to_nhwc(op, g, nchw)``: weights and neighbours to the NHWC layout (``nchw``: old shapes)
  qparams     ``contracts``: the integer contracts the kind supports; ``qparams(op, g)``: its parameters
              under ``g.contract``, from esc2c.quant.intparams or .ortparams (the clamp is generic)
  kernels     ``select_kernel(op, g, options)`` -> (C function, scratch bytes by code path {"dsp", "host"});
              ``macs(op, g)``; ``wide_weight_bytes(op)`` (flash its kernel spends beyond int8 weights),
              ``narrow_saving(op)`` and ``narrow_weights(op, g)`` (switch to a kernel that reads int8
              weights, saving that many bytes: the fit_flash pass)
  memory      ``view`` (the output aliases the input's bytes); ``in_place_inputs(op)`` (inputs whose buffer
              the output may take when they die here); ``raster_ordered(op, g)`` and ``overlap_gap(op, g)``
              (the output may start that many bytes before a dying input); ``hidden_tensor_bytes(op)``
  C           ``template(op)``: the C template (templates/ops/...) included by model.c.j2;
              ``c_context(op, g, L, array)``: what it needs beside the common layer fields in ``L``
  references  ``params_ready(op)``; ``lower_onnx(op, g, B)`` (lower_onnx._Builder);
              ``lower_tflite(op, g, w)`` (tflite_writer._Writer); ``cost_counts(op, g, f)`` (costmodel)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.contract import TFLITE
from esc2c.errors import Esc2cError

NO_SCRATCH = {"dsp": 0, "host": 0}


@dataclass
class Region:
    """One quantized ONNX region (importer/fold_qdq.py): its anchor node and the QuantizeLinear closing it."""
    node: object  # onnx.NodeProto: the anchor
    y: str  # the int8 IR tensor it defines (the QuantizeLinear output)
    out_shape: tuple
    s_out: float
    zp_out: int
    act: tuple | None  # Relu/Clip nodes between the anchor and the QuantizeLinear, as a real range
    chain: list  # those Relu/Clip nodes, last first
    qnode: object  # the QuantizeLinear
    bias_name: str | None = None  # MatMul + Add(constant): the constant


class OpKind:
    kind: str = ""
    # the integer contracts (contract.CONTRACTS) this kind has parameters and kernels for
    contracts: tuple[str, ...] = (TFLITE,)
    onnx_anchors: tuple[str, ...] = ()
    onnx_views: tuple[str, ...] = ()
    folds_const_add = False
    activation = False
    view = False

    # ---- import
    def from_onnx(self, imp, r: Region) -> None:
        raise imp.err(r.node, f"no import for op kind {self.kind}")

    def view_from_onnx(self, imp, node, src: str, name: str) -> None:
        raise imp.err(node, f"op kind {self.kind} is not a view")

    # ---- fuse_activation
    def takes_activation(self, op: Op, rescales: bool) -> bool:
        return False

    def standalone(self, op: Op) -> None:
        """An activation op that could not be fused: rewrite it as an op that runs on its own."""

    # ---- layout, integer parameters, kernels
    def to_nhwc(self, op: Op, g: Graph, nchw: dict) -> None:
        pass

    def qparams(self, op: Op, g: Graph) -> None:
        pass

    def select_kernel(self, op: Op, g: Graph, options: dict) -> tuple[str | None, dict[str, int]]:
        raise ValueError(f"no kernel for op kind {op.kind} ({op.name})")

    def macs(self, op: Op, g: Graph) -> int:
        return 0

    def wide_weight_bytes(self, op: Op) -> int:
        return 0

    def narrow_saving(self, op: Op) -> int:
        """Flash ``narrow_weights`` would save (0: nothing to narrow)."""
        return 0

    def narrow_weights(self, op: Op, g: Graph) -> None:
        raise ValueError(f"op kind {op.kind} ({op.name}) has no int8-weight kernel to switch to")

    # ---- memory plan
    def in_place_inputs(self, op: Op) -> list[str]:
        return []

    def raster_ordered(self, op: Op, g: Graph) -> bool:
        return False

    def overlap_gap(self, op: Op, g: Graph) -> int:
        return pixel_overlap_gap(op, g)

    def hidden_tensor_bytes(self, op: Op) -> int:
        return 0

    # ---- C
    def template(self, op: Op) -> str:
        return f"ops/{self.kind}.c.j2"

    def c_context(self, op: Op, g: Graph, L: dict, array) -> None:
        pass

    # ---- reference back ends and cost model
    def params_ready(self, op: Op) -> bool:
        return True

    def lower_onnx(self, op: Op, g: Graph, B) -> None:
        raise ValueError(f"cannot lower op kind {op.kind}")

    def lower_tflite(self, op: Op, g: Graph, w) -> None:
        raise Esc2cError(f"layer '{op.name}': op kind {op.kind} has no TFLite form")

    def cost_counts(self, op: Op, g: Graph, f: dict) -> None:
        raise ValueError(f"cost model: no counts for op kind {op.kind} ({op.name})")


# ---------------------------------------------------------------- helpers shared by several kinds
def hwc(shape) -> tuple[int, int, int]:
    """(H, W, C) of an NHWC tensor; a flat [1, K] tensor is 1 x 1 x K."""
    if len(shape) == 4:
        return int(shape[1]), int(shape[2]), int(shape[3])
    return 1, 1, int(np.prod(shape[1:]))


def count(f: dict, key: str, v: float) -> None:
    """Add to a cost-model count."""
    f[key] = f.get(key, 0.0) + float(v)


def same_qparams(a, b) -> bool:
    """Two tensors share scale (to 1e-9 relative) and zero point."""
    return math.isclose(a.scale, b.scale, rel_tol=1e-9) and a.zero_point == b.zero_point


def end_pads(in_hw, out_hw, kernel, stride, pads) -> tuple[int, int, int, int]:
    """(top, left, bottom, right): leading pads from the IR, trailing ones as many as the output size needs
    (ceil mode included)."""
    t, l = int(pads[0]), int(pads[1])
    b = max(0, (out_hw[0] - 1) * stride[0] + kernel[0] - in_hw[0] - t)
    r = max(0, (out_hw[1] - 1) * stride[1] + kernel[1] - in_hw[1] - l)
    return t, l, b, r


def pixel_overlap_gap(op: Op, g: Graph) -> int:
    """Smallest g (bytes) such that a kernel reading and writing pixels in raster order may write its output
    starting g bytes before its input (memplan.py's module doc): for every output pixel q, the output bytes of
    pixels 0..q end at or before the first input byte pixel q reads."""
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    _, h, w, ci = x.shape
    _, oh, ow, co = y.shape
    sh, sw = op.attrs["stride"]
    pt, pl = op.attrs["pads"][:2]
    q = np.arange(oh * ow, dtype=np.int64)
    row0 = np.maximum((q // ow) * sh - pt, 0)
    col0 = np.maximum((q % ow) * sw - pl, 0)
    first = row0 * w + col0
    return int(np.max((q + 1) * co - ci * first))


def f32(x) -> np.ndarray:
    """As float32: the precision of the scales in a .tflite."""
    return np.asarray(x, dtype=np.float32)


def c_float(x) -> str:
    """A float32 value as an exact C hexadecimal float literal (e.g. 0x1.8p-3f)."""
    return float(np.float32(x)).hex() + "f"
