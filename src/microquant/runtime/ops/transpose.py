"""TRANSPOSE: permute axes by the constant ``perm`` input; no arithmetic."""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.kernel import Kernel


def _perm(node: Node, graph: Graph) -> tuple[int, ...]:
    data = graph.const(node.inputs[1])
    rank = len(graph.tensor(node.inputs[0]).shape)
    if data is None or sorted(int(p) for p in np.ravel(data)) != list(range(rank)):
        raise MicroquantError(
            f"TRANSPOSE {node.name!r}: perm must be a constant permutation of 0..{rank - 1}"
        )
    return tuple(int(p) for p in np.ravel(data))


class Transpose(Kernel, op="TRANSPOSE"):
    def prepare(self, node: Node, graph: Graph) -> tuple[int, ...]:
        return _perm(node, graph)

    def run(self, params: tuple[int, ...], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``out[i_perm[0], ..] = x[i_0, ..]``, i.e. ``np.transpose(x, perm)``; values unchanged."""
        return [np.ascontiguousarray(np.transpose(inputs[0], params))]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        x = np.asarray(inputs[0], dtype=np.float32)
        return [np.ascontiguousarray(np.transpose(x, _perm(node, graph)))]
