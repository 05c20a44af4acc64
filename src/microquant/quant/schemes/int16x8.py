"""``int16x8``: TFLite's 16x8 full-integer scheme.

* activations int16, per tensor, **symmetric** (zero point 0, ``s = max|r| / 32767`` over
  the calibrated range); SOFTMAX/LOGISTIC/TANH outputs fixed at ``1/32768``;
* weights int8 symmetric per channel, exactly as the int8 scheme;
* bias int64 with scale ``s_in * s_w[c]``; CONV_2D / DEPTHWISE_CONV_2D /
  FULLY_CONNECTED accumulate in int64 in TFLite Micro (and in our reference runtime).

256x finer activation steps than int8 for the same range, at 2x activation memory. Every
op microquant lowers to has an int16 kernel in TFLite Micro (checked bit for bit in
``tests/test_ops_int16.py``); an op without one makes quantization fail with a clear error.

Example:
    >>> from microquant.ir import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["y"])
    >>> _ = g.add_tensor(Tensor("x", (1, 4))); _ = g.add_tensor(Tensor("y", (1, 4)))
    >>> g.nodes.append(Node("LOGISTIC", ["x"], ["y"]))
    >>> q = quantize(g, {"x": (-4.0, 2.0), "y": (0.0, 1.0)})
    >>> x, y = q.tensor("x"), q.tensor("y")
    >>> x.dtype, int(x.quant.zero_point[0]), float(y.quant.scale[0]) * 32768
    ('int16', 0, 1.0)
"""

from __future__ import annotations

from typing import Any

from microquant.ir.graph import Graph
from microquant.quant.quantize import quantize_graph
from microquant.quant.schemes._options import check_options

NAME = "int16x8"


def quantize(lowered: Graph, ranges: dict[str, tuple[float, float]], **opts: Any) -> Graph:
    """Options: ``float_io`` (float32 model inputs/outputs around int16 QUANTIZE /
    DEQUANTIZE)."""
    check_options(NAME, opts, ("float_io",))
    g = quantize_graph(
        lowered, ranges, float_io=bool(opts.get("float_io", False)), activation_dtype="int16"
    )
    g.meta["scheme"] = NAME
    return g
