"""MAX_POOL_2D: int8 maximum over each window, TFLM's ``reference_integer_ops::MaxPool``.

Padded positions never win (TFLM starts from the int8 minimum and skips them; padding with
the dtype minimum is the same). Input and output share scale and zero point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import clamp
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
class MaxPoolParams:
    window: Window
    act_min: int
    act_max: int


def _window_max(x: np.ndarray, window: Window, fill: int | float) -> np.ndarray:
    acc = None
    for view in windows(pad_spatial(x, window, fill), window):
        acc = view if acc is None else np.maximum(acc, view)
    return acc


class MaxPool2D(Kernel, op="MAX_POOL_2D"):
    def prepare(self, node: Node, graph: Graph) -> MaxPoolParams:
        window = pool_window(node, graph)
        check_same_qparams(node, graph)
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), graph, node.outputs[0])
        return MaxPoolParams(window, lo, hi)

    def run(self, params: MaxPoolParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """``max`` of the window's in-image values (padding = the dtype minimum, never above
        them), clamped to the fused-activation range; same dtype. No arithmetic, no rounding."""
        p = params
        x = inputs[0]
        m = _window_max(x.astype(np.int64), p.window, int(np.iinfo(x.dtype).min))
        return [clamp(m, p.act_min, p.act_max).astype(x.dtype)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 window maximum (padding = -inf), then the fused activation."""
        window = pool_window(node, graph)
        y = _window_max(np.asarray(inputs[0], dtype=np.float32), window, -np.inf)
        return [float_activation(y, node.attrs.get("activation", "NONE")).astype(np.float32)]
