"""Compiler passes, one small module each, run in this order by :func:`run_passes`."""
from __future__ import annotations

from esc2c.compiler.ir import Graph
from esc2c.compiler.passes.conv_fast import DEFAULT_KERNELS
from esc2c.compiler.passes.fuse_activation import fuse_activation
from esc2c.compiler.passes.kernel_select import kernel_select
from esc2c.compiler.passes.layout_nhwc import layout_nhwc
from esc2c.compiler.passes.memplan import memplan
from esc2c.compiler.passes.qparams import qparams

PIPELINE = (fuse_activation, layout_nhwc, qparams, kernel_select, memplan)


def run_passes(g: Graph, kernels: str = DEFAULT_KERNELS) -> Graph:
    """``kernels``: convolution kernel choice of :func:`kernel_select` ("fast" or "cmsis")."""
    for p in PIPELINE:
        g = p(g, kernels) if p is kernel_select else p(g)
    return g
