"""Signal-to-quantization-noise ratio: the one error measure of the layer analysis.

A float reference ``f`` and a (dequantized) test value ``q`` of the same tensor, summed over
every element and every sample::

    SQNR = 10 * log10(sum f**2 / sum (f - q)**2)   [dB]   (exact match -> MAX_SQNR_DB)

Example:
    >>> acc = SqnrAccumulator()
    >>> acc.add(np.array([3.0, 4.0]), np.array([3.0, 4.5]))
    >>> round(acc.db(), 1)
    20.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_SQNR_DB = 120.0  # reported for an exact match (no noise at all)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` clamped to ``[-MAX_SQNR_DB, MAX_SQNR_DB]``.

    >>> sqnr_db(100.0, 1.0), sqnr_db(1.0, 0.0)
    (20.0, 120.0)
    """
    if noise_power <= 0.0:
        return MAX_SQNR_DB
    if signal_power <= 0.0:
        return -MAX_SQNR_DB
    return float(np.clip(10.0 * math.log10(signal_power / noise_power), -MAX_SQNR_DB, MAX_SQNR_DB))


class SqnrAccumulator:
    """Running signal / noise power sums (float64) for one SQNR."""

    __slots__ = ("noise", "signal")

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        """Add one reference / test pair (``test`` is reshaped to ``ref``'s shape)."""
        r = np.asarray(ref, np.float64)
        t = np.asarray(test, np.float64).reshape(r.shape)
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum((r - t) ** 2))

    def db(self) -> float:
        return sqnr_db(self.signal, self.noise)


def compare_outputs(
    reference: Sequence[Sequence[np.ndarray]], test: Sequence[Sequence[np.ndarray]]
) -> dict[str, Any]:
    """``top1_agreement`` (fraction of samples whose argmax over the first output's last
    axis matches; None for a single-value output) and ``output_sqnr_db`` (all outputs).
    Both arguments are a list per sample of one array per model output."""
    acc = SqnrAccumulator()
    agree = 0
    for ref, got in zip(reference, test, strict=True):
        for r, t in zip(ref, got, strict=True):
            acc.add(r, t)
        r0 = np.asarray(ref[0]).reshape(-1)
        agree += int(np.argmax(r0) == np.argmax(np.asarray(got[0]).reshape(-1)))
    single = np.asarray(reference[0][0]).size <= 1 if reference else True
    return {
        "top1_agreement": None if single else agree / max(len(reference), 1),
        "output_sqnr_db": acc.db(),
    }
