"""The ``float`` fix as a graph transform: chosen layers of an int8 graph run in float.

Each chosen layer becomes ``DEQUANTIZE`` (its int8 activation inputs) -> the float op with
the float weights of the lowered graph -> ``QUANTIZE`` back to its original int8 output
tensor, so the rest of the graph is untouched. Between two adjacent float layers the float
value passes directly (no int8 round trip).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.report.layers.pairing import align_lowered, layer_labels, node_pairs


def float_fallback(quantized: Graph, lowered: Graph, layers: Iterable[str]) -> Graph:
    """A copy of ``quantized`` where each named layer (node name or report label) runs in
    float: ``DEQUANTIZE`` of its int8 inputs -> the float op with the float weights of
    ``lowered`` -> ``QUANTIZE`` back to the original int8 output tensor. A float layer
    reading another float layer's output takes the float value directly (the int8 copy
    stays only for other consumers). Runs in the reference :class:`Evaluator` (mixed
    graphs run float nodes with ``run_float``)."""
    lowered = align_lowered(lowered, quantized)
    pairs = node_pairs(lowered, quantized)
    labels = layer_labels(quantized)
    wanted = set(layers)
    g = quantized.copy()
    targets = {i for i, n in enumerate(g.nodes) if n.name in wanted or labels[i] in wanted}
    found = {g.nodes[i].name for i in targets} | {labels[i] for i in targets}
    missing = sorted(wanted - found)
    if missing:
        raise MicroquantError(f"no layer named {missing[0]!r} in the quantized graph")
    nodes: list[Node] = []
    float_of: dict[str, str] = {}  # int8 output of a float layer -> its float value
    for i, node in enumerate(g.nodes):
        if i not in targets:
            nodes.append(node)
            continue
        lnode = pairs[i][0]
        new_inputs: list[str] = []
        for k, name in enumerate(node.inputs):
            t = g.tensors.get(name) if name else None
            if t is None:
                new_inputs.append("")
            elif t.is_const:
                src = lnode.inputs[k] if k < len(lnode.inputs) else ""
                if not src:  # e.g. the zero bias quantize_graph creates
                    new_inputs.append("")
                    continue
                c = g.add_const(f"{src}_float", np.array(lowered.tensor(src).data, copy=True))
                new_inputs.append(c.name)
            elif t.dtype == "float32":
                new_inputs.append(name)
            elif name in float_of:  # adjacent float layers: no int8 round trip between
                new_inputs.append(float_of[name])
            else:
                f = g.add_tensor(Tensor(g.unique_name(f"{name}_dequantized"), t.shape))
                nodes.append(Node("DEQUANTIZE", [name], [f.name], {}, f"{node.name}_dequantize"))
                new_inputs.append(f.name)
        outs, requant = [], []
        for name in node.outputs:
            t = g.tensor(name)
            f = g.add_tensor(Tensor(g.unique_name(f"{name}_float"), t.shape))
            outs.append(f.name)
            float_of[name] = f.name
            requant.append(Node("QUANTIZE", [f.name], [name], {}, f"{node.name}_quantize"))
        node.inputs, node.outputs = new_inputs, outs
        nodes += [node, *requant]
    g.nodes = nodes
    g.remove_unused()
    g.meta = dict(g.meta)
    g.meta["float_layers"] = sorted(wanted)
    return g
