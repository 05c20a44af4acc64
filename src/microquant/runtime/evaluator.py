"""The reference runtime: a short topological loop over kernels.

Quantized graphs run ``prepare`` once per node and then ``run`` per invocation - the
integer-only oracle that the ``.tflite`` export and the C export are checked against.
Float (lowered, unquantized) graphs run ``run_float``.

Mixed graphs (e.g. one layer left in float between a DEQUANTIZE and a QUANTIZE, see
:func:`microquant.report.layers.float_fallback`) run in ``"int"`` mode: a node whose
outputs are all float32 (other than QUANTIZE/DEQUANTIZE, the float/int boundary) runs
``run_float`` and skips ``prepare``.

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
from microquant.ir.graph import Graph, Node, QuantParams  # noqa: F401  (QuantParams for doctest)
from microquant.runtime.kernel import get_kernel

BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def is_quantized(graph: Graph) -> bool:
    """True when any activation tensor carries integer data (the graph runs ``run``)."""
    return any(t.dtype in ("int8", "int16") and not t.is_const for t in graph.tensors.values())


def _is_float_node(node: Node, graph: Graph) -> bool:
    """A float op inside a quantized graph: float32 outputs, not a QUANTIZE/DEQUANTIZE."""
    return node.op not in BOUNDARY_OPS and all(
        graph.tensor(o).dtype == "float32" for o in node.outputs
    )


class Evaluator:
    """Runs a graph; ``mode`` is ``"int"`` or ``"float"`` (default: from the graph)."""

    def __init__(self, graph: Graph, mode: str | None = None) -> None:
        self.graph = graph
        self.mode = mode or ("int" if is_quantized(graph) else "float")
        self.kernels = [get_kernel(n.op) for n in graph.nodes]
        self.params: list[Any] = []
        # Per node: run the float kernel? All of them in float mode; in int mode only the
        # float nodes of a mixed graph.
        self.float_nodes = [self.mode != "int" or _is_float_node(n, graph) for n in graph.nodes]
        if self.mode == "int":
            self.params = [
                None if is_float else k.prepare(n, graph)
                for k, n, is_float in zip(self.kernels, graph.nodes, self.float_nodes, strict=True)
            ]

    def _feeds(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict:
        g = self.graph
        if not isinstance(feeds, Mapping):
            if len(feeds) != len(g.inputs):
                raise MicroquantError(f"model takes {len(g.inputs)} inputs, got {len(feeds)}")
            feeds = dict(zip(g.inputs, feeds, strict=True))
        values: dict[str, np.ndarray | None] = {"": None}
        for name in g.inputs:
            if name not in feeds:
                raise MicroquantError(f"missing input {name!r}")
            t = g.tensor(name)
            arr = np.asarray(feeds[name])
            if arr.size != t.size:
                raise MicroquantError(
                    f"input {name!r} has {arr.size} values, expected shape {t.shape}"
                )
            values[name] = arr.reshape(t.shape).astype(t.dtype, copy=False)
        for name, t in g.tensors.items():
            if t.is_const:
                values[name] = t.data
        return values

    def run_all(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict:
        """Every tensor's value after one invocation, by name."""
        values = self._feeds(feeds)
        g = self.graph
        for i, (kernel, node) in enumerate(zip(self.kernels, g.nodes, strict=True)):
            ins = [values[name] for name in node.inputs]
            if not self.float_nodes[i]:
                outs = kernel.run(self.params[i], ins)
            else:
                outs = kernel.run_float(node, g, ins)
            for name, arr in zip(node.outputs, outs, strict=True):
                t = g.tensor(name)
                values[name] = np.asarray(arr).reshape(t.shape).astype(t.dtype, copy=False)
        return values

    def run(self, feeds: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Graph outputs for one invocation (batch 1)."""
        values = self.run_all(feeds)
        return [values[name] for name in self.graph.outputs]
