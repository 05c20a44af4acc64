"""Entropy (KL-divergence) observer: TensorRT-style threshold search on ``|x|``.

The classic recipe (TensorRT's int8 calibration) takes the histogram of ``|x|``,
and for every candidate threshold ``T`` (a bin edge) compares

* ``P``: the histogram cut at ``T`` with all mass beyond ``T`` added to the last bin
  (what clipping does), and
* ``Q``: the cut histogram (without the outliers) merged into ``L`` quantization
  levels and spread back uniformly over the non-empty bins of each level,

keeping the ``T`` with the smallest ``KL(P || Q)``. TensorRT uses 2048 bins and
``L = 128`` levels: symmetric int8 has 128 steps on each side of 0.

Exact zeros are left out of the histogram: int8 represents 0 exactly in any range, and
a ReLU's spike at 0 would otherwise dominate ``P`` and drag ``T`` far down.

**Asymmetric int8 (our activations):** the final range is ``[max(min, -T), min(max, T)]``
and the 255 steps of int8 are spread over that whole range, so the number of levels
that fall on ``[0, T]`` is ``L(T) = 255 * T / (hi + |lo|)``: 128 for symmetric data (as
TensorRT), 255 for one-sided data such as ReLU outputs, in between for skewed data.
Our histogram keeps 2048..4096 bins over ``[0, max|x|]`` (see ``base``); to bound the
cost at most ~512 evenly spaced thresholds are evaluated.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=100_000)
    >>> o = EntropyObserver()
    >>> o.update(np.r_[x, 40.0])
    >>> lo, hi = o.range()
    >>> 2.0 < hi < 10.0 and -10.0 < lo < -2.0
    True
"""

from __future__ import annotations

import numpy as np

from microquant.quant.observers.base import HistogramObserver

MAX_CANDIDATES = 512
MIN_LEVELS = 128


def kl_divergence(hist: np.ndarray, i: int, levels: int) -> float:
    """``KL(P || Q)`` for the first ``i`` bins of ``hist`` quantized into ``levels`` levels."""
    src = hist[:i].astype(np.float64)
    p = src.copy()
    p[-1] += float(hist[i:].sum())
    bounds = (np.arange(levels + 1) * i) // levels
    starts = bounds[:-1]
    nonzero = src > 0
    merged = np.add.reduceat(src, starts)
    n_nonzero = np.add.reduceat(nonzero.astype(np.float64), starts)
    per_bin = np.repeat(merged / np.maximum(n_nonzero, 1.0), np.diff(bounds))
    q = np.where(nonzero, per_bin, 0.0)
    p /= p.sum()
    qs = q.sum()
    if qs == 0:
        return np.inf
    q /= qs
    mask = p > 0
    # A clipped bin that was empty before clipping: Q has no mass where P has some.
    qm = np.maximum(q[mask], 1e-12)
    return float(np.sum(p[mask] * np.log(p[mask] / qm)))


class EntropyObserver(HistogramObserver):
    name = "entropy"

    def __init__(self, bins_per_side: int = 4096, qlevels: int = 255) -> None:
        super().__init__(bins_per_side)
        self.qlevels = qlevels

    def _levels(self, t: float) -> int:
        pos = min(max(self.max, 0.0), t)
        neg = min(max(-self.min, 0.0), t)
        span = pos + neg
        if span <= 0:
            return MIN_LEVELS
        return int(np.clip(round(self.qlevels * t / span), MIN_LEVELS, self.qlevels))

    def _range(self) -> tuple[float, float]:
        if not self._ready():
            return 0.0, 0.0
        hist = self.abs_counts()
        # Exact zeros (a ReLU's spike) cost nothing in any range; left in bin 0 they would
        # dominate P and push the threshold down.
        hist[0] -= self.exact_zeros
        nonzero = np.flatnonzero(hist)
        if nonzero.size == 0:
            return 0.0, 0.0
        nb = int(nonzero[-1]) + 1
        if nb <= MIN_LEVELS:
            return self.min, self.max
        stride = max(1, (nb - MIN_LEVELS) // MAX_CANDIDATES)
        candidates = list(range(MIN_LEVELS, nb + 1, stride))
        if candidates[-1] != nb:
            candidates.append(nb)
        best_i, best_kl = nb, np.inf
        w = self.width
        for i in candidates:
            levels = self._levels(i * w)
            if levels > i:
                continue
            kl = kl_divergence(hist, i, levels)
            if kl < best_kl:
                best_i, best_kl = i, kl
        t = best_i * w
        return max(self.min, -t), min(self.max, t)
