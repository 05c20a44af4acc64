"""Weight-only ONNX schemes ( ``w4``, ``w2``, ``w1``): low-bit weights in storage,
float arithmetic at run time.

Which weights: constant weights of Conv / Gemm / MatMul (:func:`find_weights`). Codes,
scales and groups follow :mod:`microquant.export.onnx_weights`; biases and the other float
constants are stored as float16 (next to 1-4 bit weights their precision is irrelevant).

* ``w4`` - native ONNX: an INT4 (symmetric) or UINT4 (asymmetric) initializer, two codes
  per byte, read by ``DequantizeLinear`` (opset 21): per channel along the weight's own
  output axis, or blocked (``block_size = group_size``). 2-D weights are stored ``[K, N]``
  (Gemms reading a ``[N, K]`` weight with ``transB=1`` are switched to ``transB=0``) and
  blocked along K: the form ONNX Runtime fuses into ``MatMulNBits``. Conv weights are
  blocked on their ``[C, K]`` view followed by ``Reshape``. Any opset-21 runtime reads it.
* ``w2`` / ``w1`` - ONNX has no 2-/1-bit type, so the codes of *all* weights are
  bit-packed into a single uint8 initializer (:func:`~.onnx_weights.pack_bits`) and
  decoded by standard ops, once for the whole model::

      packed[M,1] -BitShift(LEFT, l[j])-> -BitShift(RIGHT, 8-bits)-> codes[M, 8/bits]
      -> Reshape(-1) [-> Slice] -> Cast(float) [-> Sub(midpoint)] -> Split(per weight)

  then per weight ``Reshape -> [Sub(zero point)] -> Mul(scale) [-> Reshape] [-> Transpose]``.
  All inputs are constants, so ONNX Runtime folds the sub-graph into float initializers
  when the session loads: packed on disk, ordinary float weights in memory, no custom op.
  :func:`~.onnx_weights.unpack_bits` is the same decoding in NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from microquant.errors import MicroquantError
from microquant.export import onnx_weights as nbit
from microquant.export.onnx_build import (
    Builder,
    HalfBlobs,
    WeightUse,
    base_model,
    find_weights,
    halve_floats,
)
from microquant.ir.graph import Graph


def export_weight_only(graph: Graph, bits: int, group_size: int | None = None,
                       symmetric: bool = True, per_channel: bool = True) -> onnx.ModelProto:
    """``bits``-bit weight-only model (4: INT4 DequantizeLinear, 2/1: packed + decoded).

    ``per_channel=False`` without ``group_size`` uses one scale per weight tensor.
    """
    weights = find_weights(graph)
    if not weights:
        raise MicroquantError(f"scheme 'w{bits}' found no Conv/MatMul/Gemm weights to "
                              "quantize in this model")
    quantized: dict[str, nbit.NBitWeight] = {}
    for name, use in weights.items():
        w2d = use.view2d(graph.const(name))
        where = f"weight {name!r} of node {use.node.name or use.node.op!r}"
        if group_size is None and not per_channel:
            w2d = w2d.reshape(1, -1)
        quantized[name] = nbit.quantize_nbit(w2d, bits, group_size, symmetric, where,
                                             midpoint=bits < 4)
    base, opset = base_model(graph, 21 if bits == 4 else None)
    b = Builder(base)
    blobs = HalfBlobs(b)
    if bits == 4:
        flipped = _flip_gemms(graph, base, weights) if per_channel or group_size else set()
        for name, qw in quantized.items():
            shape = graph.const(name).shape
            use = weights[name]
            if name in flipped:  # stored as [K, N] for a Gemm(transB=0)
                shape, use = shape[::-1], WeightUse(name, 1, use.node)
            _dq_int4(b, blobs, use, shape, qw)
    else:
        _unpack_all(b, blobs, weights, quantized,
                    {n: graph.const(n).shape for n in weights})
    halve_floats(b, blobs)  # biases
    blobs.emit()
    return b.finish(list(base.graph.node), opset)


def _scheme(bits: int):
    def quantize(graph: Graph, ranges: Mapping[str, tuple[float, float]] | None = None, *,
                 per_channel: bool = True, symmetric_weights: bool = True,
                 group_size: int | None = None, **_: object) -> onnx.ModelProto:
        return export_weight_only(graph, bits, group_size, symmetric_weights, per_channel)

    quantize.__name__ = quantize.__qualname__ = f"w{bits}"
    quantize.__doc__ = f"Scheme ``w{bits}`` (``ranges`` unused); see the module docstring."
    return quantize


w4, w2, w1 = _scheme(4), _scheme(2), _scheme(1)


def _flip_gemms(graph: Graph, base: onnx.ModelProto, weights: dict[str, WeightUse]
                ) -> set[str]:
    """Weights read only by ``Gemm(transB=1)`` nodes: switch those nodes to ``transB=0`` (in
    ``base``) so the weight can be stored as ``[K, N]``, the layout ONNX Runtime fuses
    with its ``DequantizeLinear`` into ``MatMulNBits`` (4-bit GEMM, no float weights)."""
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        for k, inp in enumerate(n.inputs):
            readers.setdefault(inp, []).append(i if k == 1 and n.op == "Gemm" else -1)
    flipped = set()
    for name, use in weights.items():
        idx = readers.get(name, [])
        if (use.out_axis != 0 or not idx or -1 in idx
                or any(not graph.nodes[i].attrs.get("transB", 0) for i in idx)):
            continue
        for i in idx:
            node = base.graph.node[i]
            for a in node.attribute:
                if a.name == "transB":
                    a.i = 0
        flipped.add(name)
    return flipped


def _moved(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (shape[axis],) + tuple(d for i, d in enumerate(shape) if i != axis)


def _restore_layout(b: Builder, src: str, name: str, shape: tuple[int, ...], axis: int
                    ) -> None:
    """Any tensor in ``[C, ...]`` order (output channels first) -> the weight's shape."""
    shp = b.shape(_moved(shape, axis))
    if axis == 0:
        b.prefix.append(b.node("Reshape", [src, shp], [name]))
        return
    tmp = b.fresh(f"{name}__moved")
    b.prefix.append(b.node("Reshape", [src, shp], [tmp]))
    perm = list(range(1, axis + 1)) + [0] + list(range(axis + 1, len(shape)))
    b.prefix.append(b.node("Transpose", [tmp], [name], perm=perm))


