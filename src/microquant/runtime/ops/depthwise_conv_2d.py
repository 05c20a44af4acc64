"""DEPTHWISE_CONV_2D: int8 per-channel depthwise convolution, TFLM's ``DepthwiseConvPerChannel``.

Inputs ``x [N,H,W,Ci]``, ``w [1,kh,kw,Co]`` with ``Co = Ci * depth_multiplier`` (int8,
symmetric per channel along axis 3), optional ``b [Co]`` int32. Output channel
``oc = ic * depth_multiplier + m`` reads input channel ``ic``.

16x8 (int16 ``x``/``y``, zero point 0): int64 accumulator and bias (optional), rescaled by
:func:`~microquant.runtime.ops._int16.mbqm64`, as TFLM's int16 ``DepthwiseConvPerChannel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import clamp
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import activation_range, float_activation, qparams
from microquant.runtime.ops._conv_common import (
    Window,
    bias_or_zeros,
    const_weights,
    conv_multipliers,
    pad_spatial,
    requantize,
    windows,
)
from microquant.runtime.ops._int16 import check_int16_io, mbqm64


@dataclass
class DepthwiseParams:
    window: Window
    depth_multiplier: int
    weights: np.ndarray  # [kh*kw, Co] int32
    bias: np.ndarray  # [Co] int64
    mult: np.ndarray
    shift: np.ndarray
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int
    dtype: str = "int8"  # activation type; "int16" for the 16x8 scheme


def _check(node: Node, graph: Graph, w_shape: tuple[int, ...]) -> int:
    ci = graph.tensor(node.inputs[0]).shape[3]
    if len(w_shape) != 4 or w_shape[0] != 1:
        raise MicroquantError(f"DEPTHWISE_CONV_2D {node.name!r}: weights must be [1,kh,kw,Co]")
    co = w_shape[3]
    dm = int(node.attrs.get("depth_multiplier", co // ci if ci else 1))
    if co != ci * dm:
        raise MicroquantError(
            f"DEPTHWISE_CONV_2D {node.name!r}: {co} output channels != input depth {ci} x "
            f"depth_multiplier {dm}"
        )
    return dm


def _depthwise(xp: np.ndarray, taps: np.ndarray, window: Window, dm: int) -> np.ndarray:
    """Sum over filter taps of ``window view * tap weights`` (dtype of the inputs)."""
    acc = None
    for t, view in enumerate(windows(xp, window)):
        if dm > 1:
            view = np.repeat(view, dm, axis=3)
        term = view * taps[t]
        acc = term if acc is None else acc + term
    return acc


class DepthwiseConv2D(Kernel, op="DEPTHWISE_CONV_2D"):
    def prepare(self, node: Node, graph: Graph) -> DepthwiseParams:
        w = const_weights(graph, node)
        dm = _check(node, graph, w.shape)
        _, kh, kw, co = w.shape
        window = Window.from_node(node, graph, kh, kw)
        mult, shift = conv_multipliers(graph, node.inputs[0], node.inputs[1], node.outputs[0], co)
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), graph, node.outputs[0])
        return DepthwiseParams(
            window,
            dm,
            w.astype(np.int32).reshape(kh * kw, co),
            bias_or_zeros(graph, node, co),
            mult,
            shift,
            int(qparams(graph, node.inputs[0]).zero_point[0]),
            int(qparams(graph, node.outputs[0]).zero_point[0]),
            lo,
            hi,
            check_int16_io(node, graph),
        )

    def run(self, params: DepthwiseParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Integer depthwise convolution, bit-exact with TFLM's ``DepthwiseConvPerChannel``.

        ``acc[oc] = sum_{taps inside the image} w[0,ky,kx,oc] * (x[..., oc // dm] - in_zp)``
        in int32 (padded taps read a zero-padded centred input, which equals TFLM skipping
        them); ``acc += bias[oc]``; ``mbqm(acc, mult[oc], shift[oc])`` (double rounding);
        ``+ out_zp``; clamp to the fused-activation range; int8.
        """
        p = params
        if p.dtype == "int16":  # 16x8: int64 accumulator, zero points 0 (TFLM drops them)
            x16 = pad_spatial(inputs[0].astype(np.int64), p.window, 0)
            acc = _depthwise(x16, p.weights, p.window, p.depth_multiplier) + p.bias
            out = clamp(mbqm64(acc, p.mult, p.shift), p.act_min, p.act_max)
            return [out.astype(np.int16)]
        x = inputs[0].astype(np.int32) - np.int32(p.in_zp)
        acc = _depthwise(pad_spatial(x, p.window, 0), p.weights, p.window, p.depth_multiplier)
        acc = acc.astype(np.int64) + p.bias
        return [requantize(acc, p.mult, p.shift, p.out_zp, p.act_min, p.act_max)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 depthwise convolution (TFLite padding, fused activation)."""
        x = np.asarray(inputs[0], dtype=np.float32)
        w = np.asarray(inputs[1], dtype=np.float32)
        dm = _check(node, graph, w.shape)
        _, kh, kw, co = w.shape
        window = Window.from_node(node, graph, kh, kw)
        y = _depthwise(pad_spatial(x, window, 0.0), w.reshape(kh * kw, co), window, dm)
        if len(inputs) > 2 and inputs[2] is not None:
            y = y + np.asarray(inputs[2], dtype=np.float32)
        y = float_activation(y, node.attrs.get("activation", "NONE"))
        return [y.astype(np.float32)]
