"""The numpy convolution the runtime's kernel tests compare against (test_conv_fast.py, test_conv_small.py)."""
import numpy as np


def conv_acc(x, w, bias, in_zp, stride, pads, out_hw) -> np.ndarray:
    """int64 accumulators of an NHWC conv by the contract: sum((x - in_zp) * w) + bias, zero-point padding
    (x: [H, W, C_in]; w: [C_out, KH, KW, C_in]; pads: top, left; out_hw: output H, W)."""
    h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    oh, ow = out_hw
    xp = np.zeros((h + kh + stride[0] * oh, wd + kw + stride[1] * ow, cin), np.int64)
    xp[pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x.astype(np.int64) - in_zp
    acc = np.zeros((oh, ow, cout), np.int64)
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[dy:dy + stride[0] * oh:stride[0], dx:dx + stride[1] * ow:stride[1]]
            acc += patch @ w[:, dy, dx, :].astype(np.int64).T
    return acc + bias


def random_layer(rng, trial: int, h: int, wd: int, cin: int, cout: int, kh: int, kw: int):
    """Input, weights, bias and real requantization scales of a random layer; trial 0 at the extremes (x - zp
    reaches +-255), trial 1 with a scale > 1 (a left shift)."""
    x = rng.integers(-128, 128, (h, wd, cin))
    w = rng.integers(-127, 128, (cout, kh, kw, cin))
    if trial == 0:
        x[:] = 127 if rng.random() < 0.5 else -128
        w[:, ...] = -127
    bias = rng.integers(-(1 << 14), 1 << 14, cout)
    reals = rng.uniform(1e-4, 0.05, cout)
    reals[0] = 1.5 if trial == 1 else reals[0]
    return x, w, bias, reals
