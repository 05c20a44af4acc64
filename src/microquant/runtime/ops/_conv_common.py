"""Helpers shared by the windowed kernels (conv, depthwise conv, pooling, fully connected).

Two halves, kept apart on purpose:

* prepare-time (float allowed): :func:`conv_multipliers` reproduces TFLite Micro's
  ``PopulateConvolutionQuantizationParams`` - one ``(multiplier, shift)`` per output
  channel from ``double(s_in) * double(s_w[c]) / double(s_out)``.
* run-time (integer only): :func:`pad_spatial` + :func:`windows` turn an NHWC tensor into
  the stack of strided views a kernel window sees, so kernels are a handful of vectorised
  NumPy calls instead of per-pixel loops; :func:`requantize` is the output stage every
  int8 kernel shares (MultiplyByQuantizedMultiplier, + zero point, clamp).

Example:
    >>> import numpy as np
    >>> x = np.arange(16).reshape(1, 4, 4, 1)
    >>> g = Window.make("VALID", 4, 4, 2, 2, 2, 2)
    >>> [int(w.sum()) for w in windows(x, g)]
    [20, 24, 36, 40]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime.fixedpoint import clamp, mbqm
from microquant.runtime.ops._common import out_size, pad_before, qparams


@dataclass(frozen=True)
class Window:
    """Geometry of a 2-D window sliding over an ``[N, H, W, C]`` tensor (TFLite padding)."""

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    in_h: int
    in_w: int

    @staticmethod
    def make(
        padding: str,
        in_h: int,
        in_w: int,
        kh: int,
        kw: int,
        sh: int = 1,
        sw: int = 1,
        dh: int = 1,
        dw: int = 1,
    ) -> Window:
        if padding not in ("SAME", "VALID"):
            raise MicroquantError(f"padding must be SAME or VALID, got {padding!r}")
        out_h = out_size(padding, in_h, kh, sh, dh)
        out_w = out_size(padding, in_w, kw, sw, dw)
        if out_h <= 0 or out_w <= 0:
            raise MicroquantError(
                f"window {kh}x{kw} (dilation {dh}x{dw}) does not fit a {in_h}x{in_w} input"
            )
        return Window(
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pad_before(padding, in_h, kh, sh, dh),
            pad_before(padding, in_w, kw, sw, dw),
            out_h,
            out_w,
            in_h,
            in_w,
        )

    @staticmethod
    def from_node(node: Node, graph: Graph, kh: int, kw: int) -> Window:
        """Window of a CONV/DEPTHWISE/POOL node, checked against its output tensor's shape."""
        a = node.attrs
        x = graph.tensor(node.inputs[0])
        if len(x.shape) != 4:
            raise MicroquantError(f"{node.op} {node.name!r}: input must be NHWC, got {x.shape}")
        g = Window.make(
            str(a.get("padding", "VALID")),
            x.shape[1],
            x.shape[2],
            kh,
            kw,
            int(a.get("stride_h", 1)),
            int(a.get("stride_w", 1)),
            int(a.get("dilation_h", 1)),
            int(a.get("dilation_w", 1)),
        )
        y = graph.tensor(node.outputs[0])
        if tuple(y.shape[1:3]) != (g.out_h, g.out_w):
            raise MicroquantError(
                f"{node.op} {node.name!r}: output shape {y.shape} does not match the "
                f"{g.out_h}x{g.out_w} the padding/stride attributes give"
            )
        return g


def pad_spatial(x: np.ndarray, g: Window, fill: int | float = 0) -> np.ndarray:
    """Pad H and W with ``fill`` so every window position reads inside the array.

    Leading padding is TFLite's ``pad_top``/``pad_left``; trailing padding is whatever the
    last window needs (the odd extra pixel of SAME padding goes at the end, as in TFLite).
    """
    need_h = (g.out_h - 1) * g.sh + (g.kh - 1) * g.dh + 1
    need_w = (g.out_w - 1) * g.sw + (g.kw - 1) * g.dw + 1
    bottom = max(need_h - g.in_h - g.pad_top, 0)
    right = max(need_w - g.in_w - g.pad_left, 0)
    if g.pad_top == bottom == g.pad_left == right == 0:
        return x
    return np.pad(
        x, ((0, 0), (g.pad_top, bottom), (g.pad_left, right), (0, 0)), constant_values=fill
    )


