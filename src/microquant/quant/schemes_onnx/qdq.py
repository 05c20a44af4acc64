"""Static QDQ schemes ``int8`` and ``int16``: ``QuantizeLinear -> DequantizeLinear`` around
every activation, quantized weights and biases behind ``DequantizeLinear``.

* int8: activations uint8 asymmetric per tensor; weights int8 symmetric per output
  channel (``DequantizeLinear`` axis 0 for Conv and ``Gemm(transB=1)``, the N axis for
  MatMul / ``Gemm(transB=0)``); bias int32 at ``x_scale * w_scale`` (the scale is a
  ``Mul`` of the two scale initializers, folded at load). ONNX Runtime fuses the groups
  into QLinearConv / QGemm / QLinearMatMul / QLinearAdd / QLinearAveragePool /
  QLinearSoftmax (checked in the tests). The model keeps its opset (>= 13).
* int16: the same with int16 asymmetric activations and int8 weights ("16x8"),
  opset 21. ORT has no int16 integer kernels and runs it as float between the Q/DQ
  pairs - an accurate emulation, useful as a reference, not a speed-up.

Placement: every float activation with a calibrated range gets one Q/DQ pair, except
the pre-activation output of Conv/Gemm/MatMul/Add read only by a Relu/Clip (ORT folds the
activation into the following QuantizeLinear); Reshape/Flatten/Transpose/MaxPool/...
outputs reuse their input's parameters so ORT drops the pair around them.

**Why 7-bit weights by default.** ONNX Runtime's x86 u8s8 GEMM/conv kernels on AVX2
CPUs *without* VNNI multiply uint8 activations by int8 weights with ``vpmaddubsw``,
which adds two adjacent products into a *saturating int16*. With 8-bit weights
``2 * 255 * -128 = -65280`` does not fit, sums clip silently (int8 activations are shifted
to uint8 first, so s8s8 has the same problem), and ORT's own default per-channel int8
collapses the MLPerf Tiny keyword model to ~9 % top-1 on such CPUs; VNNI CPUs
(``vpdpbusd``, int32 accumulation) are fine. A model file does not know which CPU will
run it, so ``reduce_range=None`` means **weights in [-63, 63]**: ``2 * 255 * 63 = 32130
<= 32767``, no pair sum can saturate anywhere (:func:`max_pair_sum`; the tests emulate the
instruction). Cost on KWS: none measurable (``docs/onnx_export.md``). ``reduce_range=
False`` gives full 8-bit weights for targets known to have VNNI (or ARM).

Example:
    >>> max_pair_sum()  # uint8 activations x weights in [-63, 63]
    (-32130, 32130)
    >>> max_pair_sum(w_min=-128, w_max=127)[0] < -32768  # 8-bit weights can saturate
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from microquant.errors import MicroquantError
from microquant.export.onnx_build import Builder, WeightUse, base_model, find_weights
from microquant.ir.graph import Graph, Node
from microquant.quant.primitives import QMAX, QMIN, choose_qparams, round_half_away

# Ops whose output holds a subset of the input's values: sharing the input's qparams
# lets ORT drop the Q/DQ pair around them.
PASSTHROUGH_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool",
                   "Identity", "Dropout")
# Producers an activation fuses into (ORT removes Relu/Clip before a QuantizeLinear whose
# range they do not cut), so their pre-activation output gets no Q/DQ pair of its own.
FUSABLE_PRODUCERS = ("Conv", "Gemm", "MatMul", "Add")
ACTIVATIONS = ("Relu", "Clip")
# Ops with a quantized ORT kernel that need constant operands quantized too.
CONST_OPERAND_OPS = ("Add", "Mul", "Concat")


def weight_qparams(w: np.ndarray, axis: int | None, qmax: int, symmetric: bool = True,
                   min_scale: np.ndarray | float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q int8, scale float32, zero_point int8)`` for ``w``, per channel along ``axis``.

    Symmetric: ``scale = max|w| / qmax``, codes in ``[-qmax, qmax]``, zero point 0.
    Asymmetric: TFLite-style nudged zero point over ``[-qmax-1, qmax]``.
    ``min_scale`` (per channel or scalar) is a lower bound for the scale.
    """
    w = np.asarray(w, np.float32)
    red = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    lo = np.minimum(w.min(axis=red), 0.0)
    hi = np.maximum(w.max(axis=red), 0.0)
    if symmetric:
        bound = np.maximum(np.abs(lo), np.abs(hi))
        scale = np.where(bound > 0, bound / qmax, 1.0)
        scale = np.maximum(scale, min_scale).astype(np.float32)
        zp = np.zeros(scale.shape, np.int64)
        qmin = -qmax
    else:
        qmin = -qmax - 1
        scale = np.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0)
        scale = np.maximum(scale, min_scale).astype(np.float32)
        zp = np.clip(round_half_away(qmin - lo / scale), qmin, qmax).astype(np.int64)
    bshape = [1] * w.ndim
    if axis is not None:
        bshape[axis] = -1
    q = round_half_away(w / scale.reshape(bshape)) + zp.reshape(bshape)
    q = np.clip(q, qmin, qmax).astype(np.int8)
    return q, scale, zp.astype(np.int8)


