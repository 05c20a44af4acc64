"""Float-side quantization primitives: choosing parameters and fixed-point multipliers.

These run at quantize time or in a kernel's ``prepare`` step - the only places float is
allowed. The integer side lives in :mod:`microquant.runtime.fixedpoint`.

Example:
    >>> quantize_multiplier(0.25)
    (1073741824, -1)
    >>> s, z = choose_qparams(-1.0, 3.0)
    >>> int(z)
    -64
"""

from __future__ import annotations

import math

import numpy as np

QMIN = {"int8": -128, "int16": -32768, "int32": -(1 << 31), "uint8": 0}
QMAX = {"int8": 127, "int16": 32767, "int32": (1 << 31) - 1, "uint8": 255}


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """C ``std::round``: ties away from zero (NumPy's ``round`` is ties-to-even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real ~= q * 2**(shift - 31)``, q in [2**30, 2**31)."""
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(float(real))
    q = int(round_half_away(frac * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`quantize_multiplier`: returns int64 arrays ``(multiplier, shift)``."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    return mult, shift


def choose_qparams(
    rmin: float, rmax: float, dtype: str = "int8", symmetric: bool = False
) -> tuple[np.float32, np.int64]:
    """Scale and zero point covering ``[rmin, rmax]`` (always including 0), TFLite style.

    Asymmetric: nudged zero point as in TFLite's ``ChooseQuantizationParams``.
    Symmetric: zero point 0, ``scale = max|r| / qmax``.
    """
    qmin, qmax = QMIN[dtype], QMAX[dtype]
    rmin = min(float(rmin), 0.0)
    rmax = max(float(rmax), 0.0)
    if symmetric:
        bound = max(abs(rmin), abs(rmax))
        scale = bound / qmax if bound > 0 else 1.0
        return np.float32(scale), np.int64(0)
    if rmax == rmin:
        return np.float32(1.0), np.int64(0)
    scale = (rmax - rmin) / (qmax - qmin)
    zp_from_min = qmin - rmin / scale
    zp = int(round_half_away(np.clip(zp_from_min, qmin, qmax)))
    return np.float32(scale), np.int64(zp)


def quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, dtype: str = "int8",
             axis: int | None = None) -> np.ndarray:
    """``clamp(round(x / scale) + zp)`` with ties away from zero; per-channel along ``axis``."""
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point, dtype=np.int64)
    if axis is not None and scale.size > 1:
        bshape = [1] * x.ndim
        bshape[axis] = -1
        scale = scale.reshape(bshape)
        zero_point = zero_point.reshape(bshape)
    q = round_half_away(np.asarray(x, dtype=np.float32) / scale) + zero_point
    return np.clip(q, QMIN[dtype], QMAX[dtype]).astype(dtype)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
               axis: int | None = None) -> np.ndarray:
    """``scale * (q - zp)`` as float32; per-channel along ``axis``."""
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point, dtype=np.int64)
    if axis is not None and scale.size > 1:
        bshape = [1] * q.ndim
        bshape[axis] = -1
        scale = scale.reshape(bshape)
        zero_point = zero_point.reshape(bshape)
    return (scale * (q.astype(np.int64) - zero_point)).astype(np.float32)
