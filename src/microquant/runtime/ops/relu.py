"""RELU: TFLM's ``ReluQuantized`` - a requantization from the input to the output scale,
clamped at the output's real zero."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import QMAX, QMIN, quantize_multiplier
from microquant.runtime.fixedpoint import clamp, mbqm
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import qparams


@dataclass
class ReluParams:
    mult: int
    shift: int
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int


class Relu(Kernel, op="RELU"):
    def prepare(self, node: Node, graph: Graph) -> ReluParams:
        qi = qparams(graph, node.inputs[0])
        qo = qparams(graph, node.outputs[0])
        dtype = graph.tensor(node.outputs[0]).dtype
        mult, shift = quantize_multiplier(
            float(np.float32(qi.scale[0])) / float(np.float32(qo.scale[0]))
        )
        out_zp = int(qo.zero_point[0])
        # TFLM: max(qmin, out_zp + roundf(0 / s_out)) and qmax (no upper bound).
        return ReluParams(
            mult, shift, int(qi.zero_point[0]), out_zp, max(QMIN[dtype], out_zp), QMAX[dtype]
        )

    def run(self, params: ReluParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``y = clamp(out_zp + mbqm(x - in_zp, m, s), max(qmin, out_zp), qmax)`` with
        ``(m, s) = QuantizeMultiplier(double(s_in) / double(s_out))`` (double rounding)."""
        p = params
        x = inputs[0]
        y = mbqm(x.astype(np.int64) - p.in_zp, np.int64(p.mult), np.int64(p.shift)) + p.out_zp
        return [clamp(y, p.act_min, p.act_max).astype(x.dtype)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        return [np.maximum(np.asarray(inputs[0], dtype=np.float32), np.float32(0))]
