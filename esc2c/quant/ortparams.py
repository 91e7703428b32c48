"""The onnxruntime contract's arithmetic, in one place (contract.ONNXRUNTIME; DESIGN.md section 3).

What onnxruntime's CPU execution provider computes for the QDQ groups it fuses into integer kernels at full
graph optimisation with ``session.qdqisint8allowed=1`` (and ``session.x64quantprecision=1``: exact u8u8
products for uint8 models on x86 CPUs without VNNI). Every executor of a project emitted under this
contract -- the integer ONNX lowering, the emitted C (runtime/: ESC2C_REQUANT_FLOAT) -- follows these
formulas; every float operation is IEEE single precision, in the order written, with no contraction except
the explicit fused multiply-adds (the C build passes -ffp-contract=off):

* QLinearConv / QGemm (conv, depthwise conv, fully connected):
  ``scale[c] = (s_x * s_w[c]) / s_y``; ``y = clamp(rint(float(acc + bias) * scale[c]) + zp_y)``
  (MlasRequantizeOutput: round half to even, then the zero point, saturated);
* QLinearAdd: ``ra = s_a / s_c``, ``rb = s_b / s_c``, ``k = zp_c - fma(ra, zp_a, rb * zp_b)``;
  ``c = clamp(rint(fma(ra, a, fma(rb, b, k))))`` (MlasQLinearAdd's AVX2 kernel as built in the Linux
  wheels; fma rounds once), on the raw values (uint8 ones for a uint8 model);
* QLinearGlobalAveragePool: ``scale = s_x / (s_y * n)``; ``y = clamp(rint(float(sum(x) - zp_x * n) * scale)
  + zp_y)`` (the sum in integers);
* QLinearAveragePool: every element dequantized, ``float(x - zp_x) * s_x``, summed in float in the window's
  row-major order, divided by the count, then ``y = clamp(rint(avg / s_y + zp_y))`` (the zero point, the
  raw one of a uint8 model, is added before rounding);
* a standalone rescale (Q(DQ(x)) between different qparams): ``y = clamp(rint((float(x - zp_x) * s_x) / s_y)
  + zp_y)`` (DequantizeLinear then QuantizeLinear).

Each formula was checked against onnxruntime 1.32 where the candidate orderings disagree: every int8 input
pair of the add (150 parameter sets), 4.9 M convolution outputs, about 100 K average-pool outputs;
tests/quant/test_ortparams.py keeps checking them on every run.
"""
from __future__ import annotations

import numpy as np

from esc2c.quant.intparams import INT8_MAX, INT8_MIN

F32 = np.float32


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def fmaf(x, y, z) -> np.ndarray:
    """fmaf(x, y, z) on float32 arrays: x * y + z rounded once to float32 (C's fmaf, the M7's VFMA.F32).

    x * y is exact in float64 (two 24-bit significands); the float64 sum is rounded once more, so the
    result is corrected where that rounding could matter: when the float64 sum is exactly halfway between
    two float32 values, the sign of its rounding error (TwoSum) decides the direction."""
    x, y, z = (np.asarray(v, np.float32).astype(np.float64) for v in (x, y, z))
    p = x * y
    s = p + z
    bp = s - z  # TwoSum: the exact error of s = p + z
    err = (p - bp) + (z - (s - bp))
    r = s.astype(np.float32)
    # a float64 sum exactly halfway between two float32 neighbours, with a non-zero error: round toward it
    lo = np.where(r.astype(np.float64) > s, np.nextafter(r, F32(-np.inf)), r)
    hi = np.where(r.astype(np.float64) < s, np.nextafter(r, F32(np.inf)), r)
    mid = (lo.astype(np.float64) + hi.astype(np.float64)) / 2  # exact: float32 neighbours in float64
    tie = (lo != hi) & (s == mid) & (err != 0)
    return np.where(tie, np.where(err > 0, hi, lo), r).astype(np.float32)


def rint(x) -> np.ndarray:
    """Round half to even (nearbyintf in the default rounding mode), as int64."""
    return np.rint(np.asarray(x, np.float32)).astype(np.int64)


