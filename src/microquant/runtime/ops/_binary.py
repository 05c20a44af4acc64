"""Helpers shared by the element-wise binary kernels (ADD, MUL) and the fixed-output
activations: per-tensor quantization lookups and TFLite-style broadcasting."""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.ops._common import qparams


def per_tensor(node: Node, graph: Graph, name: str) -> tuple[float, int]:
    """``(scale, zero_point)`` of a per-tensor int8 (or 16x8 int16) tensor; scale as the float32
    TFLite stores, widened to double exactly like TFLite Micro's ``static_cast<double>``."""
    q = qparams(graph, name)
    if q.per_channel:
        raise MicroquantError(
            f"{node.op} {node.name!r}: tensor {name!r} must be per-tensor quantized"
        )
    dtype = graph.tensor(name).dtype
    if dtype not in ("int8", "int16"):
        raise MicroquantError(
            f"{node.op} {node.name!r}: tensor {name!r} is {dtype}, expected int8 or int16"
        )
    return float(np.float32(q.scale[0])), int(q.zero_point[0])


def require_output(node: Node, graph: Graph, scale: float, zero_point: int) -> None:
    """TFLite's fixed output quantization of SOFTMAX/LOGISTIC/TANH."""
    s, zp = per_tensor(node, graph, node.outputs[0])
    dtype = graph.tensor(node.outputs[0]).dtype
    if s != float(np.float32(scale)) or zp != zero_point:
        raise MicroquantError(
            f"{node.op} {node.name!r}: {dtype} output must have scale {scale:g} and zero point "
            f"{zero_point} (got {s:g}, {zp})"
        )


def same_dtype(node: Node, graph: Graph) -> str:
    """The common dtype of an element-wise node's inputs and output; raises on a mix."""
    names = [n for n in (*node.inputs, *node.outputs) if n]
    dtypes = {graph.tensor(n).dtype for n in names}
    if len(dtypes) != 1:
        raise MicroquantError(
            f"{node.op} {node.name!r}: inputs and output must share one type, got "
            + ", ".join(sorted(dtypes))
        )
    return dtypes.pop()


def broadcast_shape(node: Node, graph: Graph) -> tuple[int, ...]:
    """Check the two inputs broadcast NumPy-style (rank <= 6 as TFLite Micro allows)."""
    a = graph.tensor(node.inputs[0]).shape
    b = graph.tensor(node.inputs[1]).shape
    try:
        shape = np.broadcast_shapes(a, b)
    except ValueError:
        raise MicroquantError(
            f"{node.op} {node.name!r}: shapes {a} and {b} do not broadcast"
        ) from None
    if len(shape) > 6:
        raise MicroquantError(f"{node.op} {node.name!r}: rank {len(shape)} > 6 is not supported")
    return tuple(shape)
