"""Which layer is which: the float / int8 node pairing, short layer labels, weighted layers.

The analysis needs an int8 graph made from the float lowered graph node for node (same
order, same ops); layer ``i`` is the pair ``(lowered.nodes[i], quantized.nodes[i])``. The
integer requantize nodes quantization may insert (a QUANTIZE in front of a concat input with
fixed output parameters) are mirrored into the float graph first (:func:`align_lowered`).
Labels are short, unique names for tables: converter suffixes are dropped.

    >>> short_name("a/b/conv2d_1/BiasAdd"), short_name("x/dense/Softmax")
    ('conv2d_1', 'dense/Softmax')
"""

from __future__ import annotations

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.quant.quantize import WEIGHT_AXIS

# Trailing name parts TF/ONNX converters append that say nothing about the layer.
_GENERIC_PARTS = {
    "ReadVariableOp",
    "resource",
    "resource1",
    "BiasAdd",
    "Conv2D",
    "Conv2D1",
    "depthwise",
    "MatMul",
    "FusedBatchNormV3",
}


def short_name(name: str) -> str:
    """``a/b/conv2d_1/BiasAdd`` -> ``conv2d_1``; ``x/dense/Softmax`` -> ``dense/Softmax``.
    Fused TFLite names (``;``-joined) use their last part."""
    parts = [p for p in name.split(";")[-1].split("/") if p]
    kept = list(parts)
    while len(kept) > 1 and kept[-1] in _GENERIC_PARTS:
        kept.pop()
    return kept[-1] if len(kept) < len(parts) else "/".join(parts[-2:])


def layer_labels(graph: Graph) -> list[str]:
    """Short unique layer names (:func:`short_name`, ``op_index`` for unnamed nodes;
    ``#index`` appended to duplicates), one per node."""
    raw = [
        short_name(n.name) if n.name else f"{n.op.lower()}_{i}" for i, n in enumerate(graph.nodes)
    ]
    seen: dict[str, int] = {}
    for s in raw:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{s}#{i}" for i, s in enumerate(raw)]


def align_lowered(lowered: Graph, quantized: Graph) -> Graph:
    """``lowered`` with a float QUANTIZE (identity on real values) mirrored for every
    integer requantize ``quantized`` has that ``lowered`` lacks, at the same position and
    read by the same consumers, so the graphs line up node for node; ``lowered`` itself
    when there is none (the usual case)."""
    extra = [
        (i, n)
        for i, n in enumerate(quantized.nodes)
        if n.op == "QUANTIZE"
        and n.outputs[0] not in lowered.tensors
        and n.inputs[0] in lowered.tensors
        and quantized.tensor(n.inputs[0]).dtype != "float32"
    ]
    if not extra:
        return lowered
    g = lowered.copy()
    added = set()
    for i, qn in extra:  # increasing i: earlier insertions already shifted the positions
        out = qn.outputs[0]
        g.add_tensor(Tensor(out, quantized.tensor(out).shape))
        g.nodes.insert(i, Node("QUANTIZE", list(qn.inputs), [out], {}, qn.name))
        added.add(out)
    for ln, qn in zip(g.nodes, quantized.nodes, strict=False):
        if ln.op == qn.op and len(ln.inputs) == len(qn.inputs):
            ln.inputs = [q if q in added else f for f, q in zip(ln.inputs, qn.inputs, strict=True)]
    return g


def node_pairs(lowered: Graph, quantized: Graph) -> list[tuple[Node, Node]]:
    """``(float node, int8 node)`` per layer; raises when the graphs do not line up."""
    ln, qn = lowered.nodes, quantized.nodes
    if len(ln) != len(qn) or any(a.op != b.op for a, b in zip(ln, qn, strict=False)):
        raise MicroquantError(
            "the quantized graph does not match the float graph node for node "
            "(analyze a graph quantized without float I/O or fallbacks)"
        )
    return list(zip(ln, qn, strict=True))


def is_weighted(graph: Graph, node: Node) -> bool:
    """A CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with constant weights (input 1)."""
    return node.op in WEIGHT_AXIS and graph.const(node.inputs[1]) is not None
