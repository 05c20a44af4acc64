"""Small graph-surgery helpers shared by the passes."""

from __future__ import annotations

from microquant.ir.graph import Graph, Node


def rename_tensor(graph: Graph, old: str, new: str) -> None:
    """Give tensor ``old`` the name ``new`` everywhere (``new`` must be unused)."""
    t = graph.tensors.pop(old)
    t.name = new
    graph.tensors[new] = t
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    graph.inputs = [new if i == old else i for i in graph.inputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]
    src = graph.meta.get("calib_source")
    if src is not None and old in src:
        src[new] = src.pop(old)


def bypass(graph: Graph, node: Node, src: str) -> bool:
    """Remove ``node`` whose (single) output equals tensor ``src``; rewire its readers.

    When the output is a graph output the producer of ``src`` is renamed instead, so
    graph output names survive. Returns False when that is impossible (``src`` is a graph
    input/output or a constant).
    """
    out = node.outputs[0]
    if out in graph.outputs:
        t = graph.tensors.get(src)
        if t is None or t.is_const or src in graph.inputs or src in graph.outputs:
            return False
        graph.nodes.remove(node)
        graph.tensors.pop(out, None)
        rename_tensor(graph, src, out)
        return True
    graph.nodes.remove(node)
    graph.replace_uses(out, src)
    graph.tensors.pop(out, None)
    return True


def single_consumer(graph: Graph, name: str) -> Node | None:
    """The only reader of activation ``name`` (None if several, none, or a graph output)."""
    if name in graph.outputs:
        return None
    cons = graph.consumers(name)
    return cons[0] if len(cons) == 1 else None
