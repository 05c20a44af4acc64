"""Helpers shared by several kernels' ``prepare`` steps (float allowed here).

Mirrors TFLite's ``CalculateActivationRangeQuantized`` and ``ComputePaddingHeightWidth``.
"""

from __future__ import annotations

import numpy as np

from microquant.ir.graph import Graph, QuantParams
from microquant.quant.primitives import QMAX, QMIN, round_half_away


def qparams(graph: Graph, name: str) -> QuantParams:
    t = graph.tensor(name)
    if t.quant is None:
        raise ValueError(f"tensor {name!r} has no quantization parameters")
    return t.quant


def activation_range(activation: str, graph: Graph, output: str) -> tuple[int, int]:
    """Quantized clamp bounds of a fused activation on ``output`` (TFLite semantics)."""
    t = graph.tensor(output)
    qmin, qmax = QMIN[t.dtype], QMAX[t.dtype]
    if activation in (None, "NONE"):
        return qmin, qmax
    q = qparams(graph, output)
    scale = np.float32(q.scale[0])
    zp = int(q.zero_point[0])

    def quantize(f: float) -> int:
        return zp + int(round_half_away(np.float32(f) / scale))

    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise ValueError(f"unsupported fused activation {activation!r}")


def float_activation(x: np.ndarray, activation: str | None) -> np.ndarray:
    """Apply a fused activation in float."""
    if activation in (None, "NONE"):
        return x
    if activation == "RELU":
        return np.maximum(x, 0)
    if activation == "RELU6":
        return np.clip(x, 0, 6)
    if activation == "RELU_N1_TO_1":
        return np.clip(x, -1, 1)
    raise ValueError(f"unsupported fused activation {activation!r}")


def out_size(padding: str, size: int, filt: int, stride: int, dilation: int = 1) -> int:
    """TFLite ``ComputeOutSize``."""
    eff = (filt - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def pad_before(padding: str, size: int, filt: int, stride: int, dilation: int = 1) -> int:
    """Leading padding TFLite uses (``ComputePaddingWithOffset``); trailing gets the odd one."""
    if padding != "SAME":
        return 0
    eff = (filt - 1) * dilation + 1
    out = out_size(padding, size, filt, stride, dilation)
    total = (out - 1) * stride + eff - size
    return max(total // 2, 0)
