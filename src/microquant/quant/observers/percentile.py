"""Percentile observer: clip a fraction of the values at each tail.

With ``percentile=99.99`` the range is ``[q(0.01 %), q(99.99 %)]`` of all observed
values (symmetric two-sided: the same tail mass is cut on each side), read from the
adaptive histogram with linear interpolation inside the bin, then clamped to the
observed min/max. For one-sided data (e.g. after ReLU) the low end is 0.

During calibration the observer takes the faster *tail* route instead: it asks for the
``k = max(32, floor(8 * tail * size) + 1)`` largest and smallest values of each sample (ONNX
Runtime's TopK inside the graph; eight times a sample's fair share of the pooled tail).
The pooled order statistic computed from those candidates is exact whenever no sample
had more than ``k`` values beyond it - checked by :meth:`tails_exact`; when the check
fails, calibration observes that tensor again from every value (histogram route).

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
        self._tops: list[np.ndarray] = []
        self._bottoms: list[np.ndarray] = []
        self._partial: list[bool] = []  # per sample: were only some of its values returned?

    @property
    def tail(self) -> float:
        return 1.0 - self.percentile / 100.0

    def tail_count(self, tensor_size: int, n_samples: int) -> int | None:
        return min(tensor_size, max(32, int(8 * self.tail * tensor_size) + 1))

    def update_tails(self, top: np.ndarray, bottom: np.ndarray, count: int) -> None:
        top = np.asarray(top, np.float32).reshape(len(top), -1)
        bottom = np.asarray(bottom, np.float32).reshape(len(bottom), -1)
        self._tops.append(top)
        self._bottoms.append(bottom)
        self._partial.append(top.shape[1] < count)
        self.max = max(self.max, float(top.max()))
        self.min = min(self.min, float(bottom.min()))
        self.count += count * len(top)

    def tails_exact(self) -> bool:
        """Exact iff every partially returned sample's k-th extreme lies inside the range:
        then none of its unreturned values can be beyond the computed order statistic."""
        if not self._tops:
            return True
        lo, hi = self._tail_range()
        return all(
            not partial or (t.min(axis=1) <= hi).all() and (b.max(axis=1) >= lo).all()
            for t, b, partial in zip(self._tops, self._bottoms, self._partial, strict=True)
        )

    def _tail_range(self) -> tuple[float, float]:
        """Exact order statistics: the value with ``floor(tail * count)`` values beyond it."""
        m = int(self.tail * self.count)
        top = np.concatenate([t.ravel() for t in self._tops])
        bottom = np.concatenate([b.ravel() for b in self._bottoms])
        m_top, m_bot = min(m, top.size - 1), min(m, bottom.size - 1)
        hi = -np.partition(-top, m_top)[m_top]
        lo = np.partition(bottom, m_bot)[m_bot]
        return float(lo), float(hi)

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
        if self._tops:
            return self._tail_range()
        if not self._ready():
            return 0.0, 0.0
        tail = 1.0 - self.percentile / 100.0
        lo = max(self._quantile(tail), self.min)
        hi = min(self._quantile(1.0 - tail), self.max)
        return lo, hi
