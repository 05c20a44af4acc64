"""CONCATENATION: join inputs along ``axis``, TFLM's ``reference_ops::Concatenation``.

TFLM copies the raw int8 values without rescaling, so every input must already carry the
output's scale and zero point (the quantizer enforces this shared-scale constraint); fused
activations are rejected by TFLM and here.
"""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.kernel import Kernel


def _axis(node: Node, graph: Graph) -> int:
    rank = len(graph.tensor(node.outputs[0]).shape)
    axis = int(node.attrs.get("axis", 0))
    if not -rank <= axis < rank:
        raise MicroquantError(f"CONCATENATION {node.name!r}: axis {axis} out of range")
    if node.attrs.get("activation", "NONE") not in (None, "NONE"):
        raise MicroquantError(
            f"CONCATENATION {node.name!r}: fused activations are not supported by TFLite Micro"
        )
    return axis % rank


class Concatenation(Kernel, op="CONCATENATION"):
    def prepare(self, node: Node, graph: Graph) -> int:
        return _axis(node, graph)

    def run(self, params: int, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Raw copy of each input's values into its slice of the output; no arithmetic."""
        return [np.concatenate(inputs, axis=params)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        xs = [np.asarray(x, dtype=np.float32) for x in inputs]
        return [np.concatenate(xs, axis=_axis(node, graph))]
