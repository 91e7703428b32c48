"""Compiler passes, one small module each, run in this order by :func:`run_passes`."""
from __future__ import annotations

from esc2c.compiler.ir import Graph
from esc2c.compiler.passes.conv_fast import DEFAULT_KERNELS
from esc2c.compiler.passes.fuse_activation import fuse_activation
from esc2c.compiler.passes.fuse_conv_pool import DEFAULT_MODE, fuse_conv_pool
from esc2c.compiler.passes.kernel_select import kernel_select
from esc2c.compiler.passes.layout_nhwc import layout_nhwc
from esc2c.compiler.passes.memplan import memplan
from esc2c.compiler.passes.qparams import qparams

PIPELINE = (fuse_activation, layout_nhwc, qparams, kernel_select, fuse_conv_pool, memplan)


def run_passes(g: Graph, kernels: str = DEFAULT_KERNELS, fuse: str = DEFAULT_MODE) -> Graph:
    """``kernels``: convolution kernel choice of :func:`kernel_select` ("fast" or "cmsis"); ``fuse``: which
    conv -> pool pairs run band-wise (:func:`fuse_conv_pool`: "auto", "all" or "none")."""
    for p in PIPELINE:
        if p is kernel_select:
            g = p(g, kernels)
        elif p is fuse_conv_pool:
            g = p(g, fuse)
        else:
            g = p(g)
    return g
