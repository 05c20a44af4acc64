"""LOGISTIC: int8 sigmoid, TFLite Micro's ``reference_integer_ops::Logistic``.

Output quantization is fixed: scale 1/256, zero point -128. The function itself is
gemmlowp's fixed-point ``logistic`` on a Q4.27 input (see :mod:`microquant.runtime.gemmlowp`).

int16 (16x8): input zero point 0, output fixed at scale 1/32768, zero point 0; the value is
interpolated in TFLite's ``sigmoid(i/24)`` table (``reference_integer_ops::Logistic``).
"""

from __future__ import annotations

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.runtime import gemmlowp as gl
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm, rdbpot
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import require_output
from microquant.runtime.ops._int16 import rescale_sigmoid_input, sigmoid_lookup
from microquant.runtime.ops._sigmoid_common import (
    INPUT_INTEGER_BITS,
    SigmoidInt16Params,
    SigmoidParams,
    sigmoid_int16_params,
    sigmoid_params,
)

OUTPUT_INTEGER_BITS = 8  # Q0.31 -> 1/256 steps: drop 31 - 8 bits


class Logistic(Kernel, op="LOGISTIC"):
    def prepare(self, node: Node, graph: Graph) -> SigmoidParams | SigmoidInt16Params:
        if graph.tensor(node.inputs[0]).dtype == "int16":
            require_output(node, graph, 1.0 / 32768, 0)
            return sigmoid_int16_params(node, graph, (0,))
        require_output(node, graph, 1.0 / 256, -128)
        return sigmoid_params(node, graph)

    def run(self, params: SigmoidParams | SigmoidInt16Params,
            inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per element, int32::

            d   = x - zp_in;  d <= -radius -> -128;  d >= radius -> 127;  otherwise
            z   = MBQM(d, multiplier, left_shift)          Q4.27
            y   = logistic(z)                              Q0.31 (gemmlowp)
            out = clamp(RDBPOT(y, 23) - 128, -128, 127)
        """
        p = params
        if isinstance(p, SigmoidInt16Params):
            return [_logistic_int16(p, inputs[0])]
        d = as_i64(inputs[0]) - p.input_zero_point
        z = mbqm(d, p.input_multiplier, p.input_left_shift)
        y = gl.logistic(z, INPUT_INTEGER_BITS)
        out = clamp(rdbpot(y, 31 - OUTPUT_INTEGER_BITS) - 128, -128, 127)
        out = np.where(d <= -p.input_range_radius, -128,
                       np.where(d >= p.input_range_radius, 127, out))
        return [out.astype(np.int8)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], np.float32)
        return [(1.0 / (1.0 + np.exp(-x))).astype(np.float32)]


def _logistic_int16(p: SigmoidInt16Params, x: np.ndarray) -> np.ndarray:
    """Per element (uint32 arithmetic as in TFLite)::

        v = (x * m + round) >> shift          steps of 1/(3*4096); |v| >> 9 indexes the table
        r = t[i] << 9 + frac * (t[i+1] - t[i])  (i = |v| >> 9 < 255, else 0x7FFF << 10)
        out = (r + 512) >> 10 for v >= 0, else (2**25 - r + 511) >> 10     (Q0.15)
    """
    v = rescale_sigmoid_input(x, p.input_multiplier, p.input_left_shift)
    a = np.abs(v)
    r = np.where((a >> 9) >= 255, 0x7FFF << 10, sigmoid_lookup(a, 9))
    r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1) >> 10
    return (((r + (1 << 15)) & 0xFFFF) - (1 << 15)).astype(np.int16)
