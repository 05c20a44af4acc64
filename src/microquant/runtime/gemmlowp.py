"""gemmlowp-style fixed-point math on int32 values, vectorised and integer-only.

TFLite Micro's int8 SOFTMAX, LOGISTIC and TANH kernels evaluate exp, 1/(1+x), tanh and
logistic with gemmlowp's ``FixedPoint<int32_t, N>`` arithmetic. Here a fixed-point value
is just its raw int32 (carried in int64 arrays, like :mod:`microquant.runtime.fixedpoint`)
and the number of integer bits ``N`` is passed explicitly: a ``Q(N).(31-N)`` raw ``r``
stands for ``r / 2**(31-N)``.

Arithmetic rules (matching the C++ templates bit for bit):

* ``a * b`` of two fixed-point values is :func:`srdhm` on the raws; integer bits add up.
* ``a + b`` / ``a - b`` are plain int32 adds (two's-complement wrap, never saturating).
* :func:`rescale` changes ``N`` with a saturating left shift or a rounding right shift.
* Constants are gemmlowp's raw int32 literals (no float is ever evaluated).

Example:
    >>> import numpy as np
    >>> one_half = np.array([1 << 30])            # 0.5 in Q0.31
    >>> r = int(one_over_one_plus_x_for_x_in_0_1(one_half)[0])   # 1/1.5 in Q0.31
    >>> abs(r - round(2**31 / 1.5)) <= 4     # Newton-Raphson, 3 iterations
    True
"""

from __future__ import annotations

import numpy as np

from microquant.runtime.fixedpoint import INT32_MAX, INT32_MIN, as_i64, rdbpot, srdhm, wrap_i32


def one(integer_bits: int) -> int:
    """Raw value of 1.0 (the largest raw value when there are no integer bits)."""
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def constant_pot(exponent: int, integer_bits: int) -> int:
    """Raw value of ``2**exponent`` in ``Q(integer_bits)``."""
    return 1 << (31 - integer_bits + exponent)


def fp_add(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Plain (wrapping) int32 addition, as gemmlowp's ``operator+``."""
    return wrap_i32(as_i64(a) + as_i64(b))


def fp_sub(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Plain (wrapping) int32 subtraction, as gemmlowp's ``operator-``."""
    return wrap_i32(as_i64(a) - as_i64(b))


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """``(a + b) / 2`` rounded half away from zero (gemmlowp ``RoundingHalfSum``)."""
    total = as_i64(a) + as_i64(b)
    sign = np.where(total >= 0, 1, -1)
    q = np.abs(total + sign) // 2  # C division truncates toward zero
    return np.where(total + sign < 0, -q, q)


def saturating_rounding_multiply_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """``x * 2**exponent``: saturating for ``exponent > 0``, rounding for ``exponent < 0``."""
    x = as_i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = wrap_i32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


def rescale(x: np.ndarray, src_bits: int, dst_bits: int) -> np.ndarray:
    """gemmlowp ``Rescale<dst_bits>`` of a ``Q(src_bits)`` value."""
    return saturating_rounding_multiply_by_pot(x, src_bits - dst_bits)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` for Q0.31 ``a`` in ``[-1/4, 0)``: Taylor series around -1/8, Q0.31 result."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = fp_add(a, constant_pot(-3, 0))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(
        fp_add(srdhm(fp_add(x4_over_4, x3), constant_1_over_3), x2), -1
    )
    return fp_add(constant_term, srdhm(constant_term, fp_add(x, poly)))


# gemmlowp's barrel shifter: exp(-2**k) in Q0.31 for k = -2 .. 4.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """``exp(a)`` for ``Q(integer_bits)`` ``a <= 0``; result in Q0.31.

    Splits ``a`` into ``(a mod 1/4) - 1/4`` (series) and a multiple of 1/4 (product of
    ``exp(-2**k)`` constants, one per set bit), exactly as gemmlowp.
    """
    a = as_i64(a)
    frac_bits = 31 - integer_bits
    quarter = constant_pot(-2, integer_bits)
    a_mod_quarter_minus_quarter = fp_sub(a & (quarter - 1), quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_quarter, integer_bits, 0)
    )
    remainder = fp_sub(a_mod_quarter_minus_quarter, a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit_set = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit_set, srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0: exp underflows to 0 below it
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, one(0), result)


def _newton_reciprocal_half_denominator(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shared Newton-Raphson core: returns (x ~= 1/half_denominator in Q2.29, half_denominator)."""
    half_denominator = rounding_half_sum(a, one(0))
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    x = fp_add(constant_48_over_17, srdhm(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = fp_sub(one(2), half_denominator_times_x)
        x = fp_add(x, rescale(srdhm(x, one_minus), 4, 2))
    return x, half_denominator


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """``1 / (1 + a)`` for Q0.31 ``a`` in ``[0, 1)``; result in Q0.31."""
    x, _ = _newton_reciprocal_half_denominator(a)
    return rescale(x, 1, 0)  # ExactMulByPot<-1>: Q2.29 raw reread as Q1.30


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """``(1 - a) / (1 + a)`` for Q0.31 ``a`` in ``[0, 1)``; result in Q0.31."""
    x, _ = _newton_reciprocal_half_denominator(a)
    return rescale(fp_sub(x, one(2)), 2, 0)


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """``tanh(a)`` for any ``Q(integer_bits)`` ``a``; result in Q0.31."""
    a = as_i64(a)
    negative = a < 0
    n = np.where(negative, a, fp_sub(0, a))
    # -tanh(n) for n <= 0 is (1 - exp(2n)) / (1 + exp(2n)); 2n is n reread with one more bit.
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, fp_sub(0, t), t))


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """``1 / (1 + exp(-a))`` for any ``Q(integer_bits)`` ``a``; result in Q0.31."""
    a = as_i64(a)
    positive = a > 0
    abs_a = np.where(positive, a, fp_sub(0, a))
    if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(fp_sub(0, abs_a), integer_bits)
    )
    if_negative = fp_sub(one(0), if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, if_positive, if_negative))


def count_leading_zeros_u32(x: np.ndarray) -> np.ndarray:
    """Leading zero bits of ``x`` read as uint32 (32 for zero)."""
    y = as_i64(x) & 0xFFFFFFFF
    bit_length = np.zeros(y.shape, dtype=np.int64)
    for s in (16, 8, 4, 2, 1):
        big = (y >> s) > 0
        bit_length += np.where(big, s, 0)
        y = np.where(big, y >> s, y)
    bit_length += (y > 0).astype(np.int64)
    return 32 - bit_length


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetReciprocal``: ``1/x`` of a positive ``Q(x_integer_digits)`` value.

    Returns ``(scale, num_bits_over_unit)`` with ``scale`` in Q0.31 and
    ``1/x == scale * 2**-num_bits_over_unit``.
    """
    x = as_i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_minus_one = wrap_i32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit
