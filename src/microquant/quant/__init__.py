"""Quantization: calibration data, observers, calibration with ONNX Runtime and the
full-integer int8 pass.

``calibrate`` and ``quantize_graph`` are imported lazily so that importing
``microquant.quant`` (e.g. for :mod:`.primitives`) stays cheap and never pulls in
ONNX Runtime.

Example:
    >>> from microquant.quant import get_observer
    >>> get_observer("minmax").name
    'minmax'
"""

from __future__ import annotations

from typing import Any

from microquant.quant.calib_data import load_calibration, load_labels
from microquant.quant.observers import OBSERVERS, get_observer

__all__ = [
    "OBSERVERS",
    "calibrate",
    "get_observer",
    "load_calibration",
    "load_labels",
    "quantize_graph",
]


def __getattr__(name: str) -> Any:
    if name == "calibrate":
        from microquant.quant.calibrate import calibrate

        return calibrate
    if name == "quantize_graph":
        from microquant.quant.quantize import quantize_graph

        return quantize_graph
    raise AttributeError(f"module 'microquant.quant' has no attribute {name!r}")
