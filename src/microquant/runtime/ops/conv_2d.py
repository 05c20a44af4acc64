"""CONV_2D: int8 per-channel convolution, TFLite Micro's ``ConvPerChannel``.

Inputs ``x [N,H,W,Ci]``, ``w [Co,kh,kw,Ci/groups]`` (int8, symmetric per output channel),
optional ``b [Co]`` (int32, scale ``s_in*s_w[c]``). Attributes: ``stride_h/w``,
``dilation_h/w``, ``padding`` (SAME/VALID, TFLite definition), ``activation``.

16x8 (int16 ``x``/``y`` with zero point 0, int8 ``w``): with an int64 bias or none the
accumulator is int64 and rescaled by :func:`~microquant.runtime.ops._int16.mbqm64`; with an
int32 bias TFLM keeps an int32 accumulator and the int32 ``MultiplyByQuantizedMultiplier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.runtime.fixedpoint import clamp, mbqm, wrap_i32
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import activation_range, float_activation, qparams
from microquant.runtime.ops._conv_common import (
    Window,
    bias_or_zeros,
    const_weights,
    conv_multipliers,
    im2col,
    pad_spatial,
    requantize,
)
from microquant.runtime.ops._int16 import check_int16_io, mbqm64


@dataclass
class ConvParams:
    window: Window
    groups: int
    weights: np.ndarray  # [groups, kh*kw*Cg, Co/groups] int32, ready for the patch matmul
    bias: np.ndarray  # [Co] int64
    mult: np.ndarray  # [Co] int64
    shift: np.ndarray  # [Co] int64, left-shift exponent
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int
    dtype: str = "int8"  # activation type; "int16" for the 16x8 scheme
    wide_acc: bool = False  # int16 without an int32 bias: int64 accumulator + mbqm64


def _groups(node: Node, graph: Graph, w_shape: tuple[int, ...]) -> int:
    ci = graph.tensor(node.inputs[0]).shape[3]
    co, cg = w_shape[0], w_shape[3]
    if cg <= 0 or ci % cg or co % (ci // cg):
        raise MicroquantError(
            f"CONV_2D {node.name!r}: input depth {ci} is incompatible with weights {w_shape}"
        )
    return ci // cg


def _patch_matmul(cols: np.ndarray, weights: np.ndarray, groups: int) -> np.ndarray:
    """``[N,Ho,Wo,T,Ci]`` patches x ``[groups, T*Cg, Cog]`` -> ``[N,Ho,Wo,Co]`` (same dtype)."""
    n, ho, wo, taps, ci = cols.shape
    cg = ci // groups
    outs = []
    for gi in range(groups):
        patch = cols[..., gi * cg : (gi + 1) * cg].reshape(n * ho * wo, taps * cg)
        if patch.dtype.kind == "f":
            outs.append(patch @ weights[gi])
        else:  # int32 einsum: vectorised, and wraps like TFLM's int32 accumulator
            outs.append(np.einsum("mk,kn->mn", patch, weights[gi]))
    return np.concatenate(outs, axis=1).reshape(n, ho, wo, -1)


class Conv2D(Kernel, op="CONV_2D"):
    def prepare(self, node: Node, graph: Graph) -> ConvParams:
        w = const_weights(graph, node)
        if w.ndim != 4:
            raise MicroquantError(f"CONV_2D {node.name!r}: weights must be [Co,kh,kw,Ci]")
        co, kh, kw, cg = w.shape
        groups = _groups(node, graph, w.shape)
        window = Window.from_node(node, graph, kh, kw)
        # [Co, kh, kw, Cg] -> per group [kh*kw*Cg, Co/groups], matching im2col's layout.
        wg = w.astype(np.int32).reshape(groups, co // groups, kh * kw * cg)
        weights = np.ascontiguousarray(wg.transpose(0, 2, 1))
        mult, shift = conv_multipliers(graph, node.inputs[0], node.inputs[1], node.outputs[0], co)
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), graph, node.outputs[0])
        dtype = check_int16_io(node, graph)
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        # TFLM takes the int32 accumulator only for an explicit int32 bias (checked).
        wide = dtype == "int16" and not (bias_name and graph.tensor(bias_name).dtype == "int32")
        return ConvParams(
            window,
            groups,
            weights,
            bias_or_zeros(graph, node, co),
            mult,
            shift,
            int(qparams(graph, node.inputs[0]).zero_point[0]),
            int(qparams(graph, node.outputs[0]).zero_point[0]),
            lo,
            hi,
            dtype,
            wide,
        )

    def run(self, params: ConvParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Integer convolution, bit-exact with ``reference_integer_ops::ConvPerChannel``.

        ``acc[c] = sum_{taps inside the image} w[c,ky,kx,i] * (x - in_zp)``: padded taps are
        skipped in TFLM, which equals reading ``x - in_zp = 0`` there, so the centred input
        is zero-padded. Weight zero point is ignored (symmetric, as in TFLM). Products
        and sums are int32 (|w|<=128, |x-zp|<=255; TFLM's accumulator is int32 too), then
        ``acc += bias[c]`` (int32 wrap), ``mbqm(acc, mult[c], shift[c])`` (double rounding),
        ``+ out_zp``, clamp to the fused-activation range, int8.
        """
        p = params
        if p.dtype == "int16":
            return [self._run_int16(p, inputs[0])]
        x = inputs[0].astype(np.int32) - np.int32(p.in_zp)
        cols = im2col(pad_spatial(x, p.window, 0), p.window)
        acc = _patch_matmul(cols, p.weights, p.groups).astype(np.int64) + p.bias
        return [requantize(acc, p.mult, p.shift, p.out_zp, p.act_min, p.act_max)]

    @staticmethod
    def _run_int16(p: ConvParams, x: np.ndarray) -> np.ndarray:
        """16x8 ``ConvPerChannel``: ``acc = sum w * x`` (zero points are 0 and TFLM ignores
        them), ``+ bias``; int64 or no bias: ``mbqm64(acc)``; int32 bias: the int32 accumulator
        wraps and takes the int32 ``mbqm``; clamp to the activation range, int16."""
        cols = im2col(pad_spatial(x.astype(np.int64), p.window, 0), p.window)
        acc = _patch_matmul(cols, p.weights, p.groups).astype(np.int64) + p.bias
        if p.wide_acc:
            out = mbqm64(acc, p.mult, p.shift)
        else:
            out = mbqm(wrap_i32(acc), p.mult, p.shift)
        return clamp(out, p.act_min, p.act_max).astype(np.int16)

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 NHWC convolution with TFLite SAME/VALID padding and fused activation."""
        x = np.asarray(inputs[0], dtype=np.float32)
        w = np.asarray(inputs[1], dtype=np.float32)
        co, kh, kw, cg = w.shape
        groups = _groups(node, graph, w.shape)
        window = Window.from_node(node, graph, kh, kw)
        wg = w.reshape(groups, co // groups, kh * kw * cg).transpose(0, 2, 1)
        cols = im2col(pad_spatial(x, window, 0.0), window)
        y = _patch_matmul(cols, wg, groups)
        if len(inputs) > 2 and inputs[2] is not None:
            y = y + np.asarray(inputs[2], dtype=np.float32)
        y = float_activation(y, node.attrs.get("activation", "NONE"))
        return [y.astype(np.float32)]