def windows(xp: np.ndarray, g: Window) -> Iterator[np.ndarray]:
    """For each filter tap ``(ky, kx)`` in row-major order, the ``[N, out_h, out_w, C]``
    strided view of the padded input ``xp`` that tap multiplies."""
    for ky in range(g.kh):
        y0 = ky * g.dh
        for kx in range(g.kw):
            x0 = kx * g.dw
            yield xp[
                :,
                y0 : y0 + (g.out_h - 1) * g.sh + 1 : g.sh,
                x0 : x0 + (g.out_w - 1) * g.sw + 1 : g.sw,
                :,
            ]


def im2col(xp: np.ndarray, g: Window) -> np.ndarray:
    """``[N, out_h, out_w, kh*kw, C]`` patches of the padded input (tap-major, channel-minor),
    i.e. the layout of a flattened ``[kh, kw, C]`` filter."""
    return np.stack(list(windows(xp, g)), axis=3)


# -- prepare time (float allowed) ------------------------------------------------------


def conv_multipliers(
    graph: Graph, x: str, w: str, y: str, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel ``(multiplier, shift)`` exactly as TFLite Micro prepares them.

    ``effective = double(s_in) * double(s_w[c]) / double(s_out)`` with the float32 scales
    promoted to double (a per-tensor weight scale is broadcast), then
    ``QuantizeMultiplier``. ``shift`` is the left-shift exponent (positive = left).
    """
    s_in = float(np.float32(qparams(graph, x).scale[0]))
    s_out = float(np.float32(qparams(graph, y).scale[0]))
    s_w = qparams(graph, w).scale.astype(np.float32)
    if s_w.size not in (1, channels):
        raise MicroquantError(
            f"weight {w!r} has {s_w.size} scales, expected 1 or {channels} (one per channel)"
        )
    s_w = np.broadcast_to(s_w, (channels,))
    pairs = [quantize_multiplier(s_in * float(s) / s_out) for s in s_w]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    return mult, shift


def bias_or_zeros(graph: Graph, node: Node, channels: int) -> np.ndarray:
    """The int32 bias as int64 (zeros when the optional bias input is absent)."""
    name = node.inputs[2] if len(node.inputs) > 2 else ""
    if not name:
        return np.zeros(channels, dtype=np.int64)
    data = graph.const(name)
    if data is None:
        raise MicroquantError(f"{node.op} {node.name!r}: bias {name!r} must be a constant")
    if data.size != channels:
        raise MicroquantError(
            f"{node.op} {node.name!r}: bias has {data.size} values, expected {channels}"
        )
    return data.astype(np.int64).reshape(channels)


def const_weights(graph: Graph, node: Node) -> np.ndarray:
    data = graph.const(node.inputs[1])
    if data is None:
        raise MicroquantError(f"{node.op} {node.name!r}: weights must be a constant")
    return data


# -- run time (integer only) -----------------------------------------------------------


def requantize(
    acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, act_min: int, act_max: int
) -> np.ndarray:
    """Output stage of TFLM's int8 kernels: ``clamp(mbqm(acc, m, s) + zp, act_min, act_max)``.

    ``acc`` is the int32 accumulator (carried in int64); ``mult``/``shift`` broadcast over
    its last (channel) axis. Returns int8.
    """
    out = mbqm(acc, mult, shift) + out_zp
    return clamp(out, act_min, act_max).astype(np.int8)


# -- pooling ---------------------------------------------------------------------------


def pool_window(node: Node, graph: Graph) -> Window:
    """Window of an AVERAGE/MAX_POOL_2D node (``filter_h/w``, ``stride_h/w``, ``padding``)."""
    a = node.attrs
    return Window.from_node(node, graph, int(a["filter_h"]), int(a["filter_w"]))


def check_same_qparams(node: Node, graph: Graph) -> None:
    """TFLM's pooling Prepare rejects input/output quantization that differs (it copies
    values without rescaling): ``|s_in - s_out| <= 1e-6`` and equal zero points."""
    qi = qparams(graph, node.inputs[0])
    qo = qparams(graph, node.outputs[0])
    if abs(float(qi.scale[0]) - float(qo.scale[0])) > 1e-6 or int(qi.zero_point[0]) != int(
        qo.zero_point[0]
    ):
        raise MicroquantError(
            f"{node.op} {node.name!r}: input and output must share scale and zero point "
            f"(TFLite Micro requires it), got {qi.scale[0]}/{qi.zero_point[0]} vs "
            f"{qo.scale[0]}/{qo.zero_point[0]}"
        )
