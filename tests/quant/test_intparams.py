import numpy as np

from esc2c import contract
from esc2c.quant import intparams as ip


def test_quantize_multiplier_reconstructs_real():
    reals = np.array([1e-6, 0.0013, 0.25, 0.5, 0.7071, 0.999999, 1.5, 3.0])
    m, s = ip.quantize_multiplier(reals)
    assert np.all((m >= 2**30) & (m < 2**31))
    back = m.astype(np.float64) * np.power(2.0, s - 31)
    assert np.allclose(back, reals, rtol=2**-30)


def test_quantize_multiplier_zero_and_rounding_up_to_two_pow_31():
    m, s = ip.quantize_multiplier([0.0, np.nextafter(1.0, 0.0)])
    assert (m[0], s[0]) == (0, 0)
    assert (m[1], s[1]) == (2**30, 1)


def _requant_exact(acc, mult, shift, rounding):
    # Independent Python-int model of arm_nn_requantize.
    if rounding == "single":
        total = 31 - shift
        r = (acc * mult) >> (total - 1)
        return (r + 1) >> 1
    left, right = max(shift, 0), max(-shift, 0)
    hi = (acc * (1 << left) * mult + (1 << 30)) >> 31
    q, rem = hi >> right, hi & ((1 << right) - 1)
    thr = ((1 << right) - 1) >> 1
    if q < 0:
        thr += 1
    return q + (1 if rem > thr else 0)


def test_requantize_matches_integer_model_both_modes():
    rng = np.random.default_rng(0)
    acc = rng.integers(-2**20, 2**20, size=2000)
    reals = rng.uniform(1e-4, 0.9, size=2000)
    m, s = ip.quantize_multiplier(reals)
    for mode in contract.ROUNDING_MODES:
        got = ip.requantize(acc, m, s, mode)
        want = [_requant_exact(int(a), int(mm), int(ss), mode) for a, mm, ss in zip(acc, m, s)]
        assert got.tolist() == want
        # and both are within one LSB of the real product
        assert np.max(np.abs(got - acc * reals)) <= 1.0


def test_divide_by_power_of_two_ties_away_from_zero():
    x = np.array([5, -5, 6, -6, 7, -7])
    assert ip.divide_by_power_of_two(x, 1).tolist() == [3, -3, 3, -3, 4, -4]


def test_activation_range_and_choose_qparams():
    s, zp = ip.choose_qparams(-1.0, 3.0)
    assert -128 <= zp <= 127
    assert abs(s * (127 - zp) - 3.0) < s and abs(s * (-128 - zp) + 1.0) < s
    assert ip.activation_range(s, zp, "relu") == (zp, 127)
    assert ip.activation_range(s, zp, None) == (-128, 127)
