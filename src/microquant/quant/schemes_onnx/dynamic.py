"""Scheme ``dynamic``: int8 weights, activations quantized at run time (no calibration).

Each Conv / MatMul / Gemm with a constant weight becomes::

    x -> DynamicQuantizeLinear -> (x_u8, x_scale, x_zp)     # per tensor, per call
    MatMulInteger(x_u8, W_s8, x_zp, 0) | ConvInteger(...)   # int32 accumulators
    -> Cast(float) -> Mul(x_scale * w_scale) [-> Add(bias)]

the pattern ONNX Runtime fuses into ``DynamicQuantizeMatMul`` for MatMul/Gemm (ConvInteger
runs as is; ORT's ConvInteger takes a per-tensor weight zero point, so the per-channel
scale is applied in the ``Mul``). ``Gemm`` is rewritten as ``[K, N]`` MatMul with
``alpha`` folded into the weights and ``beta`` into the bias. Weights are symmetric per
output channel in ``[-63, 63]`` by default: the same u8 x s8 kernels as the static scheme
(see :mod:`.qdq` for the AVX2 saturation argument).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from microquant.errors import MicroquantError
from microquant.export.onnx_build import Builder, base_model, find_weights
from microquant.ir.graph import Graph
from microquant.quant.schemes_onnx.qdq import weight_qparams


def dynamic(graph: Graph, ranges: Mapping[str, tuple[float, float]] | None = None, *,
            per_channel: bool = True, reduce_range: bool | None = None, **_: object
            ) -> onnx.ModelProto:
    """The dynamically quantized model of ``graph`` (``ranges`` unused)."""
    return _export_dynamic(graph, 127 if reduce_range is False else 63, per_channel)


def _export_dynamic(graph: Graph, wq_max: int, per_channel: bool) -> onnx.ModelProto:
    """MatMul / Gemm / Conv with constant weights -> run-time activation quantization."""
    base, opset = base_model(graph)
    b = Builder(base)
    weights = find_weights(graph)
    nodes: list[onnx.NodeProto] = []
    dq_cache: dict[str, tuple[str, str, str]] = {}
    n_done = 0
    for i, n in enumerate(graph.nodes):
        proto = base.graph.node[i]
        w = n.inputs[1] if len(n.inputs) > 1 else ""
        x = n.inputs[0]
        if w not in weights or (n.op == "Gemm" and n.attrs.get("transA", 0)):
            nodes.append(proto)
            continue
        data = graph.const(w).astype(np.float32)
        bias = graph.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
        if n.op == "Gemm":
            if n.attrs.get("transB", 0):
                data = data.T
            data = data * np.float32(n.attrs.get("alpha", 1.0))
            if bias is not None and bias.size in (1, data.shape[1]):
                bias = bias * np.float32(n.attrs.get("beta", 1.0))
            elif len(n.inputs) > 2 and n.inputs[2]:
                nodes.append(proto)  # activation or full-matrix bias: leave the node float
                continue
        axis = (0 if n.op == "Conv" else 1) if per_channel else None
        q, s, _ = weight_qparams(data, axis, wq_max, symmetric=True)
        if x not in dq_cache:
            outs = [b.fresh(f"{x}__{k}") for k in ("quantized", "scale", "zero_point")]
            nodes.append(b.node("DynamicQuantizeLinear", [x], outs))
            dq_cache[x] = (outs[0], outs[1], outs[2])
        xq, xs, xz = dq_cache[x]
        wq = b.init(f"{w}__quantized", q)
        wz = b.const("__mq_int8_zero", np.array(0, np.int8))
        y = n.outputs[0]
        acc, acc_f, scale = (b.fresh(f"{y}__{k}") for k in ("int32", "float", "scale"))
        if n.op == "Conv":
            attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
            nodes.append(b.node("ConvInteger", [xq, wq, xz, wz], [acc], **attrs))
            s_shape = (-1,) + (1,) * (data.ndim - 2)
        else:
            nodes.append(b.node("MatMulInteger", [xq, wq, xz, wz], [acc]))
            s_shape = (-1,)
        ws = b.init(f"{w}__scale", s.reshape(s_shape) if per_channel else s.reshape(()))
        nodes.append(b.node("Mul", [xs, ws], [scale]))
        nodes.append(b.node("Cast", [acc], [acc_f], to=TensorProto.FLOAT))
        if bias is None:
            nodes.append(b.node("Mul", [acc_f, scale], [y]))
        else:
            pre = b.fresh(f"{y}__nobias")
            nodes.append(b.node("Mul", [acc_f, scale], [pre]))
            bn = b.init(f"{n.inputs[2]}__bias", bias.reshape(s_shape).astype(np.float32))
            nodes.append(b.node("Add", [pre, bn], [y]))
        n_done += 1
    if not n_done:
        raise MicroquantError("scheme 'dynamic' found no Conv/MatMul/Gemm with constant "
                              "weights to quantize")
    return b.finish(nodes, opset)
