"""ONNX-side quantization schemes: ``ONNX_SCHEMES[name](onnx_graph, ranges, **opts)
-> onnx.ModelProto`` for ONNX Runtime (or any ONNX runtime), not for TFLite Micro.

They start from the *normalized ONNX-level* graph (the TFLite schemes in
:mod:`microquant.quant.schemes` start from the lowered graph and return a Graph, hence the
separate registry). ``ranges`` maps ONNX tensor names to calibrated ``(lo, hi)``; only the
static schemes read it. Options: ``per_channel``, ``symmetric_weights``, ``reduce_range``,
``group_size`` (each scheme ignores the ones that do not apply).

=========  ======  ======================================================================
name       calib   what (module)
=========  ======  ======================================================================
int8       yes     QDQ, uint8 activations, int8 per-channel 7-bit-safe weights (:mod:`.qdq`)
int16      yes     QDQ, int16 activations, int8 weights, opset 21 (:mod:`.qdq`)
fp16       no      float16 initializers + Cast (:mod:`.fp16`)
dynamic    no      int8 weights, run-time activation quantization (:mod:`.dynamic`)
w4         no      weight-only INT4 ``DequantizeLinear`` (:mod:`.weight_only`)
w2, w1     no      weight-only, bit-packed, decoded at load (:mod:`.weight_only`)
=========  ======  ======================================================================

``int16x8`` is accepted as an alias of ``int16`` (same 16x8 arithmetic as the TFLite
scheme of that name).

Example:
    >>> sorted(ONNX_SCHEMES)
    ['dynamic', 'fp16', 'int16', 'int8', 'w1', 'w2', 'w4']
    >>> needs_calibration("int16x8"), needs_calibration("w4")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from microquant.errors import MicroquantError
from microquant.quant.schemes_onnx.dynamic import dynamic
from microquant.quant.schemes_onnx.fp16 import fp16
from microquant.quant.schemes_onnx.qdq import int8, int16
from microquant.quant.schemes_onnx.weight_only import w1, w2, w4

OnnxScheme = Callable[..., onnx.ModelProto]

ONNX_SCHEMES: dict[str, OnnxScheme] = {
    "int8": int8,
    "int16": int16,
    "fp16": fp16,
    "dynamic": dynamic,
    "w4": w4,
    "w2": w2,
    "w1": w1,
}
ALIASES = {"int16x8": "int16"}
CALIBRATED = ("int8", "int16")
WEIGHT_ONLY = ("w4", "w2", "w1")


def canonical(name: str) -> str:
    """The registry name of ``name`` (resolving aliases); unknown -> MicroquantError."""
    name = ALIASES.get(name, name)
    if name not in ONNX_SCHEMES:
        raise MicroquantError(f"unknown ONNX scheme {name!r}; choose from "
                              + ", ".join(list(ONNX_SCHEMES) + list(ALIASES)))
    return name


def get_onnx_scheme(name: str) -> OnnxScheme:
    return ONNX_SCHEMES[canonical(name)]


def needs_calibration(name: str) -> bool:
    return canonical(name) in CALIBRATED


__all__ = ["ONNX_SCHEMES", "OnnxScheme", "canonical", "get_onnx_scheme", "needs_calibration"]
