"""The integer IR every back end of the compiler consumes (C/CMSIS-NN, integer-only ONNX, .tflite).

A :class:`Graph` is a list of :class:`Op` in execution order over named int8 :class:`Tensor` s.
The importer (``compiler/importer``: fold_qdq turns QDQ pairs into int8 tensors with (scale, zero_point),
int8 per-channel weights and int32 bias) builds it from a QDQ ONNX model in the ONNX layout (NCHW, weights
OIHW); the passes (``compiler/passes``, run by run_passes) then rewrite it in place:

  fuse_activation Relu/Clip ops folded into the producing op's clamp (``Op.act``)
  layout_nhwc     activations to NHWC, conv weights OIHW -> OHWI (depthwise: 1HWC), FC columns after a
                  flatten reordered from CHW to HWC order
  qparams         integer parameters from esc2c.quant.intparams (multiplier/shift, act_min/max, add params)
  kernel_select   the C function for each op and its scratch-buffer size
  fit_flash       (with a flash budget: emit --board) the fast kernel's int8-weight entry point for the
                  layers that must give back its int16 weights
  fuse_conv_pool  conv -> pool pairs into one band-wise ``conv_pool`` op (optional: ``run_passes(fuse=...)``)
  memplan         arena offsets for every activation tensor and the scratch buffer

After all passes, every op carries everything an executor needs; nothing is recomputed downstream.

Op kinds (``Op.kind``) are the modules of esc2c/compiler/ops/ (the registry, ``ops.REGISTRY``): conv,
depthwise_conv, fully_connected, max_pool, avg_pool, add, requantize, reshape, relu, conv_pool, pad, abs. Each
module's docstring gives the fields its ops carry (after all passes; shapes NHWC, N = 1), and the module
is everything the compiler knows about the kind. This module does not import the registry; ``ops.get``
rejects an unknown kind.

Common fields: ``act`` (fused activation as a real-valued range, e.g. relu = (0, inf)), turned into the
int8 clamp ``act_min``/``act_max`` by qparams; ``kernel`` (C function) and ``scratch`` (bytes) by
kernel_select; ``macs``; ``attrs['scratch_offset']``, ``attrs['in_place']`` (the input whose bytes the
output reuses) and ``attrs['overlap']`` ((input, gap): the output starts gap bytes before that input and
overwrites only bytes the kernel has already consumed) by memplan.

Tensor fields: name, shape, scale, zero_point; ``offset`` (arena byte offset) after memplan;
``is_input``/``is_output``.

The IR serialises to JSON (``Graph.to_json``) without the weight arrays' bytes (their shapes, hashes and
integer parameters are included), for inspection as ``model.ir.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esc2c.contract import TFLITE


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    is_input: bool = False
    is_output: bool = False
    offset: int | None = None  # arena byte offset, set by memplan
    alias_of: str | None = None  # a reshape view: shares the bytes of this tensor

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Op:
    name: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: np.ndarray | None = None  # int8
    weight_scales: np.ndarray | None = None  # float64, per output channel
    bias: np.ndarray | None = None  # int32
    act: tuple[float, float] | None = None  # fused activation as a real range (relu: (0, inf)); None = none
    # integer parameters (qparams pass)
    multiplier: np.ndarray | None = None  # int32 (tflite contract) or float32 scales (onnxruntime contract)
    shift: np.ndarray | None = None  # int32
    act_min: int = -128
    act_max: int = 127
    add: dict | None = None
    avg_mult: np.ndarray | None = None  # int32, indexed by the pooling count (index 0 unused)
    avg_shift: np.ndarray | None = None
    # kernel selection
    kernel: str | None = None
    scratch: int = 0
    macs: int = 0

    @property
    def output(self) -> str:
        return self.outputs[0]


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    ops: list[Op]
    inputs: list[str]
    outputs: list[str]
    layout: str = "NCHW"
    metadata: dict[str, str] = field(default_factory=dict)
    arena_size: int | None = None  # memplan
    scratch_offset: int | None = None
    scratch_size: int = 0
    plan_stats: dict[str, int] = field(default_factory=dict)
    # the integer contract the parameters follow (contract.CONTRACTS; set by run_passes before qparams)
    contract: str = TFLITE

    # ---------- queries ----------
    def producer(self, tensor: str) -> Op | None:
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def layer_ops(self) -> list[Op]:
        """Ops that run code (reshape views are free and are not layers)."""
        return [op for op in self.ops if op.kind != "reshape"]

    def weight_bytes(self) -> int:
        n = 0
        for op in self.ops:
            if op.weights is not None:
                n += op.weights.size
            if op.bias is not None:
                n += 4 * op.bias.size
            if op.multiplier is not None:
                n += 8 * op.multiplier.size
            if op.avg_mult is not None:
                n += 8 * op.avg_mult.size
        return n

    def check(self) -> None:
        """Structural invariants: every op input is defined before use, names unique."""
        defined = set(self.inputs)
        for op in self.ops:
            for t in op.inputs:
                if t not in defined:
                    raise ValueError(f"op {op.name}: input {t} used before it is produced")
                if t not in self.tensors:
                    raise ValueError(f"op {op.name}: unknown tensor {t}")
            for t in op.outputs:
                if t in defined:
                    raise ValueError(f"op {op.name}: tensor {t} produced twice")
                defined.add(t)
        for t in self.outputs:
            if t not in defined:
                raise ValueError(f"graph output {t} is never produced")

    # ---------- serialisation ----------
    def to_dict(self) -> dict:
        def arr(a):
            if a is None:
                return None
            a = np.asarray(a)
            if a.size <= 64 and a.dtype.kind in "iu":
                return a.tolist()
            return {"shape": list(a.shape), "dtype": str(a.dtype),
                    "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}

        ops = []
        for op in self.ops:
            d = {"name": op.name, "kind": op.kind, "inputs": op.inputs, "outputs": op.outputs,
                 "attrs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in op.attrs.items()},
                 "act_min": op.act_min, "act_max": op.act_max, "kernel": op.kernel, "scratch": op.scratch,
                 "macs": op.macs}
            for k in ("weights", "bias", "multiplier", "shift", "avg_mult", "avg_shift"):
                v = getattr(op, k)
                if v is not None:
                    d[k] = arr(v)
            if op.add is not None:
                d["add"] = op.add
            ops.append(d)
        return {
            "layout": self.layout, "contract": self.contract, "inputs": self.inputs, "outputs": self.outputs,
            "metadata": self.metadata,
            "arena_size": self.arena_size, "scratch_offset": self.scratch_offset,
            "scratch_size": self.scratch_size, "plan_stats": self.plan_stats,
            "tensors": {n: dataclasses.asdict(t) | {"shape": list(t.shape)} for n, t in self.tensors.items()},
            "ops": ops,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)