def max_pair_sum(act_max: int = 255, w_min: int = -63, w_max: int = 63) -> tuple[int, int]:
    """Extreme values of ``a0*w0 + a1*w1`` for uint8 ``a`` and weights in
    ``[w_min, w_max]`` - what ``vpmaddubsw`` must fit in int16 ([-32768, 32767])."""
    return 2 * act_max * w_min, 2 * act_max * w_max


def _act_qparams(graph: Graph, ranges: Mapping[str, tuple[float, float]], dtype: str
                 ) -> dict[str, tuple[np.float32, np.int64]]:
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    outputs = set(graph.outputs)

    def float_act(name: str) -> bool:
        t = graph.tensors.get(name)
        return t is not None and not t.is_const and t.dtype.startswith("float")

    qp: dict[str, tuple[np.float32, np.int64]] = {}
    for name in graph.inputs:
        if float_act(name) and name in ranges:
            qp[name] = choose_qparams(*ranges[name], dtype)
    for n in graph.nodes:
        for o in n.outputs:
            if not float_act(o):
                continue
            users = consumers.get(o, [])
            fused = (n.op in FUSABLE_PRODUCERS and o not in outputs and len(users) == 1
                     and users[0].op in ACTIVATIONS)
            if n.op in PASSTHROUGH_OPS and n.inputs[0] in qp:
                qp[o] = qp[n.inputs[0]]
            elif not fused and o in ranges:
                qp[o] = choose_qparams(*ranges[o], dtype)
    return qp


