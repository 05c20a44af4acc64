"""SOFTMAX: int8 -> int8 softmax over the last axis, TFLite Micro's gemmlowp path
(``reference_ops::Softmax<int8_t, int8_t>``; int8 uses no lookup table).

The output is fixed at scale 1/256, zero point -128. ``prepare`` mirrors
``CalculateSoftmaxParams``: ``PreprocessSoftmaxScaling(beta, s_in, 5)`` gives a Q5.26
input multiplier and ``diff_min = -CalculateInputRadius(5, left_shift)``.

int16 (16x8, ``SoftmaxInt16``): input zero point 0, output fixed at scale 1/32768, zero
point 0. Two 513-entry interpolated tables built at prepare time - ``exp`` on [-10, 0] and
``1/(1+x)`` on [0, 1] - replace the gemmlowp arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime import gemmlowp as gl
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm, rdbpot, srdhm, wrap_i32
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import per_tensor, require_output
from microquant.runtime.ops._int16 import (
    check_int16_io,
    exp_f32,
    lut_lookup,
    one_over_one_plus_x_f32,
    populate_lut,
)

SCALED_DIFF_INTEGER_BITS = 5  # exp() input format Q5.26
ACCUMULATION_INTEGER_BITS = 12  # sum of exps in Q12.19


@dataclass(frozen=True)
class SoftmaxParams:
    input_multiplier: int
    input_left_shift: int  # >= 0
    diff_min: int  # differences below this contribute exp() == 0


@dataclass(frozen=True)
class SoftmaxInt16Params:
    input_multiplier: int  # QuantizeMultiplier(s_in * beta / (10 / 65535)): diffs in 10/65535
    input_shift: int
    exp_lut: np.ndarray  # 513 int16 samples of exp on [-10, 0] (Q0.15)
    recip_lut: np.ndarray  # 513 int16 samples of 1/(1+x) on [0, 1] (Q0.15)


def _int16_params(node: Node, graph: Graph, s_in: float) -> SoftmaxInt16Params:
    """TFLM ``SoftmaxPrepare`` for int16: the two LUTs and the input multiplier."""
    check_int16_io(node, graph)
    require_output(node, graph, 1.0 / 32768, 0)
    beta = float(np.float32(node.attrs.get("beta", 1.0)))
    mult, shift = quantize_multiplier(s_in * beta / (10.0 / 65535.0))
    span = 65535  # int16 max - min
    exp_lut = populate_lut(exp_f32, 10.0 / span, 32767, 2.0 / span, 0)
    recip_lut = populate_lut(one_over_one_plus_x_f32, 1.0 / span, -32768, 2.0 / span, 0)
    return SoftmaxInt16Params(mult, shift, exp_lut, recip_lut)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Number of significant bits of non-negative int32 values (integer-only)."""
    n = np.zeros(x.shape, np.int64)
    for k in range(32):
        n = np.where((x >> k) > 0, k + 1, n)
    return n


def _softmax_int16(p: SoftmaxInt16Params, x: np.ndarray) -> np.ndarray:
    """``SoftmaxInt16`` per row of the last axis::

        e      = LUT_exp(clamp(MBQM(x - max(row), m, s) + 32767, int16))      Q0.15
        S      = sum(e);  z = clz32(S)
        r      = LUT_recip(clamp((((S << (z - 1)) + 2**13) >> 14) - 98304, int16))
        out    = clamp((e * r + 2**(30 - z)) >> (31 - z), 0, 32767)
    """
    v = as_i64(x)
    diff = v - v.max(axis=-1, keepdims=True)
    scaled = mbqm(diff, p.input_multiplier, p.input_shift)
    e = lut_lookup(clamp(scaled + 32767, -32768, 32767), p.exp_lut)
    total = e.sum(axis=-1, keepdims=True)
    clz = 32 - _bit_length(total)
    shifted = ((total << (clz - 1)) + (1 << 13)) >> 14
    recip = lut_lookup(clamp(shifted - ((1 << 15) + (1 << 16)), -32768, 32767), p.recip_lut)
    right = 31 - clz
    out = (e * recip + (as_i64(1) << (right - 1))) >> right
    return clamp(out, 0, 32767).astype(np.int16)