def conv_scale(s_x: float, s_w, s_y: float) -> np.ndarray:
    """QLinearConv's per-channel output scale, float32: (s_x * s_w[c]) / s_y."""
    return (F32(s_x) * f32(np.atleast_1d(s_w))) / F32(s_y)


def requantize(acc, scale) -> np.ndarray:
    """rint(float(acc) * scale) as int64 (before the zero point); acc holds the bias already."""
    a = np.asarray(acc, np.int64)
    if np.any(a > np.iinfo(np.int32).max) or np.any(a < np.iinfo(np.int32).min):
        raise ValueError("accumulator outside int32")
    return rint(a.astype(np.int32).astype(np.float32) * f32(scale))


def add_params(s_a: float, zp_a: int, s_b: float, zp_b: int, s_c: float, zp_c: int, offset: int = 0) -> dict:
    """QLinearAdd's float32 constants: the two scale ratios and the folded zero points. ``offset``: 128 when
    the model's activations are uint8 (the int8 values, zero points included, are the uint8 ones - 128):
    onnxruntime computes on the raw uint8 values, and float arithmetic does not commute with the shift."""
    ra, rb = F32(s_a) / F32(s_c), F32(s_b) / F32(s_c)
    k = F32(zp_c + offset) - fmaf(ra, F32(zp_a + offset), rb * F32(zp_b + offset))
    return {"ra": float(ra), "rb": float(rb), "k": float(k), "offset": int(offset)}


def add(a, b, p: dict) -> np.ndarray:
    """QLinearAdd before the clamp, in int8 terms: rint(fma(ra, a', fma(rb, b', k))) - offset as int64, where
    a' = a + offset (the zero point is inside k)."""
    off = p.get("offset", 0)
    inner = fmaf(F32(p["rb"]), f32(np.asarray(b, np.int64) + off), F32(p["k"]))
    return rint(fmaf(F32(p["ra"]), f32(np.asarray(a, np.int64) + off), inner)) - off


def add_table(p: dict, zp_c_range: tuple[int, int]) -> np.ndarray:
    """The add for every (a, b) int8 pair, clamped: int8 [256, 256] indexed [a + 128, b + 128]."""
    q = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64)
    a, b = np.meshgrid(q, q, indexing="ij")
    return np.clip(add(a, b, p), *zp_c_range).astype(np.int8)


def global_pool_scale(s_x: float, s_y: float, n: int) -> np.float32:
    """QLinearGlobalAveragePool's scale: s_x / (s_y * n), float32."""
    return F32(s_x) / (F32(s_y) * F32(n))


def avg_pool(x_nhwc: np.ndarray, zp_x: int, s_x: float, s_y: float, zp_y: int, kernel, stride, pads,
             out_hw, offset: int = 0) -> np.ndarray:
    """QLinearAveragePool on an int8 NHWC batch, before the clamp (int64): count excludes padding;
    ``offset`` 128 for a uint8 model, whose raw zero point is added before rounding."""
    kh, kw = kernel
    sh, sw = stride
    top, left = pads[0], pads[1]
    oh, ow = out_hw
    n, h, w, c = x_nhwc.shape
    deq = (np.asarray(x_nhwc, np.int64) - zp_x).astype(np.float32) * F32(s_x)
    total = np.zeros((n, oh, ow, c), np.float32)
    count = np.zeros((oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            rows = np.arange(oh) * sh - top + i
            cols = np.arange(ow) * sw - left + j
            valid = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
            v = deq[:, np.clip(rows, 0, h - 1)][:, :, np.clip(cols, 0, w - 1)]
            total = np.where(valid[None, :, :, None], total + v, total).astype(np.float32)
            count += valid
    avg = total / count.astype(np.float32)[None, :, :, None]
    return rint(avg / F32(s_y) + F32(zp_y + offset)) - offset


def rescale(x, zp_x: int, s_x: float, s_y: float, zp_y: int) -> np.ndarray:
    """DequantizeLinear then QuantizeLinear, before the clamp (int64)."""
    v = (np.asarray(x, np.int64) - zp_x).astype(np.float32) * F32(s_x)
    return rint(v / F32(s_y)) + zp_y
