"""Clean-up passes.

* :func:`remove_identity` (ONNX level): drop ``Identity`` and inference ``Dropout``.
* :func:`run` (TFLite level): a ``TRANSPOSE`` that only moves size-1 axes becomes a
  ``RESHAPE``; chains of ``RESHAPE`` collapse into one; a ``RESHAPE`` to the same shape
  disappears; unused tensors go.

Example: ``RESHAPE([1,49,10,1] -> [1,1,49,10]) -> RESHAPE(-> [1,49,10,1])`` vanishes.
"""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.passes._util import bypass


def remove_identity(graph: Graph) -> tuple[Graph, bool]:
    """Remove Identity / Dropout nodes (ONNX level)."""
    modified = False
    for node in [n for n in graph.nodes if n.op in ("Identity", "Dropout")]:
        if node.op == "Dropout":
            if len(node.outputs) > 1 and node.outputs[1] and graph.consumers(node.outputs[1]):
                raise MicroquantError(f"Dropout {node.name!r}: its mask output is used")
            training = graph.const(node.inputs[2]) if len(node.inputs) > 2 else None
            if training is not None and bool(np.asarray(training)):
                raise MicroquantError(f"Dropout {node.name!r} is in training mode")
            node.outputs = node.outputs[:1]
        modified |= bypass(graph, node, node.inputs[0])
    if modified:
        graph.remove_unused()
    return graph, modified


def moves_only_unit_axes(shape: tuple[int, ...], perm: list[int]) -> bool:
    """True when transposing ``shape`` by ``perm`` keeps the order of axes larger than 1.

    >>> moves_only_unit_axes((1, 1, 49, 10), [0, 2, 3, 1])
    True
    >>> moves_only_unit_axes((1, 8, 4, 4), [0, 2, 3, 1])
    False
    """
    big = [a for a in perm if shape[a] != 1]
    return big == sorted(big)


def _transpose_to_reshape(graph: Graph, node: Node) -> bool:
    perm = graph.const(node.inputs[1])
    if perm is None or not moves_only_unit_axes(graph.tensor(node.inputs[0]).shape, list(perm)):
        return False
    out = graph.tensor(node.outputs[0])
    shape = graph.add_const(node.outputs[0] + "_shape", np.array(out.shape, np.int32))
    node.op = "RESHAPE"
    node.inputs = [node.inputs[0], shape.name]
    node.attrs = {}
    return True


def run(graph: Graph) -> tuple[Graph, bool]:
    """TFLite-level TRANSPOSE/RESHAPE clean-up (see module docstring)."""
    modified = False
    for node in list(graph.nodes):
        if node.op == "TRANSPOSE":
            modified |= _transpose_to_reshape(graph, node)
        if node.op != "RESHAPE":
            continue
        prod = graph.producer(node.inputs[0])
        if prod is not None and prod.op == "RESHAPE":
            node.inputs = [prod.inputs[0]] + node.inputs[1:]  # target = our output shape
            modified = True
        src = node.inputs[0]
        if graph.tensor(src).shape == graph.tensor(node.outputs[0]).shape:
            modified |= bypass(graph, node, src)
    if modified:
        graph.remove_unused()
        src_map = graph.meta.get("calib_source")
        if src_map is not None:
            graph.meta["calib_source"] = {k: v for k, v in src_map.items() if k in graph.tensors}
    return graph, modified
