"""DEQUANTIZE: int8 -> float32, TFLM's ``reference_ops::Dequantize``.

The graph's int/float boundary (its run step produces float by definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import qparams


@dataclass
class DequantizeParams:
    scale: np.float32
    zero_point: int


class Dequantize(Kernel, op="DEQUANTIZE"):
    def prepare(self, node: Node, graph: Graph) -> DequantizeParams:
        q = qparams(graph, node.inputs[0])
        if q.scale.size != 1:
            raise MicroquantError(f"DEQUANTIZE {node.name!r}: input must be per-tensor quantized")
        return DequantizeParams(np.float32(q.scale[0]), int(q.zero_point[0]))

    def run(self, params: DequantizeParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``float32(double(scale) * (q - zp))``. The product of a float32 scale and an
        integer below 2**9 is exact in double, so a float32 multiply rounds identically."""
        q = inputs[0].astype(np.int64) - params.zero_point
        return [(params.scale * q.astype(np.float32)).astype(np.float32)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Identity on real values."""
        return [np.asarray(inputs[0], dtype=np.float32)]
