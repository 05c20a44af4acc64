"""The gemmlowp-style fixed-point helpers against exact math (the bit-exact check against
TFLite Micro is the full-sweep SOFTMAX/LOGISTIC/TANH cases in test_ops_activation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from microquant.runtime import gemmlowp as gl
from microquant.runtime.fixedpoint import INT32_MAX, INT32_MIN, rdbpot

RNG = np.random.default_rng(0)
Q31 = float(1 << 31)


def _real(raw: np.ndarray, integer_bits: int) -> np.ndarray:
    return raw.astype(np.float64) / 2.0 ** (31 - integer_bits)


def test_count_leading_zeros_matches_bit_length():
    x = np.concatenate([[0, 1, 2, 3, INT32_MAX, -1, INT32_MIN],
                        RNG.integers(INT32_MIN, INT32_MAX, 2000)])
    expected = [32 - (int(v) & 0xFFFFFFFF).bit_length() for v in x]
    assert gl.count_leading_zeros_u32(x).tolist() == expected


def test_rounding_half_sum_rounds_half_away_from_zero():
    a = np.array([1, -1, 3, -3, 0, INT32_MAX, INT32_MIN, 5])
    b = np.array([0, 0, 0, 0, 0, INT32_MAX, INT32_MIN, -6])
    assert gl.rounding_half_sum(a, b).tolist() == [1, -1, 2, -2, 0, INT32_MAX, INT32_MIN, -1]


def test_saturating_rounding_multiply_by_pot():
    x = np.array([0, 1, -1, 1 << 28, -(1 << 28), (1 << 28) - 1, -(1 << 28) + 1, 5, -5])
    up = gl.saturating_rounding_multiply_by_pot(x, 3)
    assert up.tolist() == [0, 8, -8, INT32_MAX, INT32_MIN, ((1 << 28) - 1) * 8,
                           (-(1 << 28) + 1) * 8, 40, -40]
    assert gl.saturating_rounding_multiply_by_pot(x, -2).tolist() == rdbpot(x, 2).tolist()
    assert gl.saturating_rounding_multiply_by_pot(x, 0).tolist() == x.tolist()


@pytest.mark.parametrize("integer_bits", [0, 1, 4, 5, 6, 12])
def test_exp_on_negative_values(integer_bits):
    a = -RNG.integers(0, 1 << 31, 5000)
    y = gl.exp_on_negative_values(a, integer_bits)
    np.testing.assert_allclose(y / Q31, np.exp(_real(a, integer_bits)), rtol=0, atol=3e-7)
    assert gl.exp_on_negative_values(np.array([0]), integer_bits).tolist() == [INT32_MAX]


def test_exp_clamps_below_minus_32():
    """With more than 5 integer bits the barrel shifter (up to 2**4) cannot see the 32s
    bit, so gemmlowp flushes x < -32 to 0: exp(-40) must not come out as exp(-8)."""
    a = np.array([-(40 << 25), -(32 << 25) - 1, -(8 << 25)])  # Q6.25
    y = gl.exp_on_negative_values(a, 6)
    assert y[:2].tolist() == [0, 0]
    assert abs(y[2] / Q31 - np.exp(-8.0)) < 3e-7


def test_one_over_one_plus_x():
    x = RNG.integers(0, 1 << 31, 5000)
    y = gl.one_over_one_plus_x_for_x_in_0_1(x)
    np.testing.assert_allclose(y / Q31, 1 / (1 + x / Q31), rtol=0, atol=1e-8)


def test_one_minus_x_over_one_plus_x():
    x = RNG.integers(0, 1 << 31, 5000)
    y = gl.one_minus_x_over_one_plus_x_for_x_in_0_1(x)
    np.testing.assert_allclose(y / Q31, (1 - x / Q31) / (1 + x / Q31), rtol=0, atol=1e-8)


@pytest.mark.parametrize("integer_bits", [0, 3, 4, 5])
def test_tanh_and_logistic(integer_bits):
    a = RNG.integers(INT32_MIN + 1, INT32_MAX, 5000)
    real = _real(a, integer_bits)
    t = gl.tanh(a, integer_bits)
    s = gl.logistic(a, integer_bits)
    np.testing.assert_allclose(t / Q31, np.tanh(real), rtol=0, atol=3e-7)
    np.testing.assert_allclose(s / Q31, 1 / (1 + np.exp(-real)), rtol=0, atol=3e-7)
    # Exact symmetries of the construction.
    assert np.array_equal(gl.tanh(-a, integer_bits), -t)
    assert np.array_equal(gl.logistic(-a, integer_bits) + s, np.full(a.shape, INT32_MAX))
    zero = np.array([0])
    assert gl.tanh(zero, integer_bits).tolist() == [0]
    assert gl.logistic(zero, integer_bits).tolist() == [1 << 30]


def test_get_reciprocal():
    x = RNG.integers(1, 1 << 31, 5000)
    scale, bits_over_unit = gl.get_reciprocal(x, 12)
    product = scale / Q31 * 2.0 ** (-bits_over_unit.astype(np.float64)) * _real(x, 12)
    np.testing.assert_allclose(product, 1.0, rtol=0, atol=1e-8)
    # 1.0 in Q12.19: headroom 12, so no bits over unit and scale ~= 1.
    one_scale, one_bits = gl.get_reciprocal(np.array([1 << 19]), 12)
    assert one_bits.tolist() == [0] and abs(int(one_scale[0]) - INT32_MAX) <= 4


def test_helpers_accept_and_return_integers_only():
    a = np.array([-(1 << 27), 0, 1 << 27])
    for out in (gl.exp_on_negative_values(-np.abs(a), 4), gl.tanh(a, 4), gl.logistic(a, 4),
                gl.get_reciprocal(np.array([1 << 20]), 12)[0]):
        assert out.dtype.kind == "i"
