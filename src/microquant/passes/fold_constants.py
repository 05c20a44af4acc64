"""Evaluate nodes whose inputs are all constant (ONNX level) and fold constant Transposes.

Uses ``onnx.reference`` so every ONNX op folds with its exact semantics. ``Shape`` folds
as soon as its input has a static shape (always, after import), which turns tf2onnx/PyTorch
shape arithmetic (Shape -> Gather -> Concat -> Reshape) into plain constants.

Example: ``y = Transpose(W)`` with constant ``W`` becomes a constant ``y``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.ir.onnx_io import _make_attr

# Never worth folding into a huge constant: these only move data around.
_MAX_FOLDED = 1 << 24


def _evaluate(graph: Graph, node: Node) -> list[np.ndarray]:
    if node.op == "Shape":
        shape = np.array(graph.tensor(node.inputs[0]).shape, np.int64)
        start = int(node.attrs.get("start", 0))
        end = node.attrs.get("end")
        return [shape[start:end]]
    onnx_node = helper.make_node(node.op, node.inputs, node.outputs)
    onnx_node.attribute.extend(_make_attr(k, v) for k, v in node.attrs.items())
    feeds = {i: graph.tensor(i).data for i in node.inputs if i}
    ins = [
        helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for i, v in feeds.items()
    ]
    undefined = onnx.TensorProto.UNDEFINED
    outs = [helper.make_tensor_value_info(o, undefined, None) for o in node.outputs]
    opset = int(graph.meta.get("opset", 17))
    model = helper.make_model(
        helper.make_graph([onnx_node], "fold", ins, outs),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    try:
        return list(ReferenceEvaluator(model).run(None, feeds))
    except Exception as e:
        raise MicroquantError(
            f"cannot evaluate constant node {node.name!r} ({node.op}): {type(e).__name__}"
        ) from None


def _foldable(graph: Graph, node: Node) -> bool:
    if node.op == "Shape":
        return True
    if node.op in ("Dropout",) and len(node.outputs) > 1:
        return False
    return all(not i or graph.tensor(i).is_const for i in node.inputs)


def run(graph: Graph) -> tuple[Graph, bool]:
    """Replace every all-constant node by its value (ONNX-level graphs)."""
    modified = False
    for node in list(graph.nodes):
        if not _foldable(graph, node):
            continue
        values = _evaluate(graph, node)
        if any(np.asarray(v).size > _MAX_FOLDED for v in values):
            continue
        graph.nodes.remove(node)
        for name, v in zip(node.outputs, values, strict=True):
            if not name:
                continue
            v = np.asarray(v)
            if v.dtype == np.float64:
                v = v.astype(np.float32)
            graph.tensors[name] = Tensor(name, v.shape, str(v.dtype), v)
        modified = True
    if modified:
        graph.remove_unused()
    return graph, modified
