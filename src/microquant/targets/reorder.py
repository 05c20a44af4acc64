"""Operator reordering: a memory-aware topological order of the graph's nodes.

Greedy list scheduling: among the nodes whose inputs all exist, always run the one that
leaves the fewest live bytes (bytes of its outputs minus the inputs it is the last reader
of; ties: lowest node index). The planner tries this order besides the graph's own and
keeps whichever gives the smaller arena.

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["y", "z"])
    >>> for n, k in (("x", 8), ("y", 64), ("z", 4)):
    ...     _ = g.add_tensor(Tensor(n, (1, k), "int8"))
    >>> g.nodes += [Node("RELU", ["x"], ["y"]), Node("RELU", ["x"], ["z"])]
    >>> memory_aware_order(g)
    [1, 0]
"""

from __future__ import annotations

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.targets.lifetimes import activation_names, tensor_bytes


def memory_aware_order(graph: Graph) -> list[int]:
    """Topological order that always runs the ready node leaving the fewest live bytes."""
    names = set(activation_names(graph))
    size = {n: tensor_bytes(graph, n) for n in names}
    readers: dict[str, set[int]] = {n: set() for n in names}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            if t in names:
                readers[t].add(i)
    available = set(graph.inputs)
    done: list[int] = []
    remaining = set(range(len(graph.nodes)))
    keep = set(graph.outputs)
    while remaining:
        ready = [i for i in sorted(remaining)
                 if all(t in available or t not in names for t in graph.nodes[i].inputs if t)]
        if not ready:
            raise MicroquantError("graph has a cycle or a tensor nobody produces")

        def delta(i: int) -> tuple[int, int]:
            node = graph.nodes[i]
            grow = sum(size[o] for o in node.outputs if o in names)
            free = sum(size[t] for t in set(node.inputs) if t in names and t not in keep
                       and readers[t] - set(done) == {i})
            return (grow - free, i)

        best = min(ready, key=delta)
        done.append(best)
        remaining.discard(best)
        available.update(graph.nodes[best].outputs)
    return done
