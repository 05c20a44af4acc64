"""Tensor lifetimes over a node execution order, and the arena bytes live at each step.

Step ``i`` is the ``i``-th node run. TFLite Micro's rules: graph inputs are live from step 0,
a tensor produced at step ``i`` is live from ``i`` to its last consumer, graph outputs to the
last step. Constants (weights, biases, shape operands) live in flash, never in the arena.

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["z"])
    >>> for n in "xyz":
    ...     _ = g.add_tensor(Tensor(n, (1, 64), "int8"))
    >>> g.nodes += [Node("RELU", ["x"], ["y"]), Node("RELU", ["y"], ["z"])]
    >>> lifetimes(g, [0, 1])
    {'x': (0, 0), 'y': (0, 1), 'z': (1, 1)}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph

ALIGN = 16  # TFLM aligns every arena tensor to 16 bytes


def align_up(n: int, a: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``a`` (``align_up(17) == 32``)."""
    return (n + a - 1) // a * a


def tensor_bytes(graph: Graph, name: str) -> int:
    """Unaligned bytes of tensor ``name`` (elements times item size)."""
    t = graph.tensor(name)
    return t.size * np.dtype(t.dtype).itemsize


def activation_names(graph: Graph) -> list[str]:
    """Non-constant tensors the arena must hold, in tensor-table order."""
    used: set[str] = set(graph.inputs) | set(graph.outputs)
    for n in graph.nodes:
        used.update(i for i in n.inputs if i)
        used.update(n.outputs)
    return [k for k, t in graph.tensors.items() if k in used and not t.is_const]


def lifetimes(graph: Graph, order: Sequence[int]) -> dict[str, tuple[int, int]]:
    """``name -> (first, last)`` step, TFLM's rules (inputs from 0, outputs to the end)."""
    names = set(activation_names(graph))
    last_step = max(len(order) - 1, 0)
    first: dict[str, int] = {n: 0 for n in graph.inputs if n in names}
    last: dict[str, int] = dict(first)
    for step, idx in enumerate(order):
        node = graph.nodes[idx]
        for o in node.outputs:
            if o in names and o not in first:
                first[o] = step
                last[o] = step
        for i in node.inputs:
            if i in names:
                if i not in first:
                    raise MicroquantError(f"tensor {i!r} is read before it is produced")
                last[i] = max(last[i], step)
    for o in graph.outputs:
        if o in first:
            last[o] = last_step
    return {n: (first[n], last[n]) for n in first}


def overlap_time(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two inclusive ``(first, last)`` step ranges share a step."""
    return not (a[0] > b[1] or b[0] > a[1])


def live_bytes(plan_offsets: dict[str, int], sizes: dict[str, int],
               life: dict[str, tuple[int, int]], steps: int) -> list[int]:
    """Distinct arena bytes occupied at each step (overlapping aliases count once)."""
    out = []
    for t in range(max(steps, 1)):
        ivs = sorted((plan_offsets[n], plan_offsets[n] + sizes[n])
                     for n, (a, b) in life.items() if a <= t <= b and sizes[n])
        total, end = 0, -1
        for lo, hi in ivs:
            if hi <= end:
                continue
            total += hi - max(lo, end)
            end = hi
        out.append(total)
    return out
