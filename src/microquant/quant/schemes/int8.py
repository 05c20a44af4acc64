"""``int8``: TFLite's int8 full-integer scheme - :func:`~microquant.quant.quantize.quantize_graph`
with its defaults (int8 asymmetric activations, int8 per-channel weights, int32 bias)."""

from __future__ import annotations

from typing import Any

from microquant.ir.graph import Graph
from microquant.quant.quantize import WEIGHT_AXIS, quantize_graph
from microquant.quant.schemes._options import check_options

NAME = "int8"


def quantize(lowered: Graph, ranges: dict[str, tuple[float, float]], **opts: Any) -> Graph:
    """Options: ``float_io`` (keep float32 model inputs/outputs), ``per_channel`` (default
    True; False gives every weight tensor a single scale)."""
    check_options(NAME, opts, ("float_io", "per_channel"))
    per_tensor = () if opts.get("per_channel", True) else tuple(WEIGHT_AXIS)
    g = quantize_graph(lowered, ranges, float_io=bool(opts.get("float_io", False)),
                       per_tensor_weights=per_tensor)
    g.meta["scheme"] = NAME
    return g
