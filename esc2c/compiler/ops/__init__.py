"""The op registry: every IR op kind, one module each (TFLite Micro style).

A module of this package that defines ``OP`` (an :class:`~esc2c.compiler.ops.base.OpKind`) registers its
kind; the other modules (base, convlike, pooling, conv_fast, conv_small) are helpers. Adding a kind is adding its
module and its C template (templates/ops/); nothing else in the compiler names kinds. Op modules import
base, their helpers, sibling op modules, compiler/ir.py and esc2c.quant -- never this package's __init__
or the generic compiler (passes, emit, the writers), so registration has no import cycle.
"""
from __future__ import annotations

import importlib
import pkgutil

from esc2c.compiler.ops.base import OpKind, Region

__all__ = ["OP_KINDS", "REGISTRY", "OpKind", "Region", "activation_onnx_ops", "get", "onnx_anchor", "onnx_ops",
           "onnx_view"]


def _discover() -> dict[str, OpKind]:
    found: dict[str, OpKind] = {}
    for info in pkgutil.iter_modules(__path__):
        op = getattr(importlib.import_module(f"{__name__}.{info.name}"), "OP", None)
        if op is None:
            continue
        if not isinstance(op, OpKind) or not op.kind:
            raise TypeError(f"{__name__}.{info.name}.OP must be an OpKind with a kind name")
        if op.kind in found:
            raise TypeError(f"op kind {op.kind!r} is registered twice ({__name__}.{info.name})")
        found[op.kind] = op
    return found


def _by_onnx(attr: str) -> dict[str, OpKind]:
    table: dict[str, OpKind] = {}
    for op in REGISTRY.values():
        for t in getattr(op, attr):
            if t in table:
                raise TypeError(f"ONNX op {t} is claimed by op kinds {table[t].kind} and {op.kind} ({attr})")
            table[t] = op
    return table


REGISTRY: dict[str, OpKind] = _discover()
OP_KINDS: tuple[str, ...] = tuple(REGISTRY)
_ANCHORS = _by_onnx("onnx_anchors")
_VIEWS = _by_onnx("onnx_views")


def get(kind: str) -> OpKind:
    """The op kind named ``kind``; an unknown name is a ValueError naming it and the known kinds."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown op kind {kind!r}; known kinds: {', '.join(REGISTRY)}") from None


def onnx_anchor(op_type: str) -> OpKind | None:
    """The kind whose quantized region an ONNX node of this type anchors (importer/fold_qdq.py)."""
    return _ANCHORS.get(op_type)


def onnx_view(op_type: str) -> OpKind | None:
    """The view kind an ONNX node of this type between a DequantizeLinear and its reader becomes."""
    return _VIEWS.get(op_type)


def onnx_ops() -> tuple[str, ...]:
    """Every ONNX op type some kind imports."""
    return tuple(dict.fromkeys([*_ANCHORS, *_VIEWS]))


def activation_onnx_ops() -> tuple[str, ...]:
    """The ONNX activations (Relu, Clip) folded into the region they close."""
    return tuple(t for t, op in _ANCHORS.items() if op.activation)
