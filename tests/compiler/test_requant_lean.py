"""The lean requantization (runtime/include/esc2c_conv_common.h: SMMULR-style doubling high multiply, the
rounding divide and out_offset in one add and one shift) at the edges of where the kernels accept it: the
accumulators at the layer's largest magnitude, biases just inside and just past the bound chan_setup_lean
checks, every right shift from 1 to 30, out_offset at both ends, tables mixing accepted channels with ones
that must fall back (left shifts, shift 0). Both kernels (fast, small), both rounding modes, both weight
widths, against the integer contract."""
from __future__ import annotations

import numpy as np
import pytest
from test_conv_fast import libs as fast_libs  # noqa: F401  (fixture)
from test_conv_fast import reference as fast_reference
from test_conv_fast import run_fast
from test_conv_small import libs as small_libs  # noqa: F401  (fixture)
from test_conv_small import reference as small_reference
from test_conv_small import run_small

from esc2c import contract
from esc2c.quant import intparams as ip


def acc_bound(taps: int, in_zp: int) -> int:
    """taps * max|x - in_zp| * 128: the largest accumulator before the bias."""
    return taps * max(abs(-128 - in_zp), abs(127 - in_zp)) * 128


def extreme_layer(rng, h, wd, cin, cout, kh, kw, in_zp, edge: str):
    """Input with whole windows at +-255 * 128 (x at the far end from in_zp, weights -128 or 127), biases at
    the edge ('inside': |bias| = 2^30 - bound - 1, 'past': one more on channel 0, 'mixed': some channels
    with scale >= 0.5), scales 2^-1 .. 2^-30."""
    far = -128 if in_zp > 0 else 127
    x = rng.integers(-128, 128, (h, wd, cin))
    x[: h // 2] = far  # the top half: every tap at the largest |x - in_zp|
    w = rng.integers(-128, 128, (cout, kh, kw, cin))
    w[: cout // 2] = -128
    w[cout // 2:: 3] = 127
    room = (1 << 30) - acc_bound(cin * kh * kw, in_zp) - 1
    assert room > 0
    bias = rng.choice([-1, 1], cout) * np.minimum(room, (10.0 ** rng.uniform(0, np.log10(room), cout)).astype(np.int64))
    bias[:4] = [room, -room, room, -room]
    right = np.resize(np.arange(1, 31), cout)
    rng.shuffle(right)
    right[:4] = [1, 30, 23, 8]
    reals = rng.uniform(0.5, 1.0, cout) * 2.0 ** -right.astype(np.float64)
    if edge == "past":
        bias[0] = room + 1
    if edge == "mixed":
        reals[1] = 0.75  # shift 0
        reals[2] = 3.0  # a left shift (with a bias that keeps (acc + bias) << 2 in int32, as the contract asks)
        bias[2] = 1000
    return x, w, bias, reals


SHAPES = [  # (H, W, C_in, C_out, KH, KW, stride, pads, out (H, W)): thin and odd layers
    (6, 7, 8, 16, 3, 3, (1, 1), (1, 1), (6, 7)),
    (5, 6, 3, 9, 3, 3, (1, 1), (1, 1), (5, 6)),
    (4, 5, 40, 33, 3, 3, (1, 1), (1, 1), (4, 5)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{s[2]}to{s[3]}" for s in SHAPES])
@pytest.mark.parametrize("edge", ["inside", "past", "mixed"])
@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
@pytest.mark.parametrize("w8", [False, True], ids=["int16w", "int8w"])
def test_fast_kernel_lean_edges(fast_libs, shape, edge, mode, w8):  # noqa: F811
    h, wd, cin, cout, kh, kw, stride, pads, out_hw = shape
    rng = np.random.default_rng(len(edge) * 1000 + cin)
    for in_zp, out_zp in [(127, -128), (-128, 127), (-3, 5)]:
        x, w, bias, reals = extreme_layer(rng, h, wd, cin, cout, kh, kw, in_zp, edge)
        mult, shift = ip.quantize_multiplier(reals)
        for act in [(-128, 127), (-90, 100)]:
            want = fast_reference(x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw, mode)
            got = run_fast(fast_libs[mode], x, w, bias, mult, shift, in_zp, out_zp, act, stride, pads, out_hw,
                           w8=w8)
            np.testing.assert_array_equal(got, want, err_msg=f"in_zp {in_zp} out_zp {out_zp} act {act}")
            assert 0 < np.count_nonzero((want > -128) & (want < 127))  # not every output saturated


@pytest.mark.parametrize("edge", ["inside", "past", "mixed"])
@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
@pytest.mark.parametrize("cin", [1, 2, 4])
def test_small_kernel_lean_edges(small_libs, edge, mode, cin):  # noqa: F811
    rng = np.random.default_rng(len(edge) * 100 + cin)
    h, wd, cout = 8, 10, 12
    for in_zp, out_zp in [(127, -128), (-128, 127), (-3, 5)]:
        x, w, bias, reals = extreme_layer(rng, h, wd, cin, cout, 3, 3, in_zp, edge)
        mult, shift = ip.quantize_multiplier(reals)
        for act in [(-128, 127), (-90, 100)]:
            args = (x, w, bias, mult, shift, in_zp, out_zp, act, (1, 1), (1, 1), (h, wd), (2, 2))
            want = small_reference(*args, mode)
            got = run_small(small_libs[mode], *args)
            np.testing.assert_array_equal(got, want, err_msg=f"in_zp {in_zp} out_zp {out_zp} act {act}")


def tie_layer():
    """1x1 conv, one input channel, weight 1 everywhere: the accumulator is x + bias, x = -128..127, so the
    biases (odd, even, negative) and the scales 2^-2 .. 2^-9 (and between) put every rounding tie of both
    rounding steps on the lean path: no channel has shift >= 0, so the whole table takes it."""
    x = np.arange(-128, 128).reshape(256, 1, 1)
    scales = np.array([2.0 ** -k for k in range(2, 10)] + [0.375, 0.3, 0.75 / 8, 0.6 / 64])
    cout = scales.size
    bias = np.array([0, 1, -1, 3, -3, 128, -129, 7, 0, -1, 5, -6])[:cout]
    w = np.ones((cout, 1, 1, 1), np.int64)
    mult, shift = ip.quantize_multiplier(scales)
    assert (shift <= -1).all()
    return x, w, bias, mult, shift


@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
@pytest.mark.parametrize("w8", [False, True], ids=["int16w", "int8w"])
def test_fast_kernel_lean_ties(fast_libs, mode, w8):  # noqa: F811
    x, w, bias, mult, shift = tie_layer()
    for out_zp in (0, -7, 100):
        args = (x, w, bias, mult, shift, 0, out_zp, (-128, 127), (1, 1), (0, 0), (256, 1))
        want = fast_reference(*args, mode)
        np.testing.assert_array_equal(run_fast(fast_libs[mode], *args, w8=w8), want)


@pytest.mark.parametrize("mode", contract.ROUNDING_MODES)
def test_small_kernel_lean_ties(small_libs, mode):  # noqa: F811
    x, w, bias, mult, shift = tie_layer()
    for out_zp in (0, -7, 100):
        args = (x, w, bias, mult, shift, 0, out_zp, (-128, 127), (1, 1), (0, 0), (256, 1), (1, 1))
        want = small_reference(*args, mode)
        np.testing.assert_array_equal(run_small(small_libs[mode], *args), want)
