"""AVERAGE_POOL_2D: int8 average over each window, TFLM's ``reference_integer_ops::AveragePool``.

Padded positions are excluded from both the sum and the count (TFLite's definition, ONNX
``count_include_pad=0``). Input and output share scale and zero point, so the mean of the
raw int8 values is the output. int16 inputs (16x8) take the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import clamp, trunc_div
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import activation_range, float_activation
from microquant.runtime.ops._conv_common import (
    Window,
    check_same_qparams,
    pad_spatial,
    pool_window,
    windows,
)


@dataclass
class AvgPoolParams:
    window: Window
    count: np.ndarray  # [1, out_h, out_w, 1] int64: input pixels inside each window
    act_min: int
    act_max: int


def _window_sum(x: np.ndarray, window: Window) -> np.ndarray:
    acc = None
    for view in windows(pad_spatial(x, window, 0), window):
        acc = view if acc is None else acc + view
    return acc


class AveragePool2D(Kernel, op="AVERAGE_POOL_2D"):
    def prepare(self, node: Node, graph: Graph) -> AvgPoolParams:
        window = pool_window(node, graph)
        check_same_qparams(node, graph)
        inside = np.ones((1, window.in_h, window.in_w, 1), dtype=np.int64)
        count = _window_sum(inside, window)
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), graph, node.outputs[0])
        return AvgPoolParams(window, count, lo, hi)

    def run(self, params: AvgPoolParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``acc = sum of the window's in-image int8 values`` (int32), ``c`` = their count;
        ``avg = (acc + c/2) / c`` if ``acc > 0`` else ``(acc - c/2) / c`` with C truncating
        division (rounds half away from zero); clamp to the fused-activation range; int8."""
        p = params
        acc = _window_sum(inputs[0].astype(np.int64), p.window)
        half = p.count // 2
        avg = trunc_div(np.where(acc > 0, acc + half, acc - half), p.count)
        return [clamp(avg, p.act_min, p.act_max).astype(inputs[0].dtype)]  # int8 or int16

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 mean over the in-image part of each window, then the fused activation."""
        window = pool_window(node, graph)
        x = np.asarray(inputs[0], dtype=np.float32)
        count = _window_sum(np.ones((1, window.in_h, window.in_w, 1), np.float32), window)
        y = _window_sum(x, window) / count
        return [float_activation(y, node.attrs.get("activation", "NONE")).astype(np.float32)]
