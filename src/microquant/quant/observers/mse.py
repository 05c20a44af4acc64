"""MSE observer: the clip range minimizing the expected quantization error.

On the adaptive histogram (bin centers ``c`` with counts ``h``) a candidate range
``[lo, hi]`` with step ``s = (hi - lo) / 255`` costs

    E(lo, hi) = sum_{lo <= c <= hi} h * s**2 / 12  +  sum_{outside} h * (c - clip(c))**2

(uniform rounding noise inside, clipping error outside). The search first shrinks the
observed range ``[min, max]`` by a common factor ``a`` in (0, 1] (200 candidates), then
refines ``hi`` and ``lo`` separately with the other end fixed.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).laplace(size=100_000)
    >>> o = MSEObserver()
    >>> o.update(x)
    >>> lo, hi = o.range()
    >>> bool(hi < x.max() and lo > x.min())
    True
"""

from __future__ import annotations

import numpy as np

from microquant.quant.observers.base import HistogramObserver

GRID = np.linspace(0.005, 1.0, 200)


def expected_mse(
    c: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: int = 255
) -> np.ndarray:
    """Expected squared error per value for each candidate ``(lo[k], hi[k])``."""
    lo = np.asarray(lo, dtype=np.float64)[:, None]
    hi = np.asarray(hi, dtype=np.float64)[:, None]
    s = (hi - lo) / steps
    clipped = np.clip(c[None, :], lo, hi)
    err = np.where(clipped == c[None, :], s * s / 12.0, (c[None, :] - clipped) ** 2)
    return (err * h[None, :]).sum(axis=1) / h.sum()


class MSEObserver(HistogramObserver):
    name = "mse"

    def _range(self) -> tuple[float, float]:
        if not self._ready():
            return 0.0, 0.0
        nz = np.flatnonzero(self.counts)
        c = self.centers()[nz]
        h = self.counts[nz].astype(np.float64)
        lo0, hi0 = min(self.min, 0.0), max(self.max, 0.0)
        costs = expected_mse(c, h, GRID * lo0, GRID * hi0)
        a = GRID[int(np.argmin(costs))]
        lo, hi = a * lo0, a * hi0
        if hi0 > 0:
            costs = expected_mse(c, h, np.full_like(GRID, lo), GRID * hi0)
            hi = GRID[int(np.argmin(costs))] * hi0
        if lo0 < 0:
            costs = expected_mse(c, h, GRID * lo0, np.full_like(GRID, hi))
            lo = GRID[int(np.argmin(costs))] * lo0
        return lo, hi
