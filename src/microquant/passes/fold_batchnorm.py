"""Fold inference-mode BatchNormalization into the preceding Conv / Gemm (ONNX level).

``BN(x) = (x - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` per channel
(axis 1), so for a producer ``x = W * a + b`` with output channels on W's axis 0 (Conv
``[Co, Ci/g, kh, kw]``, normalized Gemm ``[N, K]``)::

    W' = W * s[:, None, ...]      b' = (b - mean) * s + beta

A BatchNormalization with no foldable producer becomes ``Mul`` + ``Add`` by constants
(broadcast over axis 1), which lowering turns into MUL/ADD.
"""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.passes._util import single_consumer


def _bn_params(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    consts = [graph.const(i) for i in bn.inputs[1:5]]
    if any(c is None for c in consts):
        return None
    gamma, beta, mean, var = (np.asarray(c, np.float64) for c in consts)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    return scale, shift


def _fold_into(graph: Graph, prod: Node, bn: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    if prod.op == "Conv":
        w = graph.const(prod.inputs[1])
    elif prod.op == "Gemm" and int(prod.attrs.get("transB", 0)) == 1:
        w = graph.const(prod.inputs[1])
    else:
        return False
    if w is None or w.shape[0] != scale.size:
        return False
    if prod.op == "Gemm" and (
        float(prod.attrs.get("alpha", 1.0)) != 1.0 or float(prod.attrs.get("beta", 1.0)) != 1.0
    ):
        return False  # fuse_matmul_add folds alpha/beta into the constants first
    b = graph.const(prod.inputs[2]) if len(prod.inputs) > 2 else None
    if len(prod.inputs) > 2 and prod.inputs[2] and b is None:
        return False
    b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(b, (w.shape[0],))
    new_w = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    new_b = (b * scale + shift).astype(np.float32)
    wt = graph.add_const(prod.inputs[1] + "_bn", new_w)
    bt = graph.add_const((prod.name or prod.outputs[0]) + "_bias_bn", new_b)
    prod.inputs = [prod.inputs[0], wt.name, bt.name]
    # The producer now writes BN's output tensor (its name carries through).
    old = prod.outputs[0]
    prod.outputs = [bn.outputs[0]]
    graph.nodes.remove(bn)
    graph.tensors.pop(old, None)
    return True


def run(graph: Graph) -> tuple[Graph, bool]:
    """Fold every BatchNormalization (inference mode) away."""
    modified = False
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        if len([o for o in bn.outputs if o]) > 1:
            raise MicroquantError(f"BatchNormalization {bn.name!r} in training mode is unsupported")
        params = _bn_params(graph, bn)
        if params is None:
            raise MicroquantError(f"BatchNormalization {bn.name!r} has non-constant statistics")
        scale, shift = params
        prod = graph.producer(bn.inputs[0])
        if prod is not None and single_consumer(graph, bn.inputs[0]) is bn:
            if _fold_into(graph, prod, bn, scale, shift):
                modified = True
                continue
        _to_mul_add(graph, bn, scale, shift)
        modified = True
    if modified:
        graph.remove_unused()
    return graph, modified


def _to_mul_add(graph: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    rank = len(graph.tensor(bn.inputs[0]).shape)
    bshape = (-1,) + (1,) * max(rank - 2, 0)
    s = graph.add_const(bn.name + "_scale", scale.astype(np.float32).reshape(bshape))
    t = graph.add_const(bn.name + "_shift", shift.astype(np.float32).reshape(bshape))
    out = bn.outputs[0]
    mid = graph.unique_name(out + "_scaled")
    graph.add_tensor(Tensor(mid, graph.tensor(out).shape, "float32"))
    i = graph.nodes.index(bn)
    graph.nodes[i : i + 1] = [
        Node("Mul", [bn.inputs[0], s.name], [mid], {}, bn.name + "_mul"),
        Node("Add", [mid, t.name], [out], {}, bn.name + "_add"),
    ]
