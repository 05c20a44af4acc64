"""Observer base classes: stream activation batches in, get a clipping range out.

An observer sees every calibration value of one tensor through :meth:`Observer.update`
(one call per sample or batch, any shape) and never stores the samples themselves.
:meth:`Observer.range` returns ``(lo, hi)`` with ``lo <= 0 <= hi`` (int8 affine
quantization must represent 0 exactly, so the range always includes it).

Histogram observers (percentile, entropy, MSE) need a value range before they can bin.
They use a one-pass *exact adaptive* histogram: bins of width ``w`` on the symmetric
grid ``[-R, R)`` (``2 * bins_per_side`` bins, 0 on a bin edge, ``R`` a power of two).
When a value beyond ``R`` arrives, ``R`` doubles (``w`` doubles) until it fits and
neighbouring bin pairs are summed - an exact merge, because every old bin lies inside
one new bin. ``R`` ends below twice the largest magnitude seen, so the occupied side
keeps at least half of its bins (``bins_per_side=4096`` keeps >= 2048 bins over the
data), and the final grid does not depend on the order of the batches.

Example:
    >>> import numpy as np
    >>> h = HistogramObserver(bins_per_side=8)
    >>> h.update(np.array([0.5, -1.0, 3.0]))
    >>> h.radius, int(h.counts.sum())
    (4.0, 3)
    >>> h.update(np.array([5.0]))      # R doubles to 8, pairs of bins merge
    >>> h.radius, int(h.counts.sum())
    (8.0, 4)
"""

from __future__ import annotations

import math

import numpy as np


class Observer:
    """Streaming range estimator. Subclasses override :meth:`_update` / :meth:`_range`."""

    name = "base"

    def __init__(self) -> None:
        self.min = np.inf
        self.max = -np.inf
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        """Observe a batch of values (any shape; NaN-free float expected)."""
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size == 0:
            return
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.count += x.size
        self._update(x)

    # -- tail protocol: lets calibration compute the needed extremes inside ONNX Runtime --
    def tail_count(self, tensor_size: int, n_samples: int) -> int | None:
        """How many of the largest and of the smallest values of each sample this observer
        needs, or ``None`` when it needs every value. Calibration then computes them in the
        graph (TopK / ReduceMax) instead of copying whole tensors out per sample."""
        return None

    def update_tails(self, top: np.ndarray, bottom: np.ndarray, count: int) -> None:
        """Observe samples given only their ``tail_count`` largest (``top``, shape
        ``[samples, k]``) and smallest (``bottom``) values; ``count`` is the full element
        count of one sample."""
        raise NotImplementedError(f"{self.name} observer needs every value")

    def tails_exact(self) -> bool:
        """Whether the values seen through :meth:`update_tails` determine the range exactly."""
        return True

    def range(self) -> tuple[float, float]:
        """Clipping range ``(lo, hi)``, always containing 0; ``(0, 0)`` if nothing was seen."""
        if self.count == 0:
            return 0.0, 0.0
        lo, hi = self._range()
        return float(min(lo, 0.0)), float(max(hi, 0.0))

    # -- for subclasses ----------------------------------------------------
    def _update(self, x: np.ndarray) -> None:
        pass

    def _range(self) -> tuple[float, float]:
        return self.min, self.max


class HistogramObserver(Observer):
    """Observer keeping an exact adaptive histogram (see the module docstring).

    ``counts[j]`` holds values in ``[-R + j*w, -R + (j+1)*w)`` with ``w = R / bins_per_side``;
    values exactly at ``+R`` go to the last bin.
    """

    def __init__(self, bins_per_side: int = 4096) -> None:
        super().__init__()
        if bins_per_side < 2 or bins_per_side & (bins_per_side - 1):
            raise ValueError("bins_per_side must be a power of two >= 2")
        self.n = bins_per_side
        self.radius = 0.0
        self.counts = np.zeros(2 * bins_per_side, dtype=np.int64)
        self._zeros = 0  # exact zeros seen before any nonzero value fixed R
        self.exact_zeros = 0  # all exact zeros (int8 represents 0 exactly, whatever the range)

    @property
    def width(self) -> float:
        return self.radius / self.n

    def _update(self, x: np.ndarray) -> None:
        self.exact_zeros += int(np.count_nonzero(x == 0))
        peak = max(abs(float(x.min())), abs(float(x.max())))
        if peak == 0.0 and self.radius == 0.0:
            self._zeros += x.size
            return
        if self.radius == 0.0:
            # A power of two: with doubling growth the final grid is the same whatever
            # the order of the batches (the smallest 2**k >= max|x|).
            self.radius = math.ldexp(1.0, math.frexp(peak)[1])
            self.counts[self.n] += self._zeros
            self._zeros = 0
        while peak > self.radius:
            self._grow()
        # Bin index in float64: float32 would misplace values near bin edges for large n.
        idx = np.floor((x.astype(np.float64) + self.radius) * (self.n / self.radius))
        idx = np.clip(idx, 0, 2 * self.n - 1).astype(np.intp)
        self.counts += np.bincount(idx, minlength=2 * self.n)

    def _grow(self) -> None:
        """Double R: bin pairs merge; the old grid lands in the middle half of the new one."""
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        new = np.zeros_like(self.counts)
        q = self.n // 2
        new[q : q + self.n] = merged
        self.counts = new
        self.radius *= 2.0

    # -- views used by the searches ---------------------------------------
    def edges(self) -> np.ndarray:
        """Bin edges, ``2 * bins_per_side + 1`` values from ``-R`` to ``R``."""
        return np.linspace(-self.radius, self.radius, 2 * self.n + 1)

    def centers(self) -> np.ndarray:
        e = self.edges()
        return 0.5 * (e[:-1] + e[1:])

    def abs_counts(self) -> np.ndarray:
        """Histogram of ``|x|`` over ``[0, R)`` with ``bins_per_side`` bins (exact fold)."""
        return self.counts[self.n :] + self.counts[: self.n][::-1]

    def _ready(self) -> bool:
        return self.radius > 0.0
