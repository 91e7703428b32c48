"""Compiler passes: Graph -> Graph rewrites, one small module each, run in this order by :func:`run_passes`,
which checks the graph's invariants after every pass and makes the one decision between passes (whether
the conv -> pool fusion pays for itself in arena bytes)."""
from __future__ import annotations

from typing import Callable

from esc2c.compiler.ir import Graph
from esc2c.compiler.options import CompileOptions
from esc2c.compiler.passes.fit_flash import fit_flash
from esc2c.compiler.passes.fuse_activation import fuse_activation
from esc2c.compiler.passes.fuse_conv_pool import fuse_conv_pool
from esc2c.compiler.passes.kernel_select import kernel_select
from esc2c.compiler.passes.layout_nhwc import layout_nhwc
from esc2c.compiler.passes.memplan import memplan
from esc2c.compiler.passes.qparams import qparams

Pass = Callable[[Graph, CompileOptions], Graph]

PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("fuse_activation", lambda g, o: fuse_activation(g)),
    ("layout_nhwc", lambda g, o: layout_nhwc(g)),
    ("qparams", lambda g, o: qparams(g)),
    ("kernel_select", lambda g, o: kernel_select(g, o.kernels)),
    ("fit_flash", lambda g, o: fit_flash(g, o.flash_budget)),
    ("fuse_conv_pool", lambda g, o: fuse_conv_pool(g, _fuse_decision(g, o.fuse))),
    ("memplan", lambda g, o: memplan(g)),
)


def _fuse_decision(g: Graph, mode: str) -> str:
    """"auto" -> "all" when the fused graph's memory plan is smaller than the unfused one's (a small
    model whose conv outputs are no larger than a band plus the buffers around it gains nothing), else
    "none". Both plans are trial runs: the memplan pass runs again on the graph that is kept."""
    if mode != "auto":
        return mode
    fused = fuse_conv_pool(g, "all")
    if len(fused.ops) == len(g.ops):
        return "none"
    return "all" if memplan(fused).arena_size < memplan(g).arena_size else "none"


def _check_after(name: str, g: Graph, contract: str) -> None:
    """The invariants every pass must leave: the structure (Graph.check), the contract, and what each pass
    promises to the ones after it."""
    g.check()
    if g.contract != contract:
        raise AssertionError(f"after {name}: contract {g.contract}, the compilation's is {contract}")
    if name == "layout_nhwc" and g.layout != "NHWC":
        raise AssertionError(f"after {name}: layout is {g.layout}")
    if name == "kernel_select":
        missing = [op.name for op in g.layer_ops() if not op.kernel]
        if missing:
            raise AssertionError(f"after {name}: no kernel for {', '.join(missing)}")
    if name == "memplan":
        unplaced = [t for t, v in g.tensors.items() if v.offset is None]
        if unplaced or g.arena_size is None:
            raise AssertionError(f"after {name}: no arena offset for {', '.join(unplaced) or 'the arena'}")


def run_passes(g: Graph, options: CompileOptions | None = None, **overrides) -> Graph:
    """Every pass in order. ``options`` (or keyword overrides: ``kernels=``, ``fuse=``) as CompileOptions."""
    opts = CompileOptions(**{**(options.to_dict() if options else {}), **overrides})
    g.contract = opts.contract
    for name, p in PIPELINE:
        g = p(g, opts)
        _check_after(name, g, opts.contract)
    return g
