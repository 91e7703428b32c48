"""Pick the C function for every op and size its scratch buffer (each op kind's ``select_kernel`` and
``macs``, esc2c/compiler/ops/).

Scratch sizes reproduce the ``*_get_buffer_size`` functions of CMSIS-NN v4.0.0 for both code paths the
project builds: Cortex-M7 (ARM_MATH_DSP) and the host (plain C); the planner reserves the larger. The
emitted code also asks the linked CMSIS-NN at run time (first call) and refuses to run if a kernel
wants more than was planned, which covers other CMSIS-NN versions.
"""
from __future__ import annotations

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph
from esc2c.compiler.options import DEFAULT_KERNELS, KERNEL_CHOICES


def kernel_select(g: Graph, kernels: str = DEFAULT_KERNELS) -> Graph:
    """``kernels``: "fast" runs plain convolutions on the project's kernel (esc2c_conv_fast_s8,
    ops/conv_fast.py), "cmsis" keeps CMSIS-NN's arm_convolve_wrapper_s8 for them (the reference path).
    Each kind also follows ``g.contract``: under "onnxruntime" every requantizing op runs on the project's
    own kernels."""
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
    options = {"kernels": kernels}
    for op in g.ops:
        kind = ops.get(op.kind)
        op.kernel, sizes = kind.select_kernel(op, g, options)
        op.attrs["scratch_by_path"] = sizes
        op.scratch = max(sizes.values())
        op.macs = kind.macs(op, g)
    return g
