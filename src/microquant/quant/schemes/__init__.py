"""Quantization schemes by name: ``SCHEMES[name](lowered, ranges, **opts) -> Graph``.

Every scheme takes the float TFLite-level ``lowered`` graph and the calibrated activation
``ranges`` (as :func:`microquant.quant.calibrate.calibrate` returns them) and returns a new
graph; ``opts`` are scheme options (all schemes here accept ``float_io``). The full-integer
schemes that TFLite Micro runs:

=========  ==========================================================================
``int8``   TFLite's int8 scheme: int8 activations (asymmetric), int8 per-channel
           weights, int32 bias (:func:`microquant.quant.quantize.quantize_graph`).
``int16x8`` TFLite's 16x8 scheme: int16 symmetric activations, int8 per-channel
           weights, int64 bias (:mod:`.int16x8`).
``w4a8``   int8 activations with 4-bit per-channel weights (``[-7, 7]``), packed two per
           byte as INT4 in the ``.tflite`` where TFLite Micro runs it (:mod:`.w4a8`).
=========  ==========================================================================

Adding a scheme: one module with a ``quantize(lowered, ranges, **opts) -> Graph`` function
and one line in :data:`SCHEMES`. A scheme records its name in ``graph.meta["scheme"]``.

Example:
    >>> sorted(SCHEMES)[:3]
    ['int16x8', 'int8', 'w4a8']
    >>> get_scheme("int16x8") is SCHEMES["int16x8"]
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.quant.schemes import int8, int16x8, w4a8

Scheme = Callable[..., Graph]

SCHEMES: dict[str, Scheme] = {
    "int8": int8.quantize,
    "int16x8": int16x8.quantize,
    "w4a8": w4a8.quantize,
}


def get_scheme(name: str) -> Scheme:
    """The quantize function of scheme ``name`` (raises :class:`MicroquantError` if unknown)."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise MicroquantError(
            f"unknown quantization scheme {name!r}; choose from {', '.join(sorted(SCHEMES))}"
        ) from None


def quantize_with(
    name: str, lowered: Graph, ranges: dict[str, tuple[float, float]], **opts: Any
) -> Graph:
    """``get_scheme(name)(lowered, ranges, **opts)``."""
    return get_scheme(name)(lowered, ranges, **opts)


__all__ = ["SCHEMES", "Scheme", "get_scheme", "quantize_with"]