# ---------------------------------------------------------------------------------------
# w4: INT4 DequantizeLinear


def _dq_int4(b: Builder, blobs: HalfBlobs, use: WeightUse, shape: tuple[int, ...],
             qw: nbit.NBitWeight) -> None:
    name = use.name
    b.drop(name)
    c, k = qw.codes.shape
    if qw.symmetric:  # codes u - 8 in [-8, 7] with zero point 0 (left out)
        vals, dtype = qw.codes.astype(np.int16) - 8, TensorProto.INT4
    else:
        vals, dtype = qw.codes.astype(np.int16), TensorProto.UINT4
    zps = qw.zero_point.astype(np.int16)
    sf = b.fresh(f"{name}__scale")
    if len(shape) == 2 and use.out_axis == 1 and c == shape[1] and qw.groups > 1:
        # [K, N] blocked along K: the DequantizeLinear form MatMulNBits fusion expects
        qn = b.init_proto(f"{name}__int4", lambda n: _int4_tensor(n, dtype, vals.T))
        blobs.add(sf, qw.scale.T)  # [G, N]
        inputs = [qn, sf]
        if not qw.symmetric:
            inputs.append(b.init_proto(f"{name}__zero_point",
                                       lambda n: _int4_tensor(n, dtype, zps.T)))
        b.prefix.append(b.node("DequantizeLinear", inputs, [name], axis=0,
                               block_size=k // qw.groups))
        return
    if qw.groups == 1 and c == shape[use.out_axis]:
        # per channel: codes in the weight's own layout, DequantizeLinear along its axis
        own = np.moveaxis(vals.reshape(_moved(shape, use.out_axis)), 0, use.out_axis)
        qn = b.init_proto(f"{name}__int4", lambda n: _int4_tensor(n, dtype, own))
        blobs.add(sf, qw.scale.reshape(c))
        inputs = [qn, sf]
        if not qw.symmetric:
            inputs.append(b.init_proto(f"{name}__zero_point",
                                       lambda n: _int4_tensor(n, dtype, zps.reshape(c))))
        b.prefix.append(b.node("DequantizeLinear", inputs, [name], axis=use.out_axis))
        return
    qn = b.init_proto(f"{name}__int4", lambda n: _int4_tensor(n, dtype, vals))
    blobs.add(sf, qw.scale)  # [C, G]
    inputs = [qn, sf]
    attrs = {"axis": 1, "block_size": k // qw.groups}
    if c == 1 and qw.groups == 1:  # one scale for the whole tensor: scalars
        inputs[1] = b.fresh(f"{name}__scalar")
        b.prefix.append(b.node("Reshape", [sf, b.const("scalar", np.zeros(0, np.int64))],
                               [inputs[1]]))
        zps, attrs = zps.reshape(()), {}
    if not qw.symmetric:
        inputs.append(b.init_proto(f"{name}__zero_point",
                                   lambda n: _int4_tensor(n, dtype, zps)))
    flat = b.fresh(f"{name}__2d")
    b.prefix.append(b.node("DequantizeLinear", inputs, [flat], **attrs))
    _restore_layout(b, flat, name, shape, use.out_axis)


def _int4_tensor(name: str, dtype: int, vals: np.ndarray) -> onnx.TensorProto:
    """A packed (two per byte, low nibble first) INT4/UINT4 initializer."""
    flat = (np.asarray(vals).ravel() & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    raw = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    return helper.make_tensor(name, dtype, list(np.shape(vals)), raw, raw=True)


# ---------------------------------------------------------------------------------------
# w2 / w1: one packed blob, decoded by standard ops


def _unpack_all(b: Builder, blobs: HalfBlobs, weights: dict[str, WeightUse],
                quantized: dict[str, nbit.NBitWeight], shapes: dict[str, tuple[int, ...]]
                ) -> None:
    names = list(quantized)
    bits = quantized[names[0]].bits
    symmetric = quantized[names[0]].symmetric
    codes = np.concatenate([quantized[n].codes.ravel() for n in names])
    packed = nbit.pack_bits(codes, bits).reshape(-1, 1)
    left, right = nbit.unpack_shifts(bits)
    for n in names:
        b.drop(n)
    pn = b.init("packed_weights", packed)
    t = [b.fresh(f"unpack_{i}") for i in range(6)]
    b.prefix += [
        b.node("BitShift", [pn, b.const("shl", left)], [t[0]], direction="LEFT"),
        b.node("BitShift", [t[0], b.const("shr", right.reshape(1))], [t[1]],
               direction="RIGHT"),
        b.node("Reshape", [t[1], b.const("flat", np.array([-1], np.int64))], [t[2]]),
    ]
    src = t[2]
    if packed.size * (8 // bits) != codes.size:  # drop the padding codes of the last byte
        b.prefix.append(b.node("Slice", [src, b.const("zero", np.array([0], np.int64)),
                                         b.const("len", np.array([codes.size], np.int64))],
                               [t[3]]))
        src = t[3]
    b.prefix.append(b.node("Cast", [src], [t[4]], to=TensorProto.FLOAT))
    src = t[4]
    if symmetric:
        mid = float(quantized[names[0]].zero_point.flat[0])
        b.prefix.append(b.node("Sub", [src, b.const("mid", np.array(mid, np.float32))],
                               [t[5]]))
        src = t[5]
    segments = [b.fresh(f"{n}__codes") for n in names]
    if len(names) == 1:
        segments = [src]
    else:
        sizes = b.init("split", np.array([quantized[n].codes.size for n in names], np.int64))
        b.prefix.append(b.node("Split", [src, sizes], segments, axis=0))
    for n, seg in zip(names, segments, strict=True):
        _decode_one(b, blobs, weights[n], shapes[n], quantized[n], seg)


def _decode_one(b: Builder, blobs: HalfBlobs, use: WeightUse, shape: tuple[int, ...],
                qw: nbit.NBitWeight, seg: str) -> None:
    """Codes segment (already centred when symmetric) -> scaled float weight ``use.name``."""
    name = use.name
    c, k = qw.codes.shape
    g = qw.groups
    moved = _moved(shape, use.out_axis)
    scale = b.fresh(f"{name}__scale")
    scaled = name if use.out_axis == 0 else b.fresh(f"{name}__moved")
    if qw.symmetric and g == 1:
        # Reshape straight to the channel-first shape; the scale broadcasts as [C,1,..,1]
        blobs.add(scale, qw.scale.reshape((c,) + (1,) * (len(moved) - 1)))
        x = b.fresh(f"{name}__x")
        b.prefix.append(b.node("Reshape", [seg, b.shape(moved)],
                               [x]))
        b.prefix.append(b.node("Mul", [x, scale], [scaled]))
    else:
        rows = b.fresh(f"{name}__rows")
        b.prefix.append(b.node(
            "Reshape", [seg, b.shape((c * g, k // g))], [rows]))
        if not qw.symmetric:
            zp = b.fresh(f"{name}__zp")
            blobs.add(zp, qw.zero_point.reshape(c * g, 1))
            centred = b.fresh(f"{name}__centred")
            b.prefix.append(b.node("Sub", [rows, zp], [centred]))
            rows = centred
        blobs.add(scale, qw.scale.reshape(c * g, 1))
        x = b.fresh(f"{name}__x")
        b.prefix.append(b.node("Mul", [rows, scale], [x]))
        b.prefix.append(b.node("Reshape", [x, b.shape(moved)],
                               [scaled]))
    if use.out_axis != 0:
        axis = use.out_axis
        perm = list(range(1, axis + 1)) + [0] + list(range(axis + 1, len(shape)))
        b.prefix.append(b.node("Transpose", [scaled], [name], perm=perm))
