"""RELU6: TFLM's ``Relu6Quantized`` - a clamp in the *input's* quantized domain.

TFLM does not rescale: it clamps to ``[in_zp, quantize(6.0, s_in, in_zp)]`` and writes the
raw values, so the output must share the input's quantization (the quantizer ensures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import QMAX, QMIN, round_half_away
from microquant.runtime.fixedpoint import clamp
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import qparams


@dataclass
class Relu6Params:
    zero: int
    six: int


class Relu6(Kernel, op="RELU6"):
    def prepare(self, node: Node, graph: Graph) -> Relu6Params:
        qi = qparams(graph, node.inputs[0])
        dtype = graph.tensor(node.inputs[0]).dtype
        zp = int(qi.zero_point[0])
        # FloatToQuantizedType: round(6.0f / s_in) (float32 division) + zp, saturated.
        six = int(round_half_away(np.float32(6.0) / np.float32(qi.scale[0]))) + zp
        return Relu6Params(zp, min(max(six, QMIN[dtype]), QMAX[dtype]))

    def run(self, params: Relu6Params, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``y = min(max(x, in_zp), six_q)``: pure clamp, no arithmetic on the values."""
        x = inputs[0]
        return [clamp(x, params.zero, params.six).astype(x.dtype)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        return [np.clip(np.asarray(inputs[0], dtype=np.float32), 0, 6).astype(np.float32)]
