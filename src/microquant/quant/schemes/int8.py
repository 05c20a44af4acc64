"""``int8``: TFLite's int8 full-integer scheme - :func:`~microquant.quant.quantize.quantize_graph`
with its defaults (int8 asymmetric activations, int8 per-channel weights, int32 bias)."""

from __future__ import annotations

from typing import Any

from microquant.ir.graph import Graph
from microquant.quant.quantize import quantize_graph
from microquant.quant.schemes._options import check_options

NAME = "int8"


def quantize(lowered: Graph, ranges: dict[str, tuple[float, float]], **opts: Any) -> Graph:
    """Options: ``float_io`` (keep float32 model inputs/outputs)."""
    check_options(NAME, opts, ("float_io",))
    g = quantize_graph(lowered, ranges, float_io=bool(opts.get("float_io", False)))
    g.meta["scheme"] = NAME
    return g
