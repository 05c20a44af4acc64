"""Percentile observer: clip a fraction of the values at each tail.

With ``percentile=99.99`` the range is ``[q(0.01 %), q(99.99 %)]`` of all observed
values (symmetric two-sided: the same tail mass is cut on each side), read from the
adaptive histogram with linear interpolation inside the bin, then clamped to the
observed min/max. For one-sided data (e.g. after ReLU) the low end is 0.

Example:
    >>> import numpy as np
    >>> o = PercentileObserver(percentile=99.0)
    >>> o.update(np.r_[np.linspace(-1, 1, 10_000), [50.0]])
    >>> lo, hi = o.range()
    >>> -1.0 <= lo < -0.97, 0.97 < hi <= 1.0
    (True, True)
"""

from __future__ import annotations

import numpy as np

from microquant.quant.observers.base import HistogramObserver


class PercentileObserver(HistogramObserver):
    name = "percentile"

    def __init__(self, percentile: float = 99.99, bins_per_side: int = 4096) -> None:
        super().__init__(bins_per_side)
        if not 50.0 < percentile <= 100.0:
            raise ValueError("percentile must be in (50, 100]")
        self.percentile = percentile

    def _quantile(self, q: float) -> float:
        cdf = np.cumsum(self.counts)
        total = cdf[-1]
        target = q * total
        j = int(np.searchsorted(cdf, target, side="left"))
        j = min(j, len(self.counts) - 1)
        before = cdf[j - 1] if j > 0 else 0
        frac = (target - before) / self.counts[j] if self.counts[j] else 0.0
        return -self.radius + (j + float(np.clip(frac, 0.0, 1.0))) * self.width

    def _range(self) -> tuple[float, float]:
        if not self._ready():
            return 0.0, 0.0
        tail = 1.0 - self.percentile / 100.0
        lo = max(self._quantile(tail), self.min)
        hi = min(self._quantile(1.0 - tail), self.max)
        return lo, hi
