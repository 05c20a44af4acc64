"""Per-layer summary of a TFLite-level graph (float lowered or int8 quantized).

One row per node: op, activation input/output shapes, the attributes that matter when
reading a model (stride, padding, activation, filter size ...), multiply-accumulates,
the weight value range and - for quantized graphs - weight and activation quantization.

MACs count only the matrix ops: ``CONV_2D`` = outputs x kh x kw x Ci, ``DEPTHWISE_CONV_2D``
= outputs x kh x kw, ``FULLY_CONNECTED`` = outputs x K; element-wise ops and pools count 0.
Weight ranges are real values (dequantized ``scale * (q - zp)`` for int8 weights).

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["y"])
    >>> _ = g.add_tensor(Tensor("x", (1, 4), "float32"))
    >>> _ = g.add_tensor(Tensor("w", (2, 4), "float32", np.ones((2, 4), np.float32)))
    >>> _ = g.add_tensor(Tensor("y", (1, 2), "float32"))
    >>> g.nodes.append(Node("FULLY_CONNECTED", ["x", "w", ""], ["y"], {"activation": "NONE"}))
    >>> layer_rows(g)[0]["macs"]
    8
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microquant.ir.graph import Graph, Node, QuantParams, Tensor

WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
# Attribute -> how it is shown; pairs (h, w) are merged into one "2x2" value.
_PAIRS = {"stride": ("stride_h", "stride_w"), "dilation": ("dilation_h", "dilation_w"),
          "filter": ("filter_h", "filter_w")}
_SINGLE = ("padding", "activation", "depth_multiplier", "axis", "keep_dims", "beta")


def _key_params(node: Node) -> dict[str, Any]:
    a = node.attrs
    out: dict[str, Any] = {}
    for label, (kh, kw) in _PAIRS.items():
        if kh in a and kw in a:
            if label == "dilation" and a[kh] == 1 and a[kw] == 1:
                continue  # the usual case; only unusual dilations are worth a column
            out[label] = f"{a[kh]}x{a[kw]}"
    for k in _SINGLE:
        if k in a and not (k == "activation" and a[k] == "NONE"):
            v = a[k]
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def _macs(node: Node, graph: Graph) -> int:
    if node.op not in WEIGHTED_OPS:
        return 0
    out = graph.tensor(node.outputs[0]).size
    w = graph.tensor(node.inputs[1]).shape
    if node.op == "CONV_2D":
        return out * w[1] * w[2] * w[3]
    if node.op == "DEPTHWISE_CONV_2D":
        return out * w[1] * w[2]
    return out * w[-1]


def _qp(q: QuantParams | None) -> dict[str, Any] | None:
    if q is None:
        return None
    if q.scale.size == 1:
        return {"scale": float(q.scale[0]), "zero_point": int(q.zero_point[0])}
    return {"scale_min": float(q.scale.min()), "scale_max": float(q.scale.max()),
            "channels": int(q.scale.size), "axis": q.axis}


def _real_values(t: Tensor) -> np.ndarray:
    data = np.asarray(t.data)
    if data.dtype.kind == "f" or t.quant is None:
        return data.astype(np.float64)
    q = t.quant
    scale, zp = q.scale.astype(np.float64), q.zero_point.astype(np.float64)
    if q.scale.size > 1 and q.axis is not None:
        shape = [1] * data.ndim
        shape[q.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (data.astype(np.float64) - zp) * scale


def _weight(node: Node, graph: Graph) -> Tensor | None:
    if node.op in WEIGHTED_OPS:
        return graph.tensor(node.inputs[1])
    for name in node.inputs:  # e.g. ADD/MUL with a constant operand
        t = graph.tensors.get(name) if name else None
        if t is not None and t.is_const and t.dtype != "int32":
            return t
    return None


def layer_rows(graph: Graph) -> list[dict[str, Any]]:
    """JSON-friendly per-node rows (see module docstring)."""
    rows = []
    for i, node in enumerate(graph.nodes):
        acts = [graph.tensor(n) for n in node.inputs if n and not graph.tensor(n).is_const]
        outs = [graph.tensor(n) for n in node.outputs]
        row: dict[str, Any] = {
            "index": i,
            "name": node.name,
            "op": node.op,
            "input_shapes": [list(t.shape) for t in acts],
            "output_shapes": [list(t.shape) for t in outs],
            "params": _key_params(node),
            "macs": _macs(node, graph),
        }
        w = _weight(node, graph)
        if w is not None and w.data is not None and w.size:
            vals = _real_values(w)
            row["weight_shape"] = list(w.shape)
            row["weight_min"] = float(vals.min())
            row["weight_max"] = float(vals.max())
            row["weight_quant"] = _qp(w.quant)
        if any(t.quant is not None for t in acts + outs):
            row["input_quant"] = [_qp(t.quant) for t in acts]
            row["output_quant"] = [_qp(t.quant) for t in outs]
        rows.append(row)
    return rows


def summary(graph: Graph, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Totals: node count, MACs, parameter count and constant bytes, I/O tensors."""
    rows = layer_rows(graph) if rows is None else rows
    consts = [t for t in graph.tensors.values() if t.is_const]
    return {
        "layers": len(rows),
        "macs": int(sum(r["macs"] for r in rows)),
        "parameters": int(sum(t.size for t in consts)),
        "constant_bytes": int(sum(np.asarray(t.data).nbytes for t in consts)),
        "inputs": [_io(graph.tensor(n)) for n in graph.inputs],
        "outputs": [_io(graph.tensor(n)) for n in graph.outputs],
    }


def _io(t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "quant": _qp(t.quant)}


def _fmt_q(q: dict[str, Any] | None) -> str:
    if q is None:
        return "-"
    if "scale" in q:
        return f"{q['scale']:.3g}/{q['zero_point']}"
    return f"{q['scale_min']:.2g}..{q['scale_max']:.2g} x{q['channels']}"


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows flattened to short strings for :func:`microquant.report.table.format_table`."""
    out = []
    for r in rows:
        shapes = ",".join("x".join(map(str, s)) for s in r["input_shapes"]) or "-"
        d: dict[str, Any] = {
            "#": r["index"],
            "op": r["op"],
            "input": shapes,
            "output": ",".join("x".join(map(str, s)) for s in r["output_shapes"]),
            "params": " ".join(f"{k}={v}" for k, v in r["params"].items()) or "-",
            "MACs": r["macs"],
            "weights": (f"[{r['weight_min']:.3g}, {r['weight_max']:.3g}]"
                        if "weight_min" in r else "-"),
        }
        if any("output_quant" in x for x in rows):
            d["w scale"] = _fmt_q(r.get("weight_quant"))
            d["in s/zp"] = " ".join(_fmt_q(q) for q in r.get("input_quant", [])) or "-"
            d["out s/zp"] = " ".join(_fmt_q(q) for q in r.get("output_quant", [])) or "-"
        out.append(d)
    return out
