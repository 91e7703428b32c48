"""Instruction cost model: how many instructions each layer of a compiled graph runs on the Cortex-M7, from
its shapes and the C function :mod:`~esc2c.compiler.passes.kernel_select` chose, without building firmware.

Each kernel's work is described by a few counts that follow its loop structure (runtime/src and CMSIS-NN):

  esc2c_conv_fast_s8      steps of 3 output pixels (S per call) x pairs of output channels x Kp padded taps
                          (the SMLAD inner loop; again for the int8-weight entry point's widening, by run), S x pairs
                          (accumulator set-up/stores), S x 3 x Kp (im2col),
                          pixels next to a padded left/right border x their row taps (the slow im2col path),
                          output values (requantization), S, calls x C_out (the per-channel table), calls
  esc2c_conv_small_s8     output (pooled) pixels x window pixels x C_out x words (the SMLAD dot products),
                          the same without words (the max and the loop), pixels x window x words (im2col),
                          output values (requantization), output pixels, C_out x words (the widened weights), calls;
                          2x2 windows of a stride-1 conv with 3 kernel rows of one quad (shared input rows) count
                          windows x C_out (k3c1: one input channel, 3x3; shared: the others) and windows instead
                          of the dot products, the max and im2col
  arm_convolve_wrapper_s8 MACs, output pixels x taps (im2col), output values, output pixels, calls
                          (also per-channel fully connected layers, run as 1x1 convolutions)
  arm_fully_connected_s8  MACs, output values
  arm_max_pool_s8 / esc2c_max_pool_2x2_s8 / arm_avgpool_s8 / esc2c_avgpool_rescale_s8
                          output values x window (the reduction), output values, calls
  esc2c_add_s8 / esc2c_requantize_s8   elements
  every layer             one constant (the call, its parameter set-up and the per-layer hook)

A ``conv_pool`` op (band-wise conv + pool) adds the counts of its conv over the rows it computes, one call
per band, and of its pool, one call per pooled row. Each op kind gives its counts (``OpKind.cost_counts``,
esc2c/compiler/ops/; the convolution's and the pool's are in ops/convlike.py and ops/pooling.py).
The estimate is the dot product of those counts with :data:`COEFFS`, instructions per count, fitted by
non-negative least squares (``fit``) on QEMU profiles of emitted models (``benchmarks/bench_costmodel.py
--fit`` measures and refits them; it also prints estimate vs measurement per layer). Latency is
instructions at one per cycle at 216 MHz: an estimate, as is the emulator's own figure (QEMU models no
timing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from esc2c.compiler import ops
from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.ops.base import hwc

CLOCK_HZ = 216_000_000
ESTIMATE_NOTE = "estimate: cost model esc2c/compiler/costmodel.py, 1 instruction/cycle"

# instructions per count, fitted by benchmarks/bench_costmodel.py --fit on its seven models (whole-inference
# error -0.7 % to +0.7 % on each; 7 of their layers run the small-tap kernel: first layers and a thin
# 4-channel one, too few to tell its per-channel window loops from its per-output requantization and per-pixel
# work, so the fit puts their cost there and leaves the window-loop counts at 0). Counts a fit cannot tell
# apart (a 2x2 max pool's window and output) share one.
COEFFS: dict[str, float] = {
    "layer": 252.3,
    "fast.call": 3547.0, "fast.col": 2.042, "fast.dot": 3.967, "fast.edge": 4.51, "fast.out": 7.086,
    "fast.pair": 35.14, "fast.step": 144.6, "fast.table": 6.767,
    # int8 weights (esc2c_conv_fast_s8_w8), counted from the loops, not fitted: in the straight run two steps
    # share one LDRD of weight words and each widens its word with 2 SXTB16, 19 instructions for 4 taps of a
    # channel pair and 3 pixels where int16 weights take 16 (+0.75 per fast.dot count); the chunked run (more
    # than DOT_LONG words per column) loads each word alone, 10 for 8 (+1)
    "fast8.dot": 0.75, "fast8.chunk": 1.0,
    "small.call": 6147.0, "small.col": 10.52, "small.dot": 2.46, "small.out": 59.31, "small.pix": 153.5,
    "small.setup": 0.0, "small.win": 0.0, "small.k3c1": 0.0, "small.shared": 0.0, "small.swin": 0.0,
    "cmsis.call": 2409.0, "cmsis.col": 3.018, "cmsis.mac": 1.809, "cmsis.out": 40.09, "cmsis.pix": 566.7,
    "fc.mac": 1.905, "fc.out": 46.28,
    "pool.call": 0.0, "pool.out": 31.0, "pool.win": 0.0,
    "pool2.call": 827.1, "pool2.out": 0.0, "pool2.win": 0.0,
    "avg.call": 0.0, "avg.out": 1.935, "avg.win": 7.234,
    "eltwise.elem": 109.2,
}


def op_counts(op: Op, g: Graph) -> dict[str, float]:
    """The work counts of one layer op (see the module docstring; each op kind's ``cost_counts``)."""
    f: dict[str, float] = {"layer": 1.0}
    ops.get(op.kind).cost_counts(op, g, f)
    return f


@dataclass
class LayerEstimate:
    index: int
    name: str
    kind: str
    kernel: str
    shape: str
    macs: int
    instructions: int


@dataclass
class CostEstimate:
    layers: list[LayerEstimate]
    clock_hz: int = CLOCK_HZ

    @property
    def instructions(self) -> int:
        return int(sum(L.instructions for L in self.layers))

    @property
    def latency_ms(self) -> float:
        return self.instructions / self.clock_hz * 1e3

    def table(self, measured: list[int] | None = None) -> str:
        """Per-layer table; with ``measured`` (instructions per layer, e.g. a QEMU profile), the error too."""
        head = f"{'#':>3} {'layer':<24} {'kernel':<26} {'shape':<12} {'MACs':>11} {'estimate':>12}"
        if measured is not None:
            head += f" {'measured':>12} {'error':>7}"
        lines = [head, "-" * len(head)]
        for L in self.layers:
            row = (f"{L.index:>3} {L.name[:24]:<24} {(L.kernel or L.kind)[:26]:<26} {L.shape[:12]:<12} "
                   f"{L.macs:>11,} {L.instructions:>12,}")
            if measured is not None:
                m = measured[L.index]
                row += f" {m:>12,} {(L.instructions - m) / m if m else 0.0:>+7.1%}"
            lines.append(row)
        lines.append("-" * len(head))
        tot = f"{'':>3} {'whole inference':<24} {'':<26} {'':<12} {sum(L.macs for L in self.layers):>11,} " \
              f"{self.instructions:>12,}"
        if measured is not None:
            m = int(sum(measured))
            tot += f" {m:>12,} {(self.instructions - m) / m if m else 0.0:>+7.1%}"
        lines.append(tot)
        lines.append(f"estimated latency: {self.instructions:,} instructions = {self.latency_ms:.2f} ms at "
                     f"{self.clock_hz / 1e6:.0f} MHz ({ESTIMATE_NOTE})")
        return "\n".join(lines)


def estimate(g: Graph, coeffs: dict[str, float] | None = None) -> CostEstimate:
    """Per-layer instruction estimate of a compiled graph (every pass applied)."""
    c = COEFFS if coeffs is None else coeffs
    layers = []
    for i, op in enumerate(g.layer_ops()):
        f = op_counts(op, g)
        n = sum(c[k] * v for k, v in f.items())
        oh, ow, oc = hwc(g.tensors[op.output].shape)
        layers.append(LayerEstimate(i, op.name, op.kind, op.kernel or "", f"{oh}x{ow}x{oc}", int(op.macs),
                                    int(round(n))))
    return CostEstimate(layers)


def fit(samples: list[tuple[dict[str, float], int]], relative: bool = True) -> dict[str, float]:
    """Non-negative least squares coefficients from (counts, measured instructions) per layer. With
    ``relative``, each layer's equation is divided by its measurement, so small layers count as much as
    large ones (relative error)."""

    keys = sorted({k for f, _ in samples for k in f} | set(COEFFS))
    a = np.array([[f.get(k, 0.0) for k in keys] for f, _ in samples], dtype=np.float64)
    b = np.array([m for _, m in samples], dtype=np.float64)
    if relative:
        w = 1.0 / np.maximum(b, 1.0)
        a, b = a * w[:, None], b * w
    col = np.maximum(np.abs(a).max(axis=0), 1e-30)  # column scaling for conditioning
    sol, _ = nnls(a / col, b, maxiter=50 * len(keys))
    return {k: float(v / s) for k, v, s in zip(keys, sol, col)}
