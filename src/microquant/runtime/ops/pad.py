"""PAD: constant padding with the quantized zero, TFLM's ``reference_ops::Pad``.

Inputs ``x`` and ``paddings`` (int32/int64 constant ``[rank, 2]``: before/after per axis).
A quantized tensor is padded with the *output* zero point (real 0.0), which is what TFLM
uses when no ``constant_values`` input is given; input and output share quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.kernel import Kernel


@dataclass
class PadParams:
    pads: tuple[tuple[int, int], ...]
    value: int


def _pads(node: Node, graph: Graph) -> tuple[tuple[int, int], ...]:
    data = graph.const(node.inputs[1])
    rank = len(graph.tensor(node.inputs[0]).shape)
    if data is None or data.shape != (rank, 2):
        raise MicroquantError(f"PAD {node.name!r}: paddings must be a constant [{rank}, 2] tensor")
    if (data < 0).any():
        raise MicroquantError(f"PAD {node.name!r}: negative paddings are not supported")
    return tuple((int(a), int(b)) for a, b in data)


class Pad(Kernel, op="PAD"):
    def prepare(self, node: Node, graph: Graph) -> PadParams:
        out = graph.tensor(node.outputs[0])
        value = 0 if out.quant is None else int(out.quant.zero_point[0])
        return PadParams(_pads(node, graph), value)

    def run(self, params: PadParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Copy ``x`` into the middle of an array filled with ``out_zp``; no arithmetic."""
        return [np.pad(inputs[0], params.pads, constant_values=params.value)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 zero padding."""
        x = np.asarray(inputs[0], dtype=np.float32)
        return [np.pad(x, _pads(node, graph), constant_values=0.0)]
