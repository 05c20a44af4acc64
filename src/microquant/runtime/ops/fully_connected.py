"""FULLY_CONNECTED: int8 matrix-vector product, TFLM's ``FullyConnected`` /
``FullyConnectedPerChannel``.

Inputs ``x [..., K]`` (flattened to ``[batches, K]``), ``w [N, K]`` int8, optional
``b [N]`` int32. Weights with more than one scale take the per-channel path (TFLM supports it
since 2024); a single scale takes the per-tensor path. Both derive the multiplier the same
way, ``QuantizeMultiplier(double(s_in) * double(s_w) / double(s_out))`` - the per-channel
formula of ``PopulateConvolutionQuantizationParams``. (TFLite's older
``GetQuantizedConvolutionMultipler`` multiplies the two float32 scales in float32 first; that
multiplier is a few ulps off and flips rounding ties - about 1% of the MLCommons AD
autoencoder's outputs - and the pinned TFLM build does not use it: ``tests/test_ops_ties.py``
tells the two apart against the interpreter.) Both paths rescale with the double-rounding
:func:`~microquant.runtime.fixedpoint.mbqm`.

16x8 (int16 ``x``/``y``, zero point 0): int64 accumulator and int64 bias, rescaled by
:func:`~microquant.runtime.ops._int16.mbqm64`, as TFLM's int16 ``FullyConnected``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime.fixedpoint import clamp
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._common import activation_range, float_activation, qparams
from microquant.runtime.ops._conv_common import (
    bias_or_zeros,
    const_weights,
    conv_multipliers,
    requantize,
)
from microquant.runtime.ops._int16 import check_int16_io, mbqm64


@dataclass
class FullyConnectedParams:
    weights: np.ndarray  # [K, N] int32, weight offset (-w_zp) already added
    bias: np.ndarray  # [N] int64
    mult: np.ndarray  # [N] (per channel) or [1] (per tensor)
    shift: np.ndarray
    depth: int  # K
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int
    dtype: str = "int8"  # activation type; "int16" for the 16x8 scheme


def _per_tensor_multiplier(graph: Graph, x: str, w: str, y: str) -> tuple[int, int]:
    # Each float32 scale promoted to double before the product (not float32 * float32).
    s_in = float(np.float32(qparams(graph, x).scale[0]))
    s_w = float(np.float32(qparams(graph, w).scale[0]))
    return quantize_multiplier(s_in * s_w / float(np.float32(qparams(graph, y).scale[0])))


class FullyConnected(Kernel, op="FULLY_CONNECTED"):
    def prepare(self, node: Node, graph: Graph) -> FullyConnectedParams:
        w = const_weights(graph, node)
        if w.ndim != 2:
            raise MicroquantError(f"FULLY_CONNECTED {node.name!r}: weights must be [N, K]")
        n, k = w.shape
        if graph.tensor(node.inputs[0]).size % k:
            raise MicroquantError(
                f"FULLY_CONNECTED {node.name!r}: input size is not a multiple of depth {k}"
            )
        wq = qparams(graph, node.inputs[1])
        if wq.scale.size > 1:
            mult, shift = conv_multipliers(
                graph, node.inputs[0], node.inputs[1], node.outputs[0], n
            )
            w_offset = 0  # per-channel weights are symmetric by spec; TFLM ignores w_zp
        else:
            m, s = _per_tensor_multiplier(graph, node.inputs[0], node.inputs[1], node.outputs[0])
            mult, shift = np.array([m], np.int64), np.array([s], np.int64)
            w_offset = -int(wq.zero_point[0])
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), graph, node.outputs[0])
        weights = np.ascontiguousarray((w.astype(np.int32) + np.int32(w_offset)).T)
        return FullyConnectedParams(
            weights,
            bias_or_zeros(graph, node, n),
            mult,
            shift,
            k,
            int(qparams(graph, node.inputs[0]).zero_point[0]),
            int(qparams(graph, node.outputs[0]).zero_point[0]),
            lo,
            hi,
            check_int16_io(node, graph),
        )

    def run(
        self, params: FullyConnectedParams, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Integer FC, bit-exact with TFLM's ``FullyConnected`` / ``FullyConnectedPerChannel``.

        ``acc[b,n] = sum_k (w[n,k] - w_zp) * (x[b,k] - in_zp)`` in int32 (``w_zp`` only on the
        per-tensor path), ``+ bias[n]``, ``mbqm(acc, mult, shift)`` with one multiplier or one
        per output channel (double rounding), ``+ out_zp``, clamp to the fused-activation
        range, int8 ``[batches, N]``.
        """
        p = params
        if p.dtype == "int16":  # 16x8: int64 accumulator, zero points 0 (TFLM drops them)
            x16 = inputs[0].astype(np.int64).reshape(-1, p.depth)
            acc = np.einsum("bk,kn->bn", x16, p.weights.astype(np.int64)) + p.bias
            out = clamp(mbqm64(acc, p.mult, p.shift), p.act_min, p.act_max)
            return [out.astype(np.int16)]
        x = inputs[0].astype(np.int32).reshape(-1, p.depth) - np.int32(p.in_zp)
        acc = np.einsum("bk,kn->bn", x, p.weights).astype(np.int64) + p.bias
        return [requantize(acc, p.mult, p.shift, p.out_zp, p.act_min, p.act_max)]

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        """Float32 ``x.reshape(-1, K) @ w.T + b`` with the fused activation."""
        w = np.asarray(inputs[1], dtype=np.float32)
        x = np.asarray(inputs[0], dtype=np.float32).reshape(-1, w.shape[1])
        y = x @ w.T
        if len(inputs) > 2 and inputs[2] is not None:
            y = y + np.asarray(inputs[2], dtype=np.float32)
        y = float_activation(y, node.attrs.get("activation", "NONE"))
        if node.attrs.get("keep_num_dims", False):
            y = y.reshape(*np.shape(inputs[0])[:-1], w.shape[0])
        return [y.astype(np.float32)]
