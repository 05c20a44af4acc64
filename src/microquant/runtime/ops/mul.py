"""MUL: int8 element-wise multiplication with NumPy broadcasting, TFLite Micro's
``MulElementwise`` / ``BroadcastMul6DSlow``.

The product of the zero-point-corrected inputs is rescaled once by
``s1 * s2 / s_out`` (TFLite ``QuantizeMultiplier``, any sign of shift). int16 (16x8) uses
the same formula (``MulElementwise<int16_t>``; the product of two int16 fits int32) and
saturates to int16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import broadcast_shape, per_tensor, same_dtype
from microquant.runtime.ops._common import activation_range, float_activation


@dataclass(frozen=True)
class MulParams:
    input1_offset: int  # -zero_point of input 1
    input2_offset: int
    output_offset: int  # +zero_point of the output
    output_multiplier: int
    output_shift: int  # left-shift exponent, may be positive
    act_min: int
    act_max: int
    dtype: str = "int8"


class Mul(Kernel, op="MUL"):
    def prepare(self, node: Node, graph: Graph) -> MulParams:
        broadcast_shape(node, graph)
        s1, zp1 = per_tensor(node, graph, node.inputs[0])
        s2, zp2 = per_tensor(node, graph, node.inputs[1])
        so, zpo = per_tensor(node, graph, node.outputs[0])
        mult, shift = quantize_multiplier(s1 * s2 / so)  # double, as CalculateOpDataMul
        act_min, act_max = activation_range(node.attrs.get("activation", "NONE"), graph,
                                            node.outputs[0])
        dtype = same_dtype(node, graph)
        return MulParams(-zp1, -zp2, zpo, mult, shift, act_min, act_max, dtype)

    def run(self, params: MulParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per element, in int32::

            prod = (x1 + offset1) * (x2 + offset2)                   |prod| <= 2**16
            y    = MBQM(prod, m, shift) + zp_out
            out  = clamp(y, act_min, act_max) as int8

        MBQM is TFLite's double-rounding MultiplyByQuantizedMultiplier: left shift by
        ``max(shift, 0)``, SRDHM, then RDBPOT by ``max(-shift, 0)`` (both round half away
        from zero).
        """
        p = params
        x1, x2 = np.broadcast_arrays(as_i64(inputs[0]), as_i64(inputs[1]))
        prod = (x1 + p.input1_offset) * (x2 + p.input2_offset)
        raw = mbqm(prod, p.output_multiplier, p.output_shift) + p.output_offset
        return [clamp(raw, p.act_min, p.act_max).astype(p.dtype)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = np.multiply(np.asarray(inputs[0], np.float32), np.asarray(inputs[1], np.float32))
        return [float_activation(y, node.attrs.get("activation", "NONE")).astype(np.float32)]
