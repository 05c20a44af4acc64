"""Shared ``prepare`` arithmetic of the int8 LOGISTIC and TANH kernels.

TFLite Micro rescales the zero-point-corrected int8 input to a Q4.27 fixed-point value
with a multiplier taken straight from ``frexp(s_in * 2**27)`` and saturates inputs beyond
``input_range_radius`` without evaluating the function. The int16 kernels instead rescale
to the ``sigmoid(i/24)`` table's step (see :mod:`._int16`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import round_half_away
from microquant.runtime.ops._binary import per_tensor
from microquant.runtime.ops._int16 import check_int16_io, sigmoid_input_params
from microquant.runtime.ops.softmax import input_radius

INPUT_INTEGER_BITS = 4  # function input format Q4.27


@dataclass(frozen=True)
class SigmoidParams:
    input_zero_point: int
    input_multiplier: int
    input_left_shift: int  # frexp exponent, any sign
    input_range_radius: int  # |x - zp| >= radius saturates the output


@dataclass(frozen=True)
class SigmoidInt16Params:
    """int16 LOGISTIC/TANH: input rescale to the sigmoid table's 1/(3*4096) steps."""

    input_multiplier: int  # 0: power-of-two scale, multiplier 3 << input_left_shift
    input_left_shift: int


def sigmoid_int16_params(node: Node, graph: Graph, pot_shifts: tuple[int, ...]
                         ) -> SigmoidInt16Params:
    """TFLM's int16 Prepare (LOGISTIC: ``pot_shifts=(0,)``, TANH: ``(0, 1)``)."""
    check_int16_io(node, graph)
    scale, _ = per_tensor(node, graph, node.inputs[0])
    mult, shift = sigmoid_input_params(scale, pot_shifts)
    if mult > 32767:
        raise MicroquantError(
            f"{node.op} {node.name!r}: int16 input scale {scale:g} is too large "
            "(TFLite needs scale * 3 * 4096 <= 32767)"
        )
    return SigmoidInt16Params(mult, shift)


def sigmoid_params(node: Node, graph: Graph) -> SigmoidParams:
    """``CalculateArithmeticOpDataLogistic`` / TANH's ``CalculateArithmeticOpData`` for int8."""
    scale, zp = per_tensor(node, graph, node.inputs[0])
    real = scale * float(1 << (31 - INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    multiplier = int(round_half_away(q * float(1 << 31)))
    radius = input_radius(INPUT_INTEGER_BITS, shift)
    return SigmoidParams(zp, multiplier, shift, radius)
