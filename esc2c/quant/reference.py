"""The executor of the integer contract in Python (DESIGN.md section 3): plain numpy, independent of torch.

It runs an integer program (:meth:`esc2c.quant.qat.QATNet.integer_program`, or one read back from an exported
ONNX file with :func:`esc2c.quant.export.program_from_onnx`) on int8 NCHW inputs with exact integer
arithmetic, and returns every tensor. It is the only one: QAT's integer view
(:meth:`~esc2c.quant.qat.QATNet.integer_forward`), the integer accuracy of ``compress``, and the quantization
debuggers all call :func:`run`.

* conv2d (padding, stride, groups): padded taps hold the input zero point, i.e. contribute 0 to
  ``sum((x - zp_in) * w)``; int32 bias; per-channel requantization; output zero point; activation clamp.
  The sums are BLAS matmuls in a float type that holds them exactly (checked per layer, see
  :func:`_exact_float`), so whole datasets run fast.
* max pool over the valid taps; average pool like CMSIS-NN ``arm_avgpool_s8``: sum of the valid taps
  (padding is not counted), ``(sum + count/2) / count`` when ``sum > 0`` else ``(sum - count/2) / count``,
  C division (truncation toward zero), then clamp to int8. Pools and flatten keep their input quantization.
* add: TFLite ADD, :func:`esc2c.quant.intparams.add_s8` (inputs minus zero points, left shift 20, per-input
  requantization, sum, output requantization, zero point, clamp).
* fully connected: per-tensor weight scale.

Multipliers, shifts, clamp ranges and the rounding of requantization come from :mod:`esc2c.quant.intparams`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from esc2c.contract import DEFAULT_ROUNDING, ROUNDING_MODES
from esc2c.errors import Esc2cError
from esc2c.quant import intparams as ip


# A float type holds every integer up to 2^(mantissa bits + 1) exactly. When max|x| * max|w| * K (K products
# per output) stays below that, every partial sum of a BLAS matmul, in whatever order it adds them, is an
# exact integer: float matmuls compute the int64 accumulators exactly and fast. float32 (2^24) serves the
# layers with few products per output, float64 (2^53) every int8 layer. The bound is checked, not assumed.
def _exact_float(x, w, k: int):
    """The float dtype in which sums of ``k`` products of ``x`` and ``w`` entries are exact."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0)) * k
    if bound < 2.0 ** 24:
        return np.float32
    if bound < 2.0 ** 53:
        return np.float64
    raise Esc2cError(f"integer accumulator bound {bound:.3g} exceeds 2^53: inputs are not int8-sized")


def conv2d(x, w, stride, pad, groups: int, chunk_elems: int = 1 << 22) -> np.ndarray:
    """int64 NCHW convolution of zero-centred inputs (padding with 0).

    im2col and one float64 BLAS matmul per group (exact: see ``_EXACT``), over as many images at a time as
    keep the column matrix under ``chunk_elems`` elements."""
    w = np.asarray(w)
    n, c, h, wd = np.shape(x)
    co, cig, kh, kw = w.shape
    if c != cig * groups or co % groups:
        raise Esc2cError(f"conv2d: input channels {c} do not match weight {w.shape} with groups={groups}")
    ft = _exact_float(x, w, cig * kh * kw)
    cog, k = co // groups, cig * kh * kw
    sh, sw = int(stride[0]), int(stride[1])
    oh = (h + 2 * pad[0] - kh) // sh + 1
    ow = (wd + 2 * pad[1] - kw) // sw + 1
    xp = np.pad(np.asarray(x, dtype=ft), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    xp = xp.reshape(n, groups, cig, h + 2 * pad[0], wd + 2 * pad[1])
    win = sliding_window_view(xp, (kh, kw), axis=(3, 4))[:, :, :, ::sh, ::sw]    # N, G, Cg, OH, OW, KH, KW
    wt = w.astype(ft).reshape(groups, cog, k)                                       # G, Cog, K
    out = np.empty((n, groups, cog, oh, ow), dtype=np.int64)
    step = max(1, chunk_elems // max(1, oh * ow * c * kh * kw))
    for i in range(0, n, step):
        m = min(step, n - i)
        cols = win[i:i + m].transpose(1, 2, 5, 6, 0, 3, 4).reshape(groups, k, m * oh * ow)  # G, K, rows
        acc = (wt @ cols).reshape(groups, cog, m, oh, ow)  # exact integers
        out[i:i + m] = acc.transpose(2, 0, 1, 3, 4)
    return out.reshape(n, co, oh, ow)


def _pool_reduce(x, kernel, stride, pad, fill, ufunc, dtype) -> np.ndarray:
    """``ufunc`` (np.maximum or np.add) over every pooling window of NCHW ``x`` padded with ``fill``: one
    pass per kernel tap over strided views (a window covering the whole map is one reduction)."""
    kh, kw = int(kernel[0]), int(kernel[1])
    sh, sw = int(stride[0]), int(stride[1])
    xp = np.pad(np.asarray(x, dtype=dtype), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])),
                constant_values=fill)
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    if (oh, ow) == (1, 1):
        return ufunc.reduce(xp[:, :, :kh, :kw].reshape(xp.shape[0], xp.shape[1], -1), axis=2)[:, :, None, None]
    out = xp[:, :, 0:sh * (oh - 1) + 1:sh, 0:sw * (ow - 1) + 1:sw].copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                ufunc(out, xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw], out=out)
    return out


