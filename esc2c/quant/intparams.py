"""The integer contract, computed in exactly one place (DESIGN.md section 3).

Every executor of a deployed model -- the QAT integer simulation, the numpy reference, the integer-only
ONNX lowering, the emitted C (CMSIS-NN and runtime/), the .tflite writer -- takes its multipliers, shifts,
biases and clamp ranges from these functions, and rounds the way :func:`requantize` does.

Conventions (TFLite / CMSIS-NN int8):
  * real value = scale * (q - zero_point); int8 in [-128, 127]
  * weights: int8 symmetric per output channel (zero point 0); bias int32 with scale s_in * s_w[c]
  * requantization of an int32 accumulator by a real multiplier M = s_in * s_w / s_out, encoded as
    (multiplier, shift) by TFLite's QuantizeMultiplier: M = multiplier * 2^(shift - 31)
  * rounding: ``"double"`` is CMSIS-NN's default arm_nn_requantize (doubling high multiply with a +2^30
    nudge, i.e. half up, then a rounding right shift with ties away from zero); ``"single"`` is
    CMSIS_NN_USE_SINGLE_ROUNDING (one rounding of the 64-bit product, ties up).
"""
from __future__ import annotations

import math

import numpy as np

from esc2c.contract import DEFAULT_ROUNDING, check_rounding

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ADD_LEFT_SHIFT = 20  # TFLite ADD int8: inputs are shifted left by 20 before their own rescale


def _scalar_quantize_multiplier(real: float) -> tuple[int, int]:
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"real multiplier must be finite and >= 0, got {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2**shift, q in [0.5, 1)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # too small to represent: flush to zero like TFLite
        return 0, 0
    if shift > 30:
        raise ValueError(f"real multiplier {real!r} is too large for an int32 fixed-point multiplier")
    return q_fixed, shift


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite QuantizeMultiplier, vectorised: returns int64 arrays (multiplier in [2^30, 2^31), shift)."""
    arr = np.atleast_1d(np.asarray(real, dtype=np.float64))
    pairs = [_scalar_quantize_multiplier(float(r)) for r in arr.ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int64).reshape(arr.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(arr.shape)
    return mult, shift


def round_half_away(x):
    """std::round: ties away from zero (TFLite's TfLiteRound)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def requantize(acc, multiplier, shift, rounding: str = DEFAULT_ROUNDING) -> np.ndarray:
    """Exact arm_nn_requantize on int64 numpy arrays (broadcasting over channels)."""
    check_rounding(rounding)
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if rounding == "single":
        total_shift = 31 - s
        prod = acc * m
        res = prod >> (total_shift - 1)
        return (res + 1) >> 1
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    # val * (1 << LEFT_SHIFT(shift)) is an int32 multiply in C; keep it in int32 range like C would need
    v = acc << left
    high = (v * m + (1 << 30)) >> 31  # arm_nn_doubling_high_mult_no_sat
    return divide_by_power_of_two(high, right)


def divide_by_power_of_two(x, exponent) -> np.ndarray:
    """arm_nn_divide_by_power_of_two: arithmetic shift with ties rounded away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    result = x >> e
    threshold = (mask >> 1) + (result < 0)
    return result + (remainder > threshold)


def quantize_bias(bias, s_in: float, s_w) -> np.ndarray:
    """int32 bias with scale s_in * s_w[c] (round half away from zero, saturated to int32)."""
    if bias is None:
        return np.zeros(np.shape(s_w), dtype=np.int32)
    scale = np.float64(s_in) * np.asarray(s_w, dtype=np.float64)
    q = round_half_away(np.asarray(bias, dtype=np.float64) / np.where(scale == 0, 1.0, scale))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def conv_requant(s_in: float, s_w, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) for conv / depthwise / FC: M[c] = s_in * s_w[c] / s_out."""
    real = np.float64(s_in) * np.asarray(s_w, dtype=np.float64) / np.float64(s_out)
    return quantize_multiplier(real)


def activation_range(scale: float, zero_point: int, act: str | None) -> tuple[int, int]:
    """int8 clamp (act_min, act_max) for a fused activation: None, 'relu' or 'relu6'."""
    lo, hi = INT8_MIN, INT8_MAX
    if act in ("relu", "relu6"):
        lo = max(lo, int(zero_point))
    if act == "relu6":
        hi = min(hi, int(zero_point + round_half_away(6.0 / scale)))
    elif act not in (None, "relu"):
        raise ValueError(f"unknown fused activation {act!r}")
    return lo, hi


def add_params(s1: float, s2: float, s_out: float) -> dict:
    """TFLite ADD int8 parameters: per-input multipliers after a left shift of 20, output multiplier."""
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
    return {
        "left_shift": ADD_LEFT_SHIFT,
        "in1_mult": int(m1[0]), "in1_shift": int(sh1[0]),
        "in2_mult": int(m2[0]), "in2_shift": int(sh2[0]),
        "out_mult": int(mo[0]), "out_shift": int(sho[0]),
    }


def choose_qparams(xmin: float, xmax: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero_point) for an activation range; the range always contains 0."""
    xmin = min(float(xmin), 0.0)
    xmax = max(float(xmax), 0.0)
    if xmax == xmin:
        return 1.0, 0
    scale = (xmax - xmin) / 255.0
    zp = int(round_half_away(INT8_MIN - xmin / scale))
    return scale, int(np.clip(zp, INT8_MIN, INT8_MAX))


def symmetric_weight_scales(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-output-channel symmetric int8 scales max|w|/127 (channels that are all zero get scale 1)."""
    w = np.asarray(w, dtype=np.float64)
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=red) if red else np.abs(w)
    return np.where(amax > 0, amax / 127.0, 1.0)


