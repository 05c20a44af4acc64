"""Shared ``prepare`` arithmetic of the int8 LOGISTIC and TANH kernels.

TFLite Micro rescales the zero-point-corrected int8 input to a Q4.27 fixed-point value
with a multiplier taken straight from ``frexp(s_in * 2**27)`` and saturates inputs beyond
``input_range_radius`` without evaluating the function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import round_half_away
from microquant.runtime.ops._binary import per_tensor
from microquant.runtime.ops.softmax import input_radius

INPUT_INTEGER_BITS = 4  # function input format Q4.27


@dataclass(frozen=True)
class SigmoidParams:
    input_zero_point: int
    input_multiplier: int
    input_left_shift: int  # frexp exponent, any sign
    input_range_radius: int  # |x - zp| >= radius saturates the output


def sigmoid_params(node: Node, graph: Graph) -> SigmoidParams:
    """``CalculateArithmeticOpDataLogistic`` / TANH's ``CalculateArithmeticOpData`` for int8."""
    scale, zp = per_tensor(node, graph, node.inputs[0])
    real = scale * float(1 << (31 - INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    multiplier = int(round_half_away(q * float(1 << 31)))
    radius = input_radius(INPUT_INTEGER_BITS, shift)
    return SigmoidParams(zp, multiplier, shift, radius)
