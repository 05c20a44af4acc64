"""MEAN: int8 mean over constant axes, TFLite Micro's ``EvalIntegerMean``.

Inputs ``x`` (int8) and ``axes`` (int32 constant; negative values and duplicates allowed);
attribute ``keep_dims``. This TFLite Micro version always takes the
``QuantizedMeanOrSum`` path for int8 - also when input and output share scale and zero
point (older releases divided the raw sum there; checked against the interpreter): the sum,
corrected by ``zp_in * count``, is rescaled by ``s_in / s_out`` with ``1/count`` folded into
the multiplier (see :func:`fold_count`). Any axes and ``keep_dims`` take the same path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import QMAX, QMIN, quantize_multiplier
from microquant.runtime.fixedpoint import as_i64, clamp, mbqm, wrap_i32
from microquant.runtime.kernel import Kernel
from microquant.runtime.ops._binary import per_tensor


@dataclass(frozen=True)
class MeanParams:
    axes: tuple[int, ...]  # resolved: non-negative, unique, in the order given
    keep_dims: bool
    count: int  # number of input elements reduced into one output
    input_zp: int
    output_zp: int
    multiplier: int  # s_in/s_out with 1/count folded in
    shift: int
    dtype: str = "int8"  # int16 for the 16x8 scheme (same arithmetic, int16 saturation)


def resolve_axes(node: Node, axes: np.ndarray, rank: int) -> tuple[int, ...]:
    """TFLite ``ResolveAxis``: wrap negatives, drop duplicates, keep order."""
    out: list[int] = []
    for a in np.ravel(axes).tolist():
        r = a + rank if a < 0 else a
        if not 0 <= r < rank:
            raise MicroquantError(f"MEAN {node.name!r}: axis {a} out of range for rank {rank}")
        if r not in out:
            out.append(r)
    return tuple(out)


def fold_count(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """Fold ``1/count`` into a quantized multiplier exactly as ``QuantizedMeanOrSum``.

    ``k = floor(log2(count))`` capped at 32 and at ``31 + shift``; then
    ``multiplier' = (multiplier << k) // count`` (int64) and ``shift' = shift - k``.

    >>> fold_count(1 << 30, 0, 4)
    (1073741824, -2)
    """
    k = min(count.bit_length() - 1, 32, 31 + shift)
    return ((multiplier << k) // count), shift - k


class Mean(Kernel, op="MEAN"):
    def prepare(self, node: Node, graph: Graph) -> MeanParams:
        x = graph.tensor(node.inputs[0])
        axes_data = graph.const(node.inputs[1])
        if axes_data is None:
            raise MicroquantError(f"MEAN {node.name!r}: axes must be a constant tensor")
        axes = resolve_axes(node, axes_data, len(x.shape))
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        s_in, zp_in = per_tensor(node, graph, node.inputs[0])
        s_out, zp_out = per_tensor(node, graph, node.outputs[0])
        mult, shift = quantize_multiplier(s_in / s_out)
        if count > 0:
            mult, shift = fold_count(mult, shift, count)
        return MeanParams(
            axes=axes,
            keep_dims=bool(node.attrs.get("keep_dims", False)),
            count=count,
            input_zp=zp_in,
            output_zp=zp_out,
            multiplier=mult,
            shift=shift,
            dtype=graph.tensor(node.outputs[0]).dtype,
        )

    def run(self, params: MeanParams, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Per output element, int32 accumulator ``S = sum(x)`` over the ``count`` inputs::

            out = clamp(MBQM(S - zp_in * count, m', shift') + zp_out, -128, 127)

        where ``m', shift'`` already include ``1/count``; MBQM is TFLite's double-rounding
        MultiplyByQuantizedMultiplier (SRDHM then RDBPOT, both half away from zero).
        """
        p = params
        total = wrap_i32(as_i64(inputs[0]).sum(axis=p.axes, keepdims=p.keep_dims))
        if p.count == 0:
            return [np.zeros(total.shape, p.dtype)]
        shifted = wrap_i32(total - p.input_zp * p.count)
        out = mbqm(shifted, p.multiplier, p.shift) + p.output_zp
        return [clamp(out, QMIN[p.dtype], QMAX[p.dtype]).astype(p.dtype)]

    def run_float(self, node: Node, graph: Graph,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], np.float32)
        axes = resolve_axes(node, np.asarray(inputs[1]), x.ndim)
        keep = bool(node.attrs.get("keep_dims", False))
        return [np.mean(x, axis=axes, keepdims=keep, dtype=np.float32)]
