"""ADD: int8 element-wise addition with NumPy broadcasting, TFLite Micro's ``AddFunc``.

Both inputs are brought to a common scale ``2 * max(s1, s2)`` with 20 bits of headroom,
summed, then rescaled to the output scale; the fused activation is a final clamp.
int16 (16x8) takes the same general-scale path with 15 bits of headroom
(``AddGeneralParamScale``) and saturates to int16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import broadcast_shape, per_tensor, same_dtype
from microquant.runtime.ops._common import activation_range, float_activation

LEFT_SHIFT = 20  # int8 headroom TFLite uses
LEFT_SHIFT_INT16 = 15


@dataclass(frozen=True)
class AddParams:
    input1_offset: int  # -zero_point of input 1
    input2_offset: int
    output_offset: int  # +zero_point of the output
    input1_multiplier: int
    input1_shift: int  # <= 0
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int
    left_shift: int = LEFT_SHIFT
    dtype: str = "int8"


def _smaller_than_one(node: Node, real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplierSmallerThanOneExp`` (CHECKs 0 < real < 1)."""
    if not 0.0 < real < 1.0:
        raise MicroquantError(
            f"{node.op} {node.name!r}: rescale factor {real:g} outside (0, 1); "
            "the output scale is too small for the input scales"
        )
    return quantize_multiplier(real)


class Add(Kernel, op="ADD"):
    def prepare(self, node: Node, graph: Graph) -> AddParams:
        broadcast_shape(node, graph)
        s1, zp1 = per_tensor(node, graph, node.inputs[0])
        s2, zp2 = per_tensor(node, graph, node.inputs[1])
        so, zpo = per_tensor(node, graph, node.outputs[0])
        dtype = same_dtype(node, graph)
        left = LEFT_SHIFT_INT16 if dtype == "int16" else LEFT_SHIFT
        # Same double arithmetic as TFLite Micro's CalculateOpDataAdd.
        twice_max_input_scale = 2.0 * max(s1, s2)
        m1, sh1 = _smaller_than_one(node, s1 / twice_max_input_scale)
        m2, sh2 = _smaller_than_one(node, s2 / twice_max_input_scale)
        mo, sho = _smaller_than_one(node, twice_max_input_scale / ((1 << left) * so))
        act_min, act_max = activation_range(node.attrs.get("activation", "NONE"), graph,
                                            node.outputs[0])
        return AddParams(-zp1, -zp2, zpo, m1, sh1, m2, sh2, mo, sho, act_min, act_max, left,
                         dtype)

    def run(self, params: AddParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per element, in int32 (no intermediate can overflow for int8 inputs)::

            a_i    = (x_i + offset_i) << 20                          |a_i| < 2**28
            r_i    = RDBPOT(SRDHM(a_i, m_i), -shift_i)               (i = 1, 2)
            y      = RDBPOT(SRDHM(r_1 + r_2, m_out), -shift_out) + zp_out
            out    = clamp(y, act_min, act_max) as int8   (int16: << 15, as int16)

        SRDHM rounds half away from zero; RDBPOT rounds half away from zero.
        Broadcasting follows NumPy (same result as TFLM's BroadcastAdd6DSlow).
        """
        p = params
        x1, x2 = np.broadcast_arrays(as_i64(inputs[0]), as_i64(inputs[1]))
        scaled1 = mbqm((x1 + p.input1_offset) << p.left_shift, p.input1_multiplier,
                       p.input1_shift)
        scaled2 = mbqm((x2 + p.input2_offset) << p.left_shift, p.input2_multiplier,
                       p.input2_shift)
        raw = mbqm(scaled1 + scaled2, p.output_multiplier, p.output_shift) + p.output_offset
        return [clamp(raw, p.act_min, p.act_max).astype(p.dtype)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        y = np.add(np.asarray(inputs[0], np.float32), np.asarray(inputs[1], np.float32))
        return [float_activation(y, node.attrs.get("activation", "NONE")).astype(np.float32)]
