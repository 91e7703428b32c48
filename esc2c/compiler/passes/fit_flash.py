"""Per-layer weight width against the board's flash (after kernel_select, before fuse_conv_pool).

The project's fast convolution reads int16 weights (2 bytes per weight in flash), its fastest form; its
int8-weight entry point (esc2c_conv_fast_s8_w8) reads half the bytes for 1.5 more instructions per 12 MACs
(SXTB16 widening). When the model's constants with the widened weights exceed ``budget`` bytes, layers
switch to int8 weights one at a time, those giving the fewest MACs per byte saved first (the least speed
per byte of flash), until the constants fit or no layer is left to narrow. Each narrowed op records the
flash it saved in ``attrs['narrowed_for_flash']`` (bytes); emit reports them.
A model that does not fit even with int8 weights everywhere is left for emit's board check to refuse.
"""
from __future__ import annotations

from esc2c.compiler import footprint, ops
from esc2c.compiler.ir import Graph


def constant_bytes(g: Graph) -> int:
    """Flash of the model's constants with each op's chosen kernel (widened weights included)."""
    return g.weight_bytes() + sum(ops.get(op.kind).wide_weight_bytes(op) for op in g.ops)


def fit_flash(g: Graph, budget: int | None) -> Graph:
    """``budget``: flash for the constants and any code beyond footprint.CODE_BYTES that the kernel choice
    links (footprint.extra_code_bytes: mixing weight widths links both dot loops, so the first layers
    narrowed must save more than that code costs, or more layers narrow)."""
    if budget is None:
        return g
    need = constant_bytes(g)
    wide = [op for op in g.ops if ops.get(op.kind).narrow_saving(op) > 0]
    wide.sort(key=lambda op: (op.macs / ops.get(op.kind).narrow_saving(op), op.name))
    for op in wide:
        if need + footprint.extra_code_bytes(g) <= budget:
            break
        saved = ops.get(op.kind).narrow_saving(op)
        ops.get(op.kind).narrow_weights(op, g)
        op.attrs["narrowed_for_flash"] = saved
        need -= saved
    return g
