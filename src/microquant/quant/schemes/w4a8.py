"""``w4a8``: int8 activations with 4-bit weights, inside TFLite's int8 full-integer model.

* weights of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED symmetric per channel with
  values in ``[-7, 7]``, scale ``max|w_c| / 7`` (``weight_scale="max"``, default) or
  ``alpha * max|w_c| / 7`` with the ``alpha`` in ``[0.3, 1]`` minimising the weight
  quantization error (``"mse"``: better on some models - MobileNet-v1 VWW 23.7 -> 27.9 dB -
  much worse on others - DS-CNN KWS 30.5 -> 8.9 dB - so not the default); activations and
  bias as the int8 scheme;
* storage: CONV_2D and DEPTHWISE_CONV_2D weights are written to the ``.tflite`` as
  TensorType INT4, two values per byte (TFLite Micro unpacks them in Prepare; checked bit
  for bit). FULLY_CONNECTED keeps int8 storage of its 4-bit values by default: this
  TFLite Micro build rejects INT4 weights on the per-channel FULLY_CONNECTED path
  (``fully_connected_common.cc``). With ``int4_fully_connected=True`` its weights take one
  scale per tensor instead and are packed as INT4 too (smaller file, less accurate).

In the graph the 4-bit values stay int8 arrays; the names of the tensors to pack are listed
in ``graph.meta["int4_tensors"]`` (the ``.tflite`` writer packs them, the reader unpacks
them and restores the list), so the reference runtime runs them unchanged.
"""

from __future__ import annotations

from typing import Any

from microquant.ir.graph import Graph
from microquant.ir.tflite_ops import INT4_META
from microquant.quant.quantize import quantize_graph
from microquant.quant.schemes._options import check_options

NAME = "w4a8"
# Ops whose per-channel INT4 weights this TFLite Micro build runs.
INT4_STORAGE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
OPTIONS = ("float_io", "weight_scale", "int4_fully_connected")


def quantize(lowered: Graph, ranges: dict[str, tuple[float, float]], **opts: Any) -> Graph:
    """Options: ``float_io`` (keep float32 model inputs/outputs), ``weight_scale``
    (``"max"`` or ``"mse"``), ``int4_fully_connected`` (per-tensor INT4 FC weights)."""
    check_options(NAME, opts, OPTIONS)
    fc_int4 = bool(opts.get("int4_fully_connected", False))
    g = quantize_graph(
        lowered,
        ranges,
        float_io=bool(opts.get("float_io", False)),
        weight_bits=4,
        weight_scale=str(opts.get("weight_scale", "max")),
        per_tensor_weights=("FULLY_CONNECTED",) if fc_int4 else (),
    )
    ops = (*INT4_STORAGE_OPS, "FULLY_CONNECTED") if fc_int4 else INT4_STORAGE_OPS
    g.meta[INT4_META] = sorted({n.inputs[1] for n in g.nodes if n.op in ops})
    g.meta["scheme"] = NAME
    return g
