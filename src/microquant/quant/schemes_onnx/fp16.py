"""Scheme ``fp16``: every float32 initializer stored as float16, ``Cast`` back to float32.

Half the file, float32 arithmetic: ONNX Runtime's CPU provider has few float16 kernels,
so a whole-model float16 graph would be slower or fail there, while the ``Cast`` nodes
(constant inputs only) are folded once when the session loads. Values beyond float16's
range (|x| > 65504) and scalars stay float32. Each tensor keeps its own initializer and
``Cast`` (readable in Netron; no blob).
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from microquant.export.onnx_build import Builder, base_model, halve_floats
from microquant.ir.graph import Graph


def fp16(graph: Graph, ranges: Mapping[str, tuple[float, float]] | None = None,
         **_: object) -> onnx.ModelProto:
    """The float16-storage model of ``graph`` (``ranges`` unused)."""
    base, opset = base_model(graph)
    b = Builder(base)
    halve_floats(b)
    return b.finish(list(base.graph.node), opset)
