"""Bring MatMul / Gemm / MatMul+Add into one canonical Gemm form (ONNX level).

Canonical Gemm: ``Y = A @ W.T + C`` with ``transA=0, transB=1, alpha=1, beta=1``, constant
``W [N, K]`` (FULLY_CONNECTED's weight layout) and constant ``C [N]``. Rewrites:

* ``MatMul(A, B)`` with 2-D ``A`` and constant 2-D ``B [K, N]`` -> ``Gemm(A, B.T)``;
* ``Gemm`` with ``transB=0`` / ``alpha`` / ``beta`` / ``C`` of shape ``[1, N]`` or scalar ->
  canonical constants;
* canonical ``Gemm`` followed by ``Add`` of a constant broadcastable to ``[N]`` -> the Add
  goes into ``C`` (the Gemm takes over the Add's output name).

Example: ``y = Add(MatMul(x, B), c)`` becomes ``y = Gemm<transB=1>(x, B.T, c)``.
"""

from __future__ import annotations

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.passes._util import single_consumer


def _canonical(node: Node) -> bool:
    a = node.attrs
    return (
        int(a.get("transA", 0)) == 0
        and int(a.get("transB", 0)) == 1
        and float(a.get("alpha", 1.0)) == 1.0
        and float(a.get("beta", 1.0)) == 1.0
    )


def _matmul_to_gemm(graph: Graph, node: Node) -> bool:
    b = graph.const(node.inputs[1])
    if b is None or b.ndim != 2 or len(graph.tensor(node.inputs[0]).shape) != 2:
        return False
    if graph.const(node.inputs[0]) is not None:
        return False
    w = graph.add_const(node.inputs[1] + "_t", np.ascontiguousarray(b.T))
    node.op = "Gemm"
    node.inputs = [node.inputs[0], w.name]
    node.attrs = {"transB": 1}
    return True


def _canonicalize_gemm(graph: Graph, node: Node) -> bool:
    if _canonical(node) and (
        len(node.inputs) < 3
        or not node.inputs[2]
        or (graph.const(node.inputs[2]) is not None and graph.const(node.inputs[2]).ndim == 1)
    ):
        return False
    a = node.attrs
    if int(a.get("transA", 0)) != 0:
        return False  # lowering reports it
    b = graph.const(node.inputs[1])
    c = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if b is None or (len(node.inputs) > 2 and node.inputs[2] and c is None):
        return False
    w = b if int(a.get("transB", 0)) == 1 else b.T
    w = (w * float(a.get("alpha", 1.0))).astype(np.float32)
    wt = graph.add_const(node.inputs[1] + "_fc", np.ascontiguousarray(w))
    inputs = [node.inputs[0], wt.name]
    if c is not None:
        if c.size not in (1, w.shape[0]):
            return False  # a bias varying along M: leave it (lowering reports it)
        cv = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * float(a.get("beta", 1.0))
        inputs.append(graph.add_const(node.inputs[2] + "_fc", cv.astype(np.float32)).name)
    node.inputs = inputs
    node.attrs = {"transB": 1}
    return True


def _absorb_add(graph: Graph, node: Node) -> bool:
    add = single_consumer(graph, node.outputs[0])
    if add is None or add.op != "Add":
        return False
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    c = graph.const(other)
    n = graph.tensor(node.inputs[1]).shape[0]
    if c is None or c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
        return False
    bias = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    total = np.broadcast_to(c.reshape(-1), (n,)).astype(np.float32)
    if bias is not None:
        total = total + bias
    bt = graph.add_const(other + "_fc", total.astype(np.float32))
    node.inputs = [node.inputs[0], node.inputs[1], bt.name]
    old = node.outputs[0]
    node.outputs = [add.outputs[0]]
    graph.nodes.remove(add)
    graph.tensors.pop(old, None)
    return True


def run(graph: Graph) -> tuple[Graph, bool]:
    """Canonicalize every MatMul / Gemm (see module docstring)."""
    modified = False
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        if node.op == "MatMul":
            modified |= _matmul_to_gemm(graph, node)
        if node.op == "Gemm":
            modified |= _canonicalize_gemm(graph, node)
            if _canonical(node) and graph.const(node.inputs[1]) is not None:
                modified |= _absorb_add(graph, node)
    if modified:
        graph.remove_unused()
    return graph, modified