def input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """TFLite ``CalculateInputRadius``: the largest |input| whose rescaled value fits."""
    return math.floor((2**integer_bits - 1) * 2.0 ** (total_bits - integer_bits) / 2.0**left_shift)


def preprocess_softmax_scaling(beta: float, input_scale: float,
                               integer_bits: int) -> tuple[int, int]:
    """TFLite ``PreprocessSoftmaxScaling`` (double-rounding build): multiplier, left shift."""
    real = min(beta * input_scale * float(1 << (31 - integer_bits)), float((1 << 31) - 1))
    if not real > 1.0:
        raise MicroquantError(
            f"SOFTMAX: beta * input scale = {beta * input_scale:g} is too small "
            "(TFLite requires beta * scale * 2**26 > 1)"
        )
    return quantize_multiplier(real)


class Softmax(Kernel, op="SOFTMAX"):
    def prepare(self, node: Node, graph: Graph) -> SoftmaxParams | SoftmaxInt16Params:
        s_in, _ = per_tensor(node, graph, node.inputs[0])
        if graph.tensor(node.inputs[0]).dtype == "int16":
            return _int16_params(node, graph, s_in)
        require_output(node, graph, 1.0 / 256, -128)
        beta = float(np.float32(node.attrs.get("beta", 1.0)))  # stored as float32
        mult, shift = preprocess_softmax_scaling(beta, s_in, SCALED_DIFF_INTEGER_BITS)
        diff_min = -input_radius(SCALED_DIFF_INTEGER_BITS, shift)
        return SoftmaxParams(mult, shift, diff_min)

    def run(self, params: SoftmaxParams | SoftmaxInt16Params,
            inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per row of the last axis, all int32 fixed point::

            d      = x - max(row)                         (skipped when d < diff_min)
            z      = SRDHM(d << left_shift, multiplier)   Q5.26, in [-32, 0]
            e      = exp_on_negative_values(z)            Q0.31
            S      = sum(RDBPOT(e, 12))                   Q12.19 (plain int32 add)
            r, k   = GetReciprocal(S, 12)                 1/S = r * 2**-k, r in Q0.31
            out    = clamp(RDBPOT(SRDHM(r, e), k + 23) - 128, -128, 127)

        Skipped elements output -128. TFLite Micro CHECK-fails (aborts) when a row's exp-sum
        reaches 512 (``k + 23 > 31``, only possible for rows of >= 512 values); we raise
        :class:`MicroquantError` instead.
        """
        p = params
        if isinstance(p, SoftmaxInt16Params):
            return [_softmax_int16(p, inputs[0])]
        x = as_i64(inputs[0])
        diff = x - x.max(axis=-1, keepdims=True)
        valid = diff >= p.diff_min
        # Invalid lanes may overflow the shift; their values are masked out below.
        scaled = srdhm(wrap_i32(diff << p.input_left_shift), p.input_multiplier)
        exps = gl.exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)
        terms = np.where(valid, gl.rescale(exps, 0, ACCUMULATION_INTEGER_BITS), 0)
        sum_of_exps = wrap_i32(terms.sum(axis=-1, keepdims=True))
        scale, bits_over_unit = gl.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
        exponent = bits_over_unit + 31 - 8
        if np.any(exponent > 31):
            raise MicroquantError(
                f"SOFTMAX: a row of {x.shape[-1]} values sums to >= 512 in exp space; TFLite "
                "Micro's int8 softmax aborts on such rows (use a smaller row or a larger "
                "input scale / beta)"
            )
        out = rdbpot(srdhm(scale, exps), exponent) - 128
        out = np.where(valid, clamp(out, -128, 127), -128)
        return [out.astype(np.int8)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], np.float32)
        beta = np.float32(node.attrs.get("beta", 1.0))
        e = np.exp((x - x.max(axis=-1, keepdims=True)) * beta)
        return [(e / e.sum(axis=-1, keepdims=True)).astype(np.float32)]
