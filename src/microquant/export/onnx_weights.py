"""Low-bit weight quantization and bit-packing for the weight-only ONNX schemes.

A weight tensor is viewed as a matrix ``[C, K]``: ``C`` output channels, ``K`` the
reduction length (``Ci*kh*kw`` for Conv, ``K`` for MatMul/Gemm). Every row is split into
groups of ``group_size`` consecutive values (``group_size=None``: one group per row, i.e.
per channel); each group has its own scale (and zero point when asymmetric):

* symmetric:  ``w ~= scale * (u - (2**bits - 1) / 2)`` with unsigned codes
  ``u in [0, 2**bits - 1]`` - a grid symmetric around 0 with no stored zero point
  (1 bit: ``+-scale/2``; 2 bits: ``{-1.5, -0.5, 0.5, 1.5} * scale``);
* asymmetric: ``w ~= scale * (u - z)`` with an integer code ``z`` per group.

The scale is chosen per group by a small search over clipping ratios of the min/max range,
keeping the ratio with the smallest squared error (at 1-2 bits plain min/max wastes most
levels on outliers). Scales are stored as float16 (2 bytes per group); codes are computed
with the rounded scale so the stored values are exactly what is decoded.

Packing (:func:`pack_bits`): ``8 // bits`` codes per byte, little end first: code ``i``
lives in bits ``[(i % per) * bits, (i % per + 1) * bits)`` of byte ``i // per``.

Example:
    >>> import numpy as np
    >>> codes = np.array([0, 1, 2, 3, 3], np.uint8)
    >>> pack_bits(codes, 2)
    array([228,   3], dtype=uint8)
    >>> unpack_bits(pack_bits(codes, 2), 2, 5)
    array([0, 1, 2, 3, 3], dtype=uint8)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.quant.primitives import round_half_away

CLIP_RATIOS = np.linspace(1.0, 0.2, 33)


@dataclass
class NBitWeight:
    """``bits``-bit codes ``[C, K]`` with per-group ``scale`` / ``zero_point`` ``[C, G]``."""

    codes: np.ndarray  # uint8, values in [0, 2**bits - 1]
    scale: np.ndarray  # float16 [C, G]
    zero_point: np.ndarray  # float32 [C, G] (half-integer when symmetric)
    bits: int
    symmetric: bool

    @property
    def groups(self) -> int:
        return int(self.scale.shape[1])

    def dequantize(self) -> np.ndarray:
        """Float ``[C, K]`` values the ONNX unpack sub-graph reproduces exactly."""
        c, k = self.codes.shape
        g = self.groups
        u = self.codes.astype(np.float32).reshape(c, g, k // g)
        s = self.scale.astype(np.float32)[:, :, None]
        z = self.zero_point.astype(np.float32)[:, :, None]
        return ((u - z) * s).reshape(c, k)


def check_group_size(k: int, group_size: int | None, where: str) -> int:
    """Number of groups per row; ``group_size`` must be positive and divide ``k``."""
    if group_size is None:
        return 1
    if isinstance(group_size, bool) or not isinstance(group_size, int | np.integer):
        raise MicroquantError(f"group size must be an integer, got {group_size!r}")
    if group_size <= 0:
        raise MicroquantError(f"group size must be positive, got {group_size}")
    if k % group_size:
        raise MicroquantError(
            f"group size {group_size} does not divide the {k} input values per channel of {where}"
        )
    return k // group_size


def quantize_nbit(w2d: np.ndarray, bits: int, group_size: int | None = None,
                  symmetric: bool = True, where: str = "weight", midpoint: bool = True
                  ) -> NBitWeight:
    """Quantize a ``[C, K]`` float matrix to ``bits``-bit codes (see the module docstring).

    ``midpoint=False`` (symmetric only) uses the integer zero point ``2**(bits-1)`` instead
    of the half-integer one, i.e. signed codes ``u - 2**(bits-1)`` with zero point 0, the
    form ``DequantizeLinear`` can express (INT4).
    """
    if symmetric and not midpoint and bits < 2:
        raise MicroquantError("1-bit symmetric weights need the midpoint grid")
    if bits not in (1, 2, 4, 8):
        raise MicroquantError(f"unsupported weight bit width {bits}")
    w2d = np.asarray(w2d, np.float32)
    c, k = w2d.shape
    g = check_group_size(k, group_size, where)
    x = w2d.reshape(c, g, k // g)
    levels = (1 << bits) - 1
    best_err = np.full((c, g), np.inf, np.float64)
    best_s = np.ones((c, g), np.float16)
    best_z = np.zeros((c, g), np.float32)
    for r in CLIP_RATIOS:
        s, z = _grid(x, r, levels, symmetric, midpoint)
        u = np.clip(round_half_away(x / s[..., None] + z[..., None]), 0, levels)
        err = (((u - z[..., None]) * s[..., None].astype(np.float32) - x) ** 2).sum(axis=2)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s)
        best_z = np.where(better, z, best_z)
    s32 = best_s.astype(np.float32)[..., None]
    u = np.clip(round_half_away(x / s32 + best_z[..., None]), 0, levels).astype(np.uint8)
    return NBitWeight(u.reshape(c, k), best_s, best_z, bits, symmetric)


def _grid(x: np.ndarray, ratio: float, levels: int, symmetric: bool, midpoint: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """float16 scale and zero point per group covering ``ratio`` of the group's range."""
    if symmetric and not midpoint:
        half = (levels + 1) // 2
        s = (np.abs(x).max(axis=2) * ratio / (half - 1)).astype(np.float16)
        z = np.full(s.shape, float(half), np.float32)
    elif symmetric:
        bound = np.abs(x).max(axis=2) * ratio
        s = (2.0 * bound / levels).astype(np.float16)
        z = np.full(s.shape, levels / 2.0, np.float32)
    else:
        lo = np.minimum(x.min(axis=2), 0.0) * ratio
        hi = np.maximum(x.max(axis=2), 0.0) * ratio
        s = ((hi - lo) / levels).astype(np.float16)
        safe = np.where(s > 0, s.astype(np.float32), 1.0)
        z = np.clip(round_half_away(-lo / safe), 0, levels).astype(np.float32)
    s = np.where(s > 0, s, np.float16(1.0))  # all-zero group: any scale reproduces it
    return s.astype(np.float16), z


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit codes (flattened) into bytes, little end first."""
    per = 8 // bits
    flat = np.asarray(codes, np.uint8).ravel()
    pad = (-flat.size) % per
    flat = np.concatenate([flat, np.zeros(pad, np.uint8)]).reshape(-1, per).astype(np.uint16)
    shifts = (np.arange(per) * bits).astype(np.uint16)
    return (flat << shifts).sum(axis=1).astype(np.uint8)


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` codes.

    Uses the same shift-left-then-right arithmetic as the ONNX unpack sub-graph:
    ``code_j = ((byte << (8 - bits - j*bits)) mod 256) >> (8 - bits)``.
    """
    left, right = unpack_shifts(bits)
    b = np.asarray(packed, np.uint8).reshape(-1, 1)
    return ((b << left[None, :]) >> right).ravel()[:n].astype(np.uint8)


def unpack_shifts(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 shift amounts ``(left[per], right)`` decoding one byte into ``8 // bits`` codes."""
    per = 8 // bits
    left = np.array([8 - bits - j * bits for j in range(per)], np.uint8)
    return left, np.array(8 - bits, np.uint8)
