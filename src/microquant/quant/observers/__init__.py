"""Calibration observers and their explicit registry.

=============  ==========================================================
``minmax``     exact min/max (keeps outliers; fastest)
``percentile`` clip 0.01 % of the values at each tail (99.99th percentile)
``entropy``    TensorRT-style KL-divergence threshold search
``mse``        clip range minimizing the expected quantization MSE
=============  ==========================================================

Example:
    >>> import numpy as np
    >>> o = get_observer("minmax")
    >>> o.update(np.array([-1.0, 2.0]))
    >>> o.range()
    (-1.0, 2.0)
"""

from __future__ import annotations

from microquant.errors import MicroquantError
from microquant.quant.observers.base import HistogramObserver, Observer
from microquant.quant.observers.entropy import EntropyObserver
from microquant.quant.observers.minmax import MinMaxObserver
from microquant.quant.observers.mse import MSEObserver
from microquant.quant.observers.percentile import PercentileObserver

OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": MSEObserver,
}


def get_observer(name: str) -> Observer:
    """A fresh observer for calibration method ``name`` (see ``OBSERVERS``)."""
    try:
        cls = OBSERVERS[name]
    except KeyError:
        raise MicroquantError(
            f"unknown calibration method {name!r}; choose one of: {', '.join(OBSERVERS)}"
        ) from None
    return cls()


__all__ = [
    "OBSERVERS",
    "EntropyObserver",
    "HistogramObserver",
    "MSEObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "get_observer",
]
