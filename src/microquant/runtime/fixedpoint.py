"""Integer fixed-point arithmetic exactly as TFLite Micro's reference kernels do it.

All functions take and return integer NumPy arrays (int32 values carried in int64 so
that intermediate products cannot overflow); no float anywhere. They follow the
gemmlowp / TFLite definitions:

* ``srdhm(a, b)`` - SaturatingRoundingDoublingHighMul: ``round(a*b / 2**31)`` with
  ties away from zero, saturating the single overflow case ``INT32_MIN*INT32_MIN``.
* ``rdbpot(x, e)`` - RoundingDivideByPOT: ``x / 2**e`` rounded half away from zero.
* ``mbqm(x, m, s)`` - MultiplyByQuantizedMultiplier: ``x * m * 2**(s-31)`` via the two
  roundings above (TFLite's default double-rounding build).

Example:
    >>> import numpy as np
    >>> int(mbqm(np.array([1000]), np.array([1 << 30]), np.array([0]))[0])
    500
"""

from __future__ import annotations

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def as_i64(x: np.ndarray | int) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_i32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 range (what C int32 arithmetic does in practice)."""
    x = as_i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def trunc_div(x: np.ndarray, d: np.ndarray | int) -> np.ndarray:
    """C-style integer division (rounds toward zero)."""
    x = as_i64(x)
    d = as_i64(d)
    q = np.abs(x) // np.abs(d)
    return np.where((x < 0) != (d < 0), -q, q)


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values."""
    a = as_i64(a)
    b = as_i64(b)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, res)


def rdbpot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """RoundingDivideByPOT: divide by ``2**exponent`` rounding half away from zero."""
    x = as_i64(x)
    exponent = as_i64(exponent)
    mask = (as_i64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def mbqm(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (double rounding), ``shift`` may be per-channel."""
    shift = as_i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbpot(srdhm(wrap_i32(as_i64(x) << left), multiplier), right)


def saturating_left_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent, int32 saturating."""
    return np.clip(as_i64(x) << shift, INT32_MIN, INT32_MAX)


def clamp(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(as_i64(x), lo), hi)