def maxpool(x, kernel, stride, pad) -> np.ndarray:
    """Max over the valid taps (padding never wins: it holds the int8 minimum)."""
    return _pool_reduce(x, kernel, stride, pad, ip.INT8_MIN, np.maximum, np.int8)


def avgpool(x, kernel, stride, pad) -> np.ndarray:
    """arm_avgpool_s8 semantics on int8 codes (no requantization; input and output share qparams)."""
    total = _pool_reduce(x, kernel, stride, pad, 0, np.add, np.int64)
    valid = _pool_reduce(np.ones((1, 1) + np.shape(x)[2:]), kernel, stride, pad, 0, np.add, np.int64)
    count = np.broadcast_to(valid, total.shape)
    half = count // 2
    num = np.where(total > 0, total + half, total - half)
    q = np.abs(num) // count * np.sign(num)  # C division truncates toward zero
    return np.clip(q, ip.INT8_MIN, ip.INT8_MAX).astype(np.int8)


def _requant_out(acc, s_in, s_w, s_out, zp_out, act, rounding, shape):
    m, sh = ip.conv_requant(np.float64(s_in), np.asarray(s_w, dtype=np.float64), np.float64(s_out))
    y = ip.requantize(acc, m.reshape(shape), sh.reshape(shape), rounding) + zp_out
    lo, hi = ip.activation_range(s_out, zp_out, act)
    return np.clip(y, lo, hi).astype(np.int8)


def fully_connected(x, w, bias, zp_in, s_in, s_w, s_out, zp_out, act, rounding) -> np.ndarray:
    xc = np.asarray(x, dtype=np.int64) - zp_in
    ft = _exact_float(xc, w, np.shape(w)[1])
    acc = (xc.astype(ft) @ np.asarray(w, dtype=ft).T).astype(np.int64) + np.asarray(bias, dtype=np.int64)
    s_w = np.full(np.shape(w)[0], s_w, dtype=np.float32)
    return _requant_out(acc, s_in, s_w, s_out, zp_out, act, rounding, (1, -1))


def run(program: dict, x_int8, rounding: str = DEFAULT_ROUNDING) -> dict[str, np.ndarray]:
    """Execute ``program`` on int8 input [N, C, H, W]; returns {tensor name: int8 array} for every tensor."""
    if rounding not in ROUNDING_MODES:
        raise Esc2cError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    x = np.asarray(x_int8)
    if x.dtype != np.int8:
        raise Esc2cError(f"integer input must be int8, got {x.dtype}")
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
            p = ip.add_params(float(ti["scale"]), float(t2["scale"]), float(to["scale"]))
            lo, hi = ip.activation_range(to["scale"], to["zero_point"], L["act"])
            vals[out] = ip.add_s8(src, vals[ins[1]], ti["zero_point"], t2["zero_point"], to["zero_point"], p, lo, hi,
                                  rounding)
        else:
            raise Esc2cError(f"layer {L['name']}: unsupported op {op!r} (conv, fc, maxpool, avgpool, flatten, add)")
    return vals
