"""A plain numpy executor of the integer contract (DESIGN.md section 3), independent of torch.

It runs an integer program (:meth:`esc2c.quant.qat.QATNet.integer_program`, or one read back from an exported
ONNX file with :func:`esc2c.quant.export.program_from_onnx`) on int8 NCHW inputs with int64 arithmetic:

* conv2d (padding, stride, groups): padded taps hold the input zero point, i.e. contribute 0 to
  ``sum((x - zp_in) * w)``; int32 bias; per-channel requantization; output zero point; activation clamp.
* max pool over the valid taps; average pool like CMSIS-NN ``arm_avgpool_s8``: sum of the valid taps
  (padding is not counted), ``(sum + count/2) / count`` when ``sum > 0`` else ``(sum - count/2) / count``,
  C division (truncation toward zero), then clamp to int8.
* add: TFLite ADD (inputs minus zero points, left shift 20, per-input requantization, sum, output
  requantization, zero point, clamp).
* fully connected: per-tensor weight scale.

Multipliers, shifts, clamp ranges and the rounding of requantization come from :mod:`esc2c.quant.intparams`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from esc2c.contract import ROUNDING_MODES
from esc2c.errors import Esc2cError
from esc2c.quant import intparams as ip


def conv2d(x, w, stride, pad, groups: int) -> np.ndarray:
    """int64 NCHW convolution of zero-centred inputs (padding with 0)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    n, c, _, _ = x.shape
    co, cig, kh, kw = w.shape
    if c != cig * groups or co % groups:
        raise Esc2cError(f"conv2d: input channels {c} do not match weight {w.shape} with groups={groups}")
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]  # n,c,oh,ow,kh,kw
    cog = co // groups
    outs = []
    for g in range(groups):
        wg = w[g * cog:(g + 1) * cog]
        xg = win[:, g * cig:(g + 1) * cig]
        outs.append(np.einsum("ncyxij,ocij->noyx", xg, wg, optimize=True))
    return np.concatenate(outs, axis=1)


def _pool_windows(x, kernel, stride, pad, fill):
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    return sliding_window_view(xp, tuple(kernel), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def maxpool(x, kernel, stride, pad) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    win = _pool_windows(x, kernel, stride, pad, np.iinfo(np.int64).min)
    return win.max(axis=(-2, -1)).astype(np.int8)


def avgpool(x, kernel, stride, pad) -> np.ndarray:
    """arm_avgpool_s8 semantics on int8 codes (no requantization; input and output share qparams)."""
    x = np.asarray(x, dtype=np.int64)
    total = _pool_windows(x, kernel, stride, pad, 0).sum(axis=(-2, -1))
    valid = _pool_windows(np.ones((1, 1) + x.shape[2:], dtype=np.int64), kernel, stride, pad, 0).sum(axis=(-2, -1))
    count = np.broadcast_to(valid, total.shape)
    half = count // 2
    num = np.where(total > 0, total + half, total - half)
    q = np.abs(num) // count * np.sign(num)  # C division truncates toward zero
    return np.clip(q, ip.INT8_MIN, ip.INT8_MAX).astype(np.int8)


def add(a, b, zp_a: int, zp_b: int, s_a, s_b, s_out, zp_out: int, act, rounding: str) -> np.ndarray:
    p = ip.add_params(float(s_a), float(s_b), float(s_out))
    xa = (np.asarray(a, dtype=np.int64) - zp_a) * (1 << p["left_shift"])
    xb = (np.asarray(b, dtype=np.int64) - zp_b) * (1 << p["left_shift"])
    ya = ip.requantize(xa, p["in1_mult"], p["in1_shift"], rounding)
    yb = ip.requantize(xb, p["in2_mult"], p["in2_shift"], rounding)
    y = ip.requantize(ya + yb, p["out_mult"], p["out_shift"], rounding) + zp_out
    lo, hi = ip.activation_range(s_out, zp_out, act)
    return np.clip(y, lo, hi).astype(np.int8)


def _requant_out(acc, s_in, s_w, s_out, zp_out, act, rounding, shape):
    m, sh = ip.conv_requant(np.float64(s_in), np.asarray(s_w, dtype=np.float64), np.float64(s_out))
    y = ip.requantize(acc, m.reshape(shape), sh.reshape(shape), rounding) + zp_out
    lo, hi = ip.activation_range(s_out, zp_out, act)
    return np.clip(y, lo, hi).astype(np.int8)


def fully_connected(x, w, bias, zp_in, s_in, s_w, s_out, zp_out, act, rounding) -> np.ndarray:
    xc = np.asarray(x, dtype=np.int64) - zp_in
    acc = xc @ np.asarray(w, dtype=np.int64).T + np.asarray(bias, dtype=np.int64)
    s_w = np.full(np.shape(w)[0], s_w, dtype=np.float32)
    return _requant_out(acc, s_in, s_w, s_out, zp_out, act, rounding, (1, -1))


def run(program: dict, x_int8, rounding: str = "double") -> dict[str, np.ndarray]:
    """Execute ``program`` on int8 input [N, C, H, W]; returns {tensor name: int8 array} for every tensor."""
    if rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    x = np.asarray(x_int8)
    if x.dtype != np.int8:
        raise Esc2cError(f"reference input must be int8, got {x.dtype}")
    T = program["tensors"]
    vals = {program["input"]: x}
    for L in program["layers"]:
        op, out, ins = L["op"], L["output"], L["inputs"]
        try:
            src = vals[ins[0]]
        except KeyError:
            raise Esc2cError(f"layer {L['name']}: input tensor {ins[0]!r} is not computed before it") from None
        ti, to = T[ins[0]], T[out]
        if op == "conv":
            acc = conv2d(src.astype(np.int64) - ti["zero_point"], L["weight"], L["stride"], L["pad"], L["groups"])
            acc = acc + L["bias"].astype(np.int64).reshape(1, -1, 1, 1)
            vals[out] = _requant_out(acc, ti["scale"], L["w_scale"], to["scale"], to["zero_point"], L["act"],
                                     rounding, (1, -1, 1, 1))
        elif op == "fc":
            vals[out] = fully_connected(src, L["weight"], L["bias"], ti["zero_point"], ti["scale"], L["w_scale"],
                                        to["scale"], to["zero_point"], L["act"], rounding)
        elif op in ("maxpool", "avgpool", "flatten") and (ti["scale"], ti["zero_point"]) != (to["scale"], to["zero_point"]):
            raise Esc2cError(f"layer {L['name']}: {op} must keep its input quantization (scale, zero point)")
        elif op == "maxpool":
            vals[out] = maxpool(src, L["kernel"], L["stride"], L["pad"])
        elif op == "avgpool":
            vals[out] = avgpool(src, L["kernel"], L["stride"], L["pad"])
        elif op == "flatten":
            vals[out] = src.reshape(src.shape[0], -1)
        elif op == "add":
            t2 = T[ins[1]]
            vals[out] = add(src, vals[ins[1]], ti["zero_point"], t2["zero_point"], ti["scale"], t2["scale"],
                            to["scale"], to["zero_point"], L["act"], rounding)
        else:
            raise Esc2cError(f"layer {L['name']}: unsupported op {op!r} (conv, fc, maxpool, avgpool, flatten, add)")
    return vals
