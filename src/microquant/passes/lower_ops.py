"""ONNX op -> TFLite-level op rules, one handler per ONNX op (see ARCHITECTURE.md's table).

Each handler reads its ONNX node, asks the :class:`~microquant.passes.layout.Lowerer` for
its inputs in the layout the TFLite op needs (``lw.get(t, NHWC)``), converts weights and
attributes and emits the op. Padding: ONNX pads equal to TFLite SAME -> ``SAME``, all
zero -> ``VALID``, anything else -> an explicit ``PAD`` op followed by ``VALID``.

Weights: CONV_2D ``[Co, kh, kw, Ci]``; DEPTHWISE_CONV_2D ``[1, kh, kw, Co]`` when
``group == Ci`` (``depth_multiplier = Co / Ci``); FULLY_CONNECTED ``[N, K]``; missing
biases become zeros.

Example: ``Conv<pads=[1,1,1,1], kernel_shape=[3,3]>(x, W[Co,Ci,3,3], b)`` ->
``CONV_2D(x_nhwc, W.transpose(0,2,3,1), b, padding=SAME)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.passes.layout import NHWC, Lowerer, const_in_layout, ident, ints

# -- padding ------------------------------------------------------------------


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TFLite SAME: total = max((out - 1) * s + eff - size, 0), the odd one goes after."""
    eff = (k - 1) * d + 1
    out = (size + s - 1) // s
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _padding(
    node: Node,
    hw: tuple[int, int],
    k: list[int],
    s: list[int],
    d: list[int],
) -> tuple[str, list[tuple[int, int]] | None]:
    """(TFLite padding, explicit [(top, bottom), (left, right)] or None)."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    same = [_same_pads(hw[i], k[i], s[i], d[i]) for i in range(2)]
    if auto == "VALID":
        pairs = [(0, 0), (0, 0)]
    elif auto == "SAME_UPPER":
        pairs = same
    elif auto == "SAME_LOWER":
        pairs = [(b, a) for a, b in same]
    else:
        pads = ints(node.attrs.get("pads"), [0, 0, 0, 0])
        pairs = [(pads[0], pads[2]), (pads[1], pads[3])]
    if any(v < 0 for pair in pairs for v in pair):
        raise MicroquantError(f"{node.op} node {node.name!r}: negative pads are unsupported")
    if all(v == 0 for pair in pairs for v in pair):
        return "VALID", None
    # TFLite's SAME average pool divides by the in-bounds count only.
    include_pad = node.op == "AveragePool" and int(node.attrs.get("count_include_pad", 0))
    if pairs == same and not include_pad:
        return "SAME", None
    return "VALID", pairs


def _non_negative(lw: Lowerer, x: str) -> bool:
    """True when ONNX tensor ``x`` comes straight out of a Relu / Clip(min >= 0)."""
    prod = lw.src.producer(x)
    if prod is None or prod.op not in ("Relu", "Clip"):
        return False
    if prod.op == "Relu":
        return True
    lo = lw.src.const(prod.inputs[1]) if len(prod.inputs) > 1 and prod.inputs[1] else None
    return lo is not None and float(np.asarray(lo).reshape(())) >= 0


def _out_size(padding: str, size: int, k: int, s: int, d: int) -> int:
    eff = (k - 1) * d + 1
    return (size + s - 1) // s if padding == "SAME" else (size - eff) // s + 1


def _spatial(lw: Lowerer, node: Node, k: list[int]) -> tuple[str, dict[str, Any]]:
    """NHWC input (explicitly padded if needed) and the common window attributes."""
    x = lw.activation(node.inputs[0], node)
    if len(lw.shape(x)) != 4:
        raise MicroquantError(f"{node.op} node {node.name!r}: only 2-D windows are supported")
    s = ints(node.attrs.get("strides"), [1, 1])
    d = ints(node.attrs.get("dilations"), [1, 1])
    _, _, h, w = lw.shape(x)
    padding, explicit = _padding(node, (h, w), k, s, d)
    xin = lw.get(x, NHWC)
    if explicit is not None:
        # Zero padding is exact for a max over non-negative values (every window keeps
        # at least one real element); otherwise TFLite has no equivalent.
        if node.op == "MaxPool" and not _non_negative(lw, x):
            raise MicroquantError(
                f"MaxPool node {node.name!r}: pads {explicit} are not TFLite SAME/VALID"
            )
        if node.op == "AveragePool" and not int(node.attrs.get("count_include_pad", 0)):
            raise MicroquantError(
                f"AveragePool node {node.name!r}: pads {explicit} are not TFLite SAME/VALID"
            )
        (t, b), (l, r) = explicit
        n_, h_, w_, c_ = lw.g.tensor(xin).shape
        padded = lw.fresh(x + "_pad")
        lw.g.add_tensor(Tensor(padded, (n_, h_ + t + b, w_ + l + r, c_), "float32"))
        pc = lw.const(padded + "_paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32))
        lw.g.nodes.append(Node("PAD", [xin, pc], [padded], {}, padded))
        xin, h, w = padded, h + t + b, w + l + r
    out = lw.shape(node.outputs[0])
    want = (_out_size(padding, h, k[0], s[0], d[0]), _out_size(padding, w, k[1], s[1], d[1]))
    if tuple(out[2:]) != want:
        raise MicroquantError(
            f"{node.op} node {node.name!r}: output {out[2:]} differs from TFLite's {want} "
            "(ceil_mode or unusual pads)"
        )
    attrs = {"stride_h": s[0], "stride_w": s[1], "padding": padding}
    return xin, attrs | {"_dilation": d}


# -- op handlers ----------------------------------------------------------------


def _conv(lw: Lowerer, node: Node) -> None:
    w = lw.weight(node, 1)
    if w.ndim != 4:
        raise MicroquantError(f"Conv node {node.name!r}: only 2-D convolutions are supported")
    co, cig, kh, kw = w.shape
    ci = lw.shape(node.inputs[0])[1]
    group = int(node.attrs.get("group", 1))
    xin, attrs = _spatial(lw, node, [kh, kw])
    d = attrs.pop("_dilation")
    attrs.update(dilation_h=d[0], dilation_w=d[1], activation="NONE")
    has_bias = len(node.inputs) > 2 and node.inputs[2]
    bias = lw.weight(node, 2) if has_bias else np.zeros(co, np.float32)
    base = node.inputs[1]
    if group == 1:
        op, wl = "CONV_2D", w.transpose(0, 2, 3, 1)
    elif group == ci and cig == 1:
        op, wl = "DEPTHWISE_CONV_2D", w.reshape(co, kh, kw).transpose(1, 2, 0)[None]
        attrs["depth_multiplier"] = co // ci
    else:
        raise MicroquantError(
            f"Conv node {node.name!r}: grouped convolution (group={group}, {ci} input channels) "
            "is unsupported; only group=1 or depthwise"
        )
    bias_name = node.inputs[2] if has_bias else node.name + "_bias"
    ins = [xin, lw.const(base, wl), lw.const(bias_name, bias)]
    lw.emit(op, ins, node.outputs[0], NHWC, attrs, node)


def _pool(lw: Lowerer, node: Node) -> None:
    if len([o for o in node.outputs if o]) > 1:
        raise MicroquantError(f"MaxPool node {node.name!r}: the indices output is unsupported")
    k = ints(node.attrs.get("kernel_shape"), [])
    if len(k) != 2:
        raise MicroquantError(f"{node.op} node {node.name!r}: only 2-D pooling is supported")
    xin, attrs = _spatial(lw, node, k)
    if attrs.pop("_dilation") != [1, 1]:
        raise MicroquantError(f"{node.op} node {node.name!r}: dilated pooling is unsupported")
    attrs.update(filter_h=k[0], filter_w=k[1], activation="NONE")
    op = "MAX_POOL_2D" if node.op == "MaxPool" else "AVERAGE_POOL_2D"
    lw.emit(op, [xin], node.outputs[0], NHWC, attrs, node)


def _global_avg(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    if len(lw.shape(x)) != 4:
        raise MicroquantError(f"GlobalAveragePool node {node.name!r}: only 4-D input is supported")
    _, _, h, w = lw.shape(x)
    attrs = {
        "filter_h": h,
        "filter_w": w,
        "stride_h": 1,
        "stride_w": 1,
        "padding": "VALID",
        "activation": "NONE",
    }
    lw.emit("AVERAGE_POOL_2D", [lw.get(x, NHWC)], node.outputs[0], NHWC, attrs, node)


def _reduce_mean(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    rank = len(lw.shape(x))
    axes = node.attrs.get("axes")
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = lw.src.const(node.inputs[1])
        if axes is None:
            raise MicroquantError(f"ReduceMean node {node.name!r}: axes must be constant")
    if axes is None or len(axes) == 0:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            raise MicroquantError(f"ReduceMean node {node.name!r}: empty axes no-op is unsupported")
        axes = list(range(rank))
    axes = sorted(int(a) % rank for a in axes)
    keep = bool(int(node.attrs.get("keepdims", 1)))
    p = lw.perm[x]
    phys = sorted(p.index(a) for a in axes)
    if keep:
        out_perm = p
    else:
        kept = [p[i] for i in range(rank) if i not in phys]
        out_perm = tuple(a - sum(r < a for r in axes) for a in kept)
    ins = [lw.loc[x], lw.const(node.name + "_axes", np.array(phys, np.int32))]
    lw.emit("MEAN", ins, node.outputs[0], out_perm, {"keep_dims": keep}, node)


_UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "Tanh": "TANH"}


def _unary(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    lw.emit(_UNARY[node.op], [lw.loc[x]], node.outputs[0], lw.perm[x], {}, node)


def _clip(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    bounds = []
    for k, default in ((1, -np.inf), (2, np.inf)):
        name = node.inputs[k] if len(node.inputs) > k else ""
        v = lw.src.const(name) if name else np.float32(default)
        if v is None:
            raise MicroquantError(f"Clip node {node.name!r}: bounds must be constant")
        bounds.append(float(np.asarray(v).reshape(())))
    ops = {(0.0, np.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "_RELU_N1_TO_1"}
    op = ops.get(tuple(bounds))
    if op is None:
        raise MicroquantError(
            f"Clip node {node.name!r}: range {bounds} is unsupported "
            "(only [0, inf), [0, 6], [-1, 1])"
        )
    lw.emit(op, [lw.loc[x]], node.outputs[0], lw.perm[x], {}, node)


def _binary(lw: Lowerer, node: Node) -> None:
    a, b = node.inputs[:2]
    ca, cb = lw.src.const(a), lw.src.const(b)
    op = {"Add": "ADD", "Sub": "ADD", "Mul": "MUL", "Div": "MUL"}[node.op]
    if node.op in ("Sub", "Div"):
        if cb is None:
            raise MicroquantError(
                f"{node.op} node {node.name!r}: only subtracting/dividing by a constant "
                "is supported"
            )
        with np.errstate(divide="raise"):
            try:
                cb = -np.asarray(cb) if node.op == "Sub" else 1.0 / np.asarray(cb, np.float64)
            except FloatingPointError:
                raise MicroquantError(f"Div node {node.name!r} divides by zero") from None
    if ca is not None:  # keep the activation first (ADD/MUL commute)
        a, b, ca, cb = b, a, cb, ca
    x = lw.activation(a, node)
    if cb is None:
        lw.activation(b, node)
    rank = len(lw.shape(node.outputs[0]))
    # A layout can only be shared when no activation operand is broadcast up in rank.
    full = len(lw.shape(x)) == rank and (cb is not None or len(lw.shape(b)) == rank)
    p = lw.perm[x] if full else ident(rank)

    def phys(t: str) -> str:
        return lw.get(t, p if full else ident(len(lw.shape(t))))

    other = lw.const(b, const_in_layout(cb, rank, p)) if cb is not None else phys(b)
    lw.emit(op, [phys(x), other], node.outputs[0], p, {"activation": "NONE"}, node)


def _concat(lw: Lowerer, node: Node) -> None:
    rank = len(lw.shape(node.outputs[0]))
    acts = [i for i in node.inputs if lw.src.const(i) is None]
    if not acts:
        raise MicroquantError(f"Concat node {node.name!r} has only constant inputs")
    p = lw.perm[lw.activation(acts[0], node)]
    ins = []
    for i in node.inputs:
        c = lw.src.const(i)
        ins.append(lw.const(i, const_in_layout(c, rank, p)) if c is not None else lw.get(i, p))
    axis = int(node.attrs["axis"]) % rank
    attrs = {"axis": p.index(axis), "activation": "NONE"}
    lw.emit("CONCATENATION", ins, node.outputs[0], p, attrs, node)


def _pad(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    rank = len(lw.shape(x))
    if node.attrs.get("mode", "constant") != "constant":
        raise MicroquantError(f"Pad node {node.name!r}: only constant padding is supported")
    pads = lw.src.const(node.inputs[1]) if len(node.inputs) > 1 else None
    value = lw.src.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else 0.0
    if pads is None or value is None:
        raise MicroquantError(f"Pad node {node.name!r}: pads and value must be constant")
    if float(np.asarray(value).reshape(())) != 0.0:
        raise MicroquantError(f"Pad node {node.name!r}: only zero padding is supported")
    pads = [int(v) for v in pads]
    axes = list(range(rank))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(a) % rank for a in lw.src.const(node.inputs[3])]
    begin, end = [0] * rank, [0] * rank
    for j, a in enumerate(axes):
        begin[a], end[a] = pads[j], pads[j + len(axes)]
    if min(begin + end) < 0:
        raise MicroquantError(f"Pad node {node.name!r}: negative pads (cropping) are unsupported")
    p = lw.perm[x]
    paddings = np.array([[begin[a], end[a]] for a in p], np.int32)
    ins = [lw.loc[x], lw.const(node.name + "_paddings", paddings)]
    lw.emit("PAD", ins, node.outputs[0], p, {}, node)


def _reshape(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    y = node.outputs[0]
    shape = lw.const(y + "_shape", np.array(lw.shape(y), np.int32))
    lw.emit(
        "RESHAPE", [lw.get(x, ident(len(lw.shape(x)))), shape], y, ident(len(lw.shape(y))), {}, node
    )


def _transpose(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    rank = len(lw.shape(x))
    q = ints(node.attrs.get("perm"), list(reversed(range(rank))))
    y = node.outputs[0]
    # physical = x.transpose(p) = y.transpose(r) with y = x.transpose(q): q[r] = p.
    lw.loc[y] = lw.loc[x]
    lw.perm[y] = tuple(q.index(a) for a in lw.perm[x])


def _gemm(lw: Lowerer, node: Node) -> None:
    a = node.attrs
    canonical = (
        not int(a.get("transA", 0))
        and int(a.get("transB", 0))
        and float(a.get("alpha", 1)) == 1
        and float(a.get("beta", 1)) == 1
    )
    if not canonical:
        raise MicroquantError(
            f"Gemm node {node.name!r}: transA / non-constant or non-canonical form is unsupported"
        )
    x = lw.activation(node.inputs[0], node)
    w = lw.weight(node, 1)
    bias = lw.weight(node, 2) if len(node.inputs) > 2 and node.inputs[2] else None
    if bias is None:
        bias = np.zeros(w.shape[0], np.float32)
    if bias.shape != (w.shape[0],):
        raise MicroquantError(f"Gemm node {node.name!r}: bias must have shape [{w.shape[0]}]")
    bias_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else node.name + "_bias"
    ins = [lw.get(x, (0, 1)), lw.const(node.inputs[1], w), lw.const(bias_name, bias)]
    attrs = {"activation": "NONE", "keep_num_dims": False}
    lw.emit("FULLY_CONNECTED", ins, node.outputs[0], (0, 1), attrs, node)


def _matmul(lw: Lowerer, node: Node) -> None:
    """MatMul with rank > 2 activation and constant 2-D weight: FC + RESHAPE."""
    x = lw.activation(node.inputs[0], node)
    b = lw.weight(node, 1)
    if b.ndim != 2:
        raise MicroquantError(
            f"MatMul node {node.name!r}: only a constant 2-D right operand is supported"
        )
    y = node.outputs[0]
    k, n = b.shape
    rows = lw.src.tensor(x).size // k
    fc = lw.fresh(y + "_fc")
    lw.g.add_tensor(Tensor(fc, (rows, n), "float32"))
    ins = [
        lw.get(x, ident(len(lw.shape(x)))),
        lw.const(node.inputs[1], b.T),
        lw.const(node.name + "_bias", np.zeros(n, np.float32)),
    ]
    lw.g.nodes.append(
        Node(
            "FULLY_CONNECTED", ins, [fc], {"activation": "NONE", "keep_num_dims": False}, node.name
        )
    )
    lw.calib[fc] = y
    shape = lw.const(y + "_shape", np.array(lw.shape(y), np.int32))
    lw.emit("RESHAPE", [fc, shape], y, ident(len(lw.shape(y))), {}, node)


def _softmax(lw: Lowerer, node: Node) -> None:
    x = lw.activation(node.inputs[0], node)
    rank = len(lw.shape(x))
    if int(node.attrs.get("axis", -1)) % rank != rank - 1:
        raise MicroquantError(f"Softmax node {node.name!r}: only the last axis is supported")
    p = lw.perm[x] if lw.perm[x][-1] == rank - 1 else ident(rank)
    lw.emit("SOFTMAX", [lw.get(x, p)], node.outputs[0], p, {"beta": 1.0}, node)


HANDLERS = {
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_avg,
    "ReduceMean": _reduce_mean,
    "Relu": _unary,
    "Sigmoid": _unary,
    "Tanh": _unary,
    "Clip": _clip,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Concat": _concat,
    "Pad": _pad,
    "Reshape": _reshape,
    "Flatten": _reshape,
    "Squeeze": _reshape,
    "Unsqueeze": _reshape,
    "Identity": _reshape,
    "Transpose": _transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Softmax": _softmax,
}


def lower_graph(graph: Graph) -> Graph:
    """ONNX-level graph -> TFLite-level graph (before activation fusion / clean-up)."""
    return Lowerer(graph).run(HANDLERS)
