"""The reference runtime: a short topological loop over kernels.

Quantized graphs run ``prepare`` once per node and then ``run`` per invocation - the
integer-only oracle that the ``.tflite`` export and the C export are checked against.
Float (lowered, unquantized) graphs run ``run_float``.

Example:
    >>> from microquant.ir import Graph, Tensor, Node
    >>> g = Graph(inputs=["x"], outputs=["y"])
    >>> _ = g.add_tensor(Tensor("x", (1, 2), "int8"))
    >>> _ = g.add_tensor(Tensor("y", (1, 2), "int8"))
    >>> g.nodes.append(Node("RELU", ["x"], ["y"]))
    >>> g.tensor("x").quant = g.tensor("y").quant = QuantParams([0.1], [0])
    >>> Evaluator(g).run([np.array([[-3, 5]], np.int8)])[0].tolist()
    [[0, 5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, QuantParams  # noqa: F401  (QuantParams for doctest)
from microquant.runtime.kernel import get_kernel


def is_quantized(graph: Graph) -> bool:
    """True when any activation tensor carries integer data (the graph runs ``run``)."""
    return any(
        t.dtype in ("int8", "int16") and not t.is_const for t in graph.tensors.values()
    )


class Evaluator:
    """Runs a graph; ``mode`` is ``"int"`` or ``"float"`` (default: from the graph)."""

    def __init__(self, graph: Graph, mode: str | None = None) -> None:
        self.graph = graph
        self.mode = mode or ("int" if is_quantized(graph) else "float")
        self.kernels = [get_kernel(n.op) for n in graph.nodes]
        self.params: list[Any] = []
        if self.mode == "int":
            self.params = [k.prepare(n, graph) for k, n in zip(self.kernels, graph.nodes)]

    def _feeds(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict:
        g = self.graph
        if not isinstance(feeds, Mapping):
            if len(feeds) != len(g.inputs):
                raise MicroquantError(f"model takes {len(g.inputs)} inputs, got {len(feeds)}")
            feeds = dict(zip(g.inputs, feeds))
        values: dict[str, np.ndarray | None] = {"": None}
        for name in g.inputs:
            if name not in feeds:
                raise MicroquantError(f"missing input {name!r}")
            t = g.tensor(name)
            arr = np.asarray(feeds[name])
            if arr.size != t.size:
                raise MicroquantError(f"input {name!r} has {arr.size} values, expected shape {t.shape}")
            values[name] = arr.reshape(t.shape).astype(t.dtype, copy=False)
        for name, t in g.tensors.items():
            if t.is_const:
                values[name] = t.data
        return values

    def run_all(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict:
        """Every tensor's value after one invocation, by name."""
        values = self._feeds(feeds)
        g = self.graph
        for i, (kernel, node) in enumerate(zip(self.kernels, g.nodes)):
            ins = [values[name] for name in node.inputs]
            if self.mode == "int":
                outs = kernel.run(self.params[i], ins)
            else:
                outs = kernel.run_float(node, g, ins)
            for name, arr in zip(node.outputs, outs):
                t = g.tensor(name)
                values[name] = np.asarray(arr).reshape(t.shape).astype(t.dtype, copy=False)
        return values

    def run(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Graph outputs for one invocation (batch 1)."""
        values = self.run_all(feeds)
        return [values[name] for name in self.graph.outputs]