def quantize_static(graph: Graph, ranges: Mapping[str, tuple[float, float]], act: str,
                    wq_max: int, per_channel: bool, symmetric_weights: bool,
                    opset: int | None) -> onnx.ModelProto:
    """QDQ model with ``act`` ("uint8" / "int16") activations and weights in
    ``[-wq_max, wq_max]`` (symmetric) at ``opset`` (``None``: the model's own)."""
    base, opset = base_model(graph, opset)
    b = Builder(base)
    qp = _act_qparams(graph, ranges, act)
    if not qp:
        raise MicroquantError("no activation ranges match the model's tensors; "
                              "pass ranges keyed by ONNX tensor names (see onnx_ranges)")
    # equal qparams (e.g. around Reshape / MaxPool) share one pair of initializers
    qp_names = {t: (b.const("act_scale", np.float32(s)), b.const("act_zp", np.asarray(z, act)))
                for t, (s, z) in qp.items()}
    weights = find_weights(graph)
    biases = _bias_of(graph, weights, qp)
    floors: dict[str, np.ndarray] = {}
    if act != "int16":
        # Fused int8 kernels read the int32 bias at x_scale * w_scale: raise w_scale where
        # |b| / (x_scale * w_scale) would not fit (dead channels, weights ~1e-30, bias not).
        for node, w, bias in biases.values():
            data = np.abs(graph.const(bias)).reshape(-1).astype(np.float64)
            floor = data / (float(qp[node.inputs[0]][0]) * float(1 << 30))
            floors[w] = floor if per_channel else floor.max()
    w_scales: dict[str, tuple[np.ndarray, str]] = {}
    for name, use in weights.items():
        axis = use.out_axis if per_channel else None
        q, s, z = weight_qparams(graph.const(name), axis, wq_max, symmetric_weights,
                                 floors.get(name, 0.0))
        if not per_channel:
            s, z = s.reshape(()), z.reshape(())
        sn = b.init(f"{name}__scale", s)
        w_scales[name] = (s, sn)
        # an explicit zero point even when 0: ORT fuses Gemm into QGemm only with one
        _dq_const(b, name, q, sn, z, axis)

    # bias: int32 at x_scale * w_scale (a Mul of the two scale initializers, which
    # runtimes constant-fold)
    for node, w, bias in biases.values():
        x = node.inputs[0]
        _int32_bias(b, bias, graph.const(bias), (np.float32(qp[x][0]), qp_names[x][0]),
                    w_scales[w])

    for n in graph.nodes:
        if n.op not in CONST_OPERAND_OPS or not any(i in qp for i in n.inputs):
            continue
        for i in n.inputs:
            data = graph.const(i)
            if data is None or data.dtype.kind != "f" or i in weights or i not in b.inits:
                continue
            s, z = choose_qparams(float(data.min()), float(data.max()), act)
            q = np.clip(round_half_away(data / s) + z, QMIN[act], QMAX[act]).astype(act)
            _dq_const(b, i, q, np.float32(s), np.asarray(z, act), None)

    nodes: list[onnx.NodeProto] = []

    def qdq(src: str, dst: str, tensor: str) -> None:
        s, z = qp_names[tensor]
        q = b.fresh(f"{dst}__q")
        nodes.append(b.node("QuantizeLinear", [src, s, z], [q]))
        nodes.append(b.node("DequantizeLinear", [q, s, z], [dst]))

    renamed: dict[str, str] = {}
    for name in graph.inputs:
        if name in qp:
            renamed[name] = b.fresh(f"{name}__dq")
            qdq(name, renamed[name], name)
    for i in range(len(graph.nodes)):
        proto = onnx.NodeProto()
        proto.CopyFrom(base.graph.node[i])
        for k, inp in enumerate(proto.input):
            if inp in renamed:
                proto.input[k] = renamed[inp]
        pending = []
        for k, out in enumerate(proto.output):
            if out in qp:  # the DQ output keeps the name every consumer already reads
                proto.output[k] = b.fresh(f"{out}__float")
                pending.append((proto.output[k], out))
        nodes.append(proto)
        for src, dst in pending:
            qdq(src, dst, dst)
    return b.finish(nodes, opset)


def _bias_of(graph: Graph, weights: Mapping[str, WeightUse], qp: Mapping[str, object]
             ) -> dict[str, tuple[Node, str, str]]:
    """``{bias: (node, weight, bias)}`` for Conv/Gemm whose input is quantized and whose
    constant bias (read by that node only) has one value per output channel."""
    users: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            users[i] = users.get(i, 0) + 1
    out = {}
    for n in graph.nodes:
        if n.op not in ("Conv", "Gemm") or len(n.inputs) < 3 or not n.inputs[2]:
            continue
        x, w, bias = n.inputs[:3]
        data = graph.const(bias)
        if (x in qp and w in weights and data is not None and data.dtype.kind == "f"
                and users[bias] == 1 and data.size == graph.const(w).shape[
                    weights[w].out_axis]
                and n.attrs.get("alpha", 1.0) == 1.0 and n.attrs.get("beta", 1.0) == 1.0):
            out[bias] = (n, w, bias)
    return out