def quantize(x, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """Float -> int8 like ONNX QuantizeLinear (round half to even, saturate)."""
    x = np.asarray(x, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    zp = np.asarray(zero_point, dtype=np.int64)
    if axis is not None and scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    q = np.rint(x / scale) + zp
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def clip_range(scale: float, zero_point: int, lo: float | None = None, hi: float | None = None) -> tuple[int, int]:
    """int8 clamp (act_min, act_max) for a fused real-valued clip [lo, hi] (None = unbounded).

    Same rounding as :func:`activation_range`: relu is clip(0, None), relu6 is clip(0, 6).
    """
    qmin, qmax = INT8_MIN, INT8_MAX
    if lo is not None and math.isfinite(lo):
        qmin = max(qmin, int(zero_point + round_half_away(lo / scale)))
    if hi is not None and math.isfinite(hi):
        qmax = min(qmax, int(zero_point + round_half_away(hi / scale)))
    if qmin > qmax:
        raise ValueError(f"clip [{lo}, {hi}] is empty at scale {scale}, zero point {zero_point}")
    return int(qmin), int(qmax)


def rescale_params(s_in: float, s_out: float) -> tuple[int, int]:
    """(multiplier, shift) of a pure rescale q_out = requant(q_in - zp_in, s_in / s_out) + zp_out."""
    m, s = quantize_multiplier(float(s_in) / float(s_out))
    return int(m[0]), int(s[0])


def avgpool_rescale_table(s_in: float, s_out: float, max_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pooling-window count n (index n, 1..max_count; index 0 unused = 0): (multiplier, shift) of
    s_in / (s_out * n), for an average pool whose output has its own scale:
    q_out = requant(sum(q_in - zp_in), M[n]) + zp_out."""
    counts = np.arange(1, max_count + 1, dtype=np.float64)
    m, s = quantize_multiplier(float(s_in) / (float(s_out) * counts))
    return (np.concatenate([[0], m]).astype(np.int32), np.concatenate([[0], s]).astype(np.int32))


def add_s8(a, b, zp_a: int, zp_b: int, zp_out: int, params: dict, act_min: int = INT8_MIN,
           act_max: int = INT8_MAX, rounding: str = DEFAULT_ROUNDING) -> np.ndarray:
    """TFLite ADD int8 on numpy arrays, with arm_nn_requantize rounding (the runtime's esc2c_add_s8)."""
    a1 = (np.asarray(a, np.int64) - zp_a) << params["left_shift"]
    b1 = (np.asarray(b, np.int64) - zp_b) << params["left_shift"]
    a1 = requantize(a1, params["in1_mult"], params["in1_shift"], rounding)
    b1 = requantize(b1, params["in2_mult"], params["in2_shift"], rounding)
    out = requantize(a1 + b1, params["out_mult"], params["out_shift"], rounding) + zp_out
    return np.clip(out, act_min, act_max).astype(np.int8)
