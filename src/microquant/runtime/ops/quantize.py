"""QUANTIZE: float32 -> int8 (TFLM's ``AffineQuantize``) and int8/int16 -> int8/int16
requantization (TFLM's ``Requantize``).

The float path is the graph's float/int boundary and the one place a run step touches
float; the requantize path is integer-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import QMAX, QMIN, quantize_multiplier, round_half_away
from microquant.runtime.fixedpoint import clamp, mbqm
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import qparams


@dataclass
class QuantizeParams:
    out_scale: np.float32  # used by the float -> int path only
    out_zp: int
    in_zp: int
    mult: int  # requantize path: QuantizeMultiplier(double(s_in) / double(s_out))
    shift: int
    qmin: int
    qmax: int
    dtype: str


class Quantize(Kernel, op="QUANTIZE"):
    def prepare(self, node: Node, graph: Graph) -> QuantizeParams:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        qo = qparams(graph, node.outputs[0])
        if qo.scale.size != 1:
            raise MicroquantError(f"QUANTIZE {node.name!r}: output must be per-tensor quantized")
        if y.dtype not in ("int8", "int16"):
            raise MicroquantError(f"QUANTIZE {node.name!r}: output dtype {y.dtype} unsupported")
        in_zp, mult, shift = 0, 0, 0
        if x.dtype != "float32":
            qi = qparams(graph, node.inputs[0])
            in_zp = int(qi.zero_point[0])
            mult, shift = quantize_multiplier(
                float(np.float32(qi.scale[0])) / float(np.float32(qo.scale[0]))
            )
        return QuantizeParams(
            np.float32(qo.scale[0]),
            int(qo.zero_point[0]),
            in_zp,
            mult,
            shift,
            QMIN[y.dtype],
            QMAX[y.dtype],
            y.dtype,
        )

    def run(self, params: QuantizeParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Float input: ``q = clamp(round(float32(x) / float32(s_out)) + zp)`` - float32
        division, rounding half away from zero (``TfLiteRound``), saturate to the dtype.

        Integer input: ``q = clamp(mbqm(x - in_zp, m, s) + out_zp)`` with
        ``(m, s) = QuantizeMultiplier(double(s_in) / double(s_out))`` (double rounding),
        saturate to the output dtype.
        """
        p = params
        x = inputs[0]
        if x.dtype.kind == "f":
            q = round_half_away(x.astype(np.float32) / p.out_scale) + p.out_zp
            return [np.clip(q, p.qmin, p.qmax).astype(p.dtype)]
        acc = mbqm(x.astype(np.int64) - p.in_zp, np.int64(p.mult), np.int64(p.shift)) + p.out_zp
        return [clamp(acc, p.qmin, p.qmax).astype(p.dtype)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Identity on real values: in a float graph a (re)quantization changes nothing."""
        return [np.asarray(inputs[0], dtype=np.float32)]
