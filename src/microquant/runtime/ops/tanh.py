"""TANH: int8 hyperbolic tangent, TFLite Micro's ``reference_integer_ops::Tanh``.

Output quantization is fixed: scale 1/128, zero point 0 (the kernel adds no output
offset). The function is gemmlowp's fixed-point ``tanh`` on a Q4.27 input.
"""

from __future__ import annotations

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.runtime import gemmlowp as gl
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm, rdbpot
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import require_output
from microquant.runtime.ops._sigmoid_common import INPUT_INTEGER_BITS, SigmoidParams, sigmoid_params

OUTPUT_FRACTIONAL_BITS = 7  # Q0.31 -> 1/128 steps: drop 31 - 7 bits


class Tanh(Kernel, op="TANH"):
    def prepare(self, node: Node, graph: Graph) -> SigmoidParams:
        require_output(node, graph, 1.0 / 128, 0)
        return sigmoid_params(node, graph)

    def run(self, params: SigmoidParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per element, int32::

            d   = x - zp_in;  d <= -radius -> -128;  d >= radius -> 127;  otherwise
            z   = MBQM(d, multiplier, left_shift)          Q4.27
            y   = tanh(z)                                  Q0.31 (gemmlowp)
            out = clamp(RDBPOT(y, 24), -128, 127)
        """
        p = params
        d = as_i64(inputs[0]) - p.input_zero_point
        z = mbqm(d, p.input_multiplier, p.input_left_shift)
        y = gl.tanh(z, INPUT_INTEGER_BITS)
        out = clamp(rdbpot(y, 31 - OUTPUT_FRACTIONAL_BITS), -128, 127)
        out = np.where(d <= -p.input_range_radius, -128,
                       np.where(d >= p.input_range_radius, 127, out))
        return [out.astype(np.int8)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.tanh(np.asarray(inputs[0], np.float32)).astype(np.float32)]
