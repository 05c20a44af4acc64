"""RESHAPE: same values, new shape (the output tensor's shape); no arithmetic."""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.kernel import Kernel


def _target(node: Node, graph: Graph) -> tuple[int, ...]:
    x = graph.tensor(node.inputs[0])
    y = graph.tensor(node.outputs[0])
    if x.size != y.size:
        raise MicroquantError(
            f"RESHAPE {node.name!r}: cannot reshape {x.shape} ({x.size} values) to {y.shape}"
        )
    return y.shape


class Reshape(Kernel, op="RESHAPE"):
    def prepare(self, node: Node, graph: Graph) -> tuple[int, ...]:
        return _target(node, graph)

    def run(self, params: tuple[int, ...], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Row-major reshape to the output shape (TFLM copies the buffer); values unchanged."""
        return [inputs[0].reshape(params)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        return [np.asarray(inputs[0], dtype=np.float32).reshape(_target(node, graph))]
