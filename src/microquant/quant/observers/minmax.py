"""Min/max observer: the range is exactly the smallest and largest value seen.

Keeps every outlier, so one extreme value costs resolution everywhere; the TFLite
converter's default and the fastest method.

Example:
    >>> import numpy as np
    >>> o = MinMaxObserver()
    >>> o.update(np.array([0.5, 2.0]))
    >>> o.update(np.array([-1.0]))
    >>> o.range()
    (-1.0, 2.0)
"""

from __future__ import annotations

import numpy as np

from microquant.quant.observers.base import Observer


class MinMaxObserver(Observer):
    name = "minmax"

    def tail_count(self, tensor_size: int, n_samples: int) -> int | None:
        return 1

    def update_tails(self, top: np.ndarray, bottom: np.ndarray, count: int) -> None:
        self.max = max(self.max, float(np.max(top)))
        self.min = min(self.min, float(np.min(bottom)))
        self.count += count * len(top)