def _dq_const(b: Builder, name: str, q: np.ndarray, scale: np.ndarray | str,
              zp: np.ndarray | None, axis: int | None) -> None:
    """Replace float initializer ``name`` by ``DequantizeLinear(q, scale[, zp]) -> name``.

    ``scale`` is an array or the name of an existing tensor; ``zp=None`` omits the zero
    point (0 of ``q``'s type).
    """
    b.drop(name)
    qn = b.init(f"{name}__quantized", q)
    sn = scale if isinstance(scale, str) else b.init(f"{name}__scale",
                                                     np.asarray(scale, np.float32))
    inputs = [qn, sn] if zp is None else [qn, sn, b.init(f"{name}__zero_point", zp)]
    attrs = {"axis": int(axis)} if axis is not None else {}
    b.prefix.append(b.node("DequantizeLinear", inputs, [name], **attrs))


def _int32_bias(b: Builder, name: str, data: np.ndarray, x_scale: tuple[np.float32, str],
                w_scale: tuple[np.ndarray, str]) -> None:
    """int32 bias at ``x_scale * w_scale``, the scale every fused int8 kernel assumes.

    Channels whose bias would overflow int32 at that scale (tiny int16 activation scales;
    ORT's own float-bias quantization saturates there and breaks int16 models) get the
    coarser scale ``|b| / 2**30`` instead; int8 kernels never fuse such a model (int16) or
    never see such a bias (int8 products are ~1e-5, biases < 2e4).
    """
    xs, xs_name = x_scale
    ws, ws_name = w_scale
    flat = data.reshape(-1)
    if ws.size not in (1, flat.size):
        return
    prod = (xs * ws.astype(np.float32)).astype(np.float32)
    per_channel = ws.size > 1
    axis = data.ndim - 1 if per_channel else None
    if np.all(prod > 0) and np.all(np.abs(flat) / prod.astype(np.float64) < QMAX["int32"]):
        scale_name = b.fresh(f"{name}__scale")
        b.prefix.append(b.node("Mul", [xs_name, ws_name], [scale_name]))
        scale: np.ndarray | str = scale_name
        div = prod
    else:
        div = np.maximum(prod, np.abs(flat).astype(np.float32) / np.float32(1 << 30))
        div = np.where(div > 0, div, 1.0).astype(np.float32)
        scale = div if per_channel else div.reshape(())
    q = round_half_away(flat / div).reshape(data.shape).astype(np.int32)
    _dq_const(b, name, q, scale, None, axis)


def int8(graph: Graph, ranges: Mapping[str, tuple[float, float]] | None, *,
         per_channel: bool = True, symmetric_weights: bool = True,
         reduce_range: bool | None = None, **_: object) -> onnx.ModelProto:
    """Scheme ``int8`` (uint8 activations, 7-bit weights unless ``reduce_range=False``)."""
    wq_max = 127 if reduce_range is False else 63
    return quantize_static(graph, _need(ranges, "int8"), "uint8", wq_max, per_channel,
                           symmetric_weights, opset=None)


def int16(graph: Graph, ranges: Mapping[str, tuple[float, float]] | None, *,
          per_channel: bool = True, symmetric_weights: bool = True, **_: object
          ) -> onnx.ModelProto:
    """Scheme ``int16`` (int16 activations, int8 weights, opset 21)."""
    return quantize_static(graph, _need(ranges, "int16"), "int16", 127, per_channel,
                           symmetric_weights, opset=21)


def _need(ranges: Mapping[str, tuple[float, float]] | None, scheme: str
          ) -> Mapping[str, tuple[float, float]]:
    if not ranges:
        raise MicroquantError(f"scheme {scheme!r} needs activation ranges (calibration data)")
    return ranges
