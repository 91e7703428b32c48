"""Instruction cost model: how many instructions each layer of a compiled graph runs on the Cortex-M7, from
its shapes and the C function :mod:`~esc2c.compiler.passes.kernel_select` chose, without building firmware.

Each kernel's work is described by a few counts that follow its loop structure (runtime/src and CMSIS-NN):

  esc2c_conv_fast_s8      steps of 3 output pixels (S per call) x pairs of output channels x Kp padded taps
                          (the SMLAD inner loop), S x pairs (accumulator set-up/stores), S x 3 x Kp (im2col),
                          pixels next to a padded left/right border x their row taps (the slow im2col path),
                          output values (requantization), S, calls x C_out (the per-channel table), calls
  arm_convolve_wrapper_s8 MACs, output pixels x taps (im2col), output values, output pixels, calls
                          (also per-channel fully connected layers, run as 1x1 convolutions)
  arm_fully_connected_s8  MACs, output values
  arm_max_pool_s8 / arm_avgpool_s8 / esc2c_avgpool_rescale_s8
                          output values x window (the reduction), output values, calls
  esc2c_add_s8 / esc2c_requantize_s8   elements
  every layer             one constant (the call, its parameter set-up and the per-layer hook)

A ``conv_pool`` op (band-wise conv + pool) adds the counts of its conv over the rows it computes, one call
per band, and of its pool, one call per pooled row. The estimate is the dot product of those counts with
:data:`COEFFS`, instructions per count, fitted by non-negative least squares (``fit``) on QEMU profiles of
emitted models (``benchmarks/bench_costmodel.py --fit`` measures and refits them; it also prints estimate
vs measurement per layer). Latency is instructions at one per cycle at 216 MHz: an estimate, as is the
emulator's own figure (QEMU models no timing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from esc2c.compiler.ir import Graph, Op
from esc2c.compiler.passes.conv_fast import FAST_CONV, padded_taps
from esc2c.compiler.passes.fuse_conv_pool import schedule, windows
from esc2c.compiler.passes.kernel_select import FC, MAX_POOL

CLOCK_HZ = 216_000_000
PIXELS = 3  # output pixels per step of the fast kernel
ESTIMATE_NOTE = "estimate: cost model esc2c/compiler/costmodel.py, 1 instruction/cycle"

# instructions per count, fitted by benchmarks/bench_costmodel.py --fit on its seven models (91 layers;
# whole-inference error -0.4 % to +0.6 % on each; leaving one fast-kernel model out of the fit moves its
# error by at most 1 %). Counts a fit cannot tell apart (a 2x2 max pool's window and output) share one.
COEFFS: dict[str, float] = {
    "layer": 195.6,
    "fast.dot": 4.022, "fast.pair": 92.07, "fast.col": 2.173, "fast.edge": 0.1538, "fast.out": 7.945,
    "fast.step": 709.8, "fast.table": 52.11, "fast.call": 692.9,
    "cmsis.mac": 1.819, "cmsis.col": 1.906, "cmsis.out": 44.14, "cmsis.pix": 442.6, "cmsis.call": 2647.0,
    "fc.mac": 1.694, "fc.out": 59.08,
    "pool.win": 0.0, "pool.out": 47.71, "pool.call": 0.0,
    "avg.win": 7.228, "avg.out": 3.312, "avg.call": 0.0,
    "eltwise.elem": 109.3,
}


def _hwc(shape) -> tuple[int, int, int]:
    if len(shape) == 4:
        return int(shape[1]), int(shape[2]), int(shape[3])
    return 1, 1, int(np.prod(shape[1:]))


def _add(f: dict, key: str, v: float) -> None:
    f[key] = f.get(key, 0.0) + float(v)


def _conv_counts(f: dict, kernel: str, cin: int, cout: int, kh: int, kw: int, out_w: int,
                 rows: list[int], pad_w: int) -> None:
    """Counts of a convolution computed as one call per entry of ``rows`` (output rows of that call)."""
    if kernel == FAST_CONV:
        kp = padded_taps(cin, kh, kw)
        pairs = (cout + 1) // 2
        for r in rows:
            p = r * out_w
            s = math.ceil(p / PIXELS)
            _add(f, "fast.dot", s * pairs * kp)
            _add(f, "fast.pair", s * pairs)
            _add(f, "fast.col", s * PIXELS * kp)
            edge = r * min(out_w, 2 * math.ceil(pad_w / 1)) if pad_w else 0
            _add(f, "fast.edge", edge * kh * kw * cin)
            _add(f, "fast.out", p * cout)
            _add(f, "fast.step", s)
            _add(f, "fast.table", cout)
            _add(f, "fast.call", 1)
    else:
        k = cin * kh * kw
        for r in rows:
            p = r * out_w
            _add(f, "cmsis.mac", p * cout * k)
            _add(f, "cmsis.col", p * k)
            _add(f, "cmsis.out", p * cout)
            _add(f, "cmsis.pix", p)
            _add(f, "cmsis.call", 1)


def _pool_counts(f: dict, fn: str, out_values: int, window: int, calls: int) -> None:
    key = "pool" if fn == MAX_POOL else "avg"
    _add(f, f"{key}.win", out_values * window)
    _add(f, f"{key}.out", out_values)
    _add(f, f"{key}.call", calls)


def op_counts(op: Op, g: Graph) -> dict[str, float]:
    """The work counts of one layer op (see the module docstring)."""
    f: dict[str, float] = {"layer": 1.0}
    x, y = g.tensors[op.inputs[0]], g.tensors[op.output]
    if op.kind in ("conv", "conv_pool"):
        kh, kw = op.attrs["kernel"]
        cin = _hwc(x.shape)[2]
        cout = int(op.weights.shape[0])
        pad_w = max(op.attrs["pads"][1], op.attrs["pads"][3])
        if op.kind == "conv":
            oh, ow, _ = _hwc(y.shape)
            _conv_counts(f, op.kernel, cin, cout, kh, kw, ow, [oh], pad_w)
        else:
            mid_h, mid_w, _ = _hwc(op.attrs["mid"]["shape"])
            p = op.attrs["pool"]
            ph, pw, pc = _hwc(y.shape)
            sched = schedule(windows(p, mid_h, ph))
            rows = [hi - lo + 1 for lo, hi in sched if hi >= lo]
            _conv_counts(f, op.kernel, cin, cout, kh, kw, mid_w, rows, pad_w)
            _pool_counts(f, p["fn"], ph * pw * pc, p["kernel"][0] * p["kernel"][1], ph)
    elif op.kind == "fully_connected":
        k = int(op.weights.shape[1])
        cout = int(op.weights.shape[0])
        if op.kernel == FC:
            _add(f, "fc.mac", k * cout)
            _add(f, "fc.out", cout)
        else:
            _conv_counts(f, op.kernel, k, cout, 1, 1, 1, [1], 0)
    elif op.kind in ("max_pool", "avg_pool"):
        kh, kw = op.attrs["kernel"]
        _pool_counts(f, op.kernel, y.size, kh * kw, 1)
    elif op.kind in ("add", "requantize"):
        _add(f, "eltwise.elem", y.size)
    elif op.kind != "depthwise_conv":
        raise ValueError(f"cost model: no counts for op kind {op.kind} ({op.name})")
    else:  # depthwise: MAC-bound like CMSIS-NN's convolution
        kh, kw = op.attrs["kernel"]
        oh, ow, oc = _hwc(y.shape)
        _add(f, "cmsis.mac", oh * ow * oc * kh * kw)
        _add(f, "cmsis.out", oh * ow * oc)
        _add(f, "cmsis.call", 1)
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
        oh, ow, oc = _hwc(g.tensors[op.output].shape)
        layers.append(LayerEstimate(i, op.name, op.kind, op.kernel or "", f"{oh}x{ow}x{oc}", int(op.macs),
                                    int(round(n))))
    return CostEstimate(layers)


def fit(samples: list[tuple[dict[str, float], int]], relative: bool = True) -> dict[str, float]:
    """Non-negative least squares coefficients from (counts, measured instructions) per layer. With
    ``relative``, each layer's equation is divided by its measurement, so small layers count as much as
    large ones (relative error)."""
    from scipy.optimize import nnls

    keys = sorted({k for f, _ in samples for k in f} | set(COEFFS))
    a = np.array([[f.get(k, 0.0) for k in keys] for f, _ in samples], dtype=np.float64)
    b = np.array([m for _, m in samples], dtype=np.float64)
    if relative:
        w = 1.0 / np.maximum(b, 1.0)
        a, b = a * w[:, None], b * w
    col = np.maximum(np.abs(a).max(axis=0), 1e-30)  # column scaling for conditioning
    sol, _ = nnls(a / col, b, maxiter=50 * len(keys))
    return {k: float(v / s) for k, v, s in zip(keys, sol, col)}
