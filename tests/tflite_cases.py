"""Single-op graphs for every op of the TFLite-level contract, used by the ``.tflite``
writer/reader and backend tests.

``FLOAT_CASES``: float32 graphs with non-default attributes (asymmetric strides and
filters, dilation, depth multiplier, fused activations …) plus an independent NumPy
reference of the op, so a mis-encoded attribute shows up as a wrong LiteRT result.
``INT8_CASES``: quantized graphs with the quantization constraints TFLite's int8 kernels
require (fixed output scales for SOFTMAX/LOGISTIC/TANH, equal in/out params for the
data-movement ops), to run in TFLM and LiteRT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from harness import qtensor, random_int, single_op_graph

from microquant.ir.graph import Graph, Tensor

Case = Callable[[], tuple[Graph, list[np.ndarray], Callable[[list[np.ndarray]], np.ndarray]]]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f(name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> Tensor:
    dtype = "float32" if data is None else str(data.dtype)
    return Tensor(name, shape, dtype, data)


def _rand(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(np.float32)


# -- NumPy references (NHWC, TFLite padding rules) -----------------------------------
def _pads(padding: str, size: int, filt: int, stride: int, dil: int = 1) -> tuple[int, int]:
    eff = (filt - 1) * dil + 1
    if padding == "VALID":
        return (size - eff) // stride + 1, 0
    out = -(-size // stride)
    return out, max((out - 1) * stride + eff - size, 0) // 2


def _act(y: np.ndarray, act: str) -> np.ndarray:
    lo, hi = {
        "NONE": (-np.inf, np.inf),
        "RELU": (0, np.inf),
        "RELU6": (0, 6),
        "RELU_N1_TO_1": (-1, 1),
    }[act]
    return np.clip(y, lo, hi)


def _windows(x: np.ndarray, kh: int, kw: int, a: dict[str, Any], fill: float):
    """Yield (oy, ox, patch[kh,kw,C], valid-mask) for a NHWC batch-1 input."""
    _, h, w, _ = x.shape
    dh, dw = a.get("dilation_h", 1), a.get("dilation_w", 1)
    oh, ph = _pads(a["padding"], h, kh, a["stride_h"], dh)
    ow, pw = _pads(a["padding"], w, kw, a["stride_w"], dw)
    for oy in range(oh):
        for ox in range(ow):
            ys = oy * a["stride_h"] - ph + np.arange(kh) * dh
            xs = ox * a["stride_w"] - pw + np.arange(kw) * dw
            valid = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
            patch = np.full((kh, kw, x.shape[3]), fill, np.float64)
            yy, xx = np.nonzero(valid)
            patch[yy, xx] = x[0, ys[yy], xs[xx]]
            yield oy, ox, patch, valid, (oh, ow)


def ref_conv(x, w, b, a, depthwise=False):
    kh, kw = w.shape[1:3]
    out = None
    for oy, ox, patch, _, (oh, ow) in _windows(x, kh, kw, a, 0.0):
        if out is None:
            out = np.zeros((1, oh, ow, w.shape[3] if depthwise else w.shape[0]))
        if depthwise:
            rep = np.repeat(patch, a["depth_multiplier"], axis=2)
            out[0, oy, ox] = (rep * w[0]).sum(axis=(0, 1)) + b
        else:
            out[0, oy, ox] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2])) + b
    return _act(out, a["activation"])


def ref_pool(x, a, kind):
    out = None
    for oy, ox, patch, valid, (oh, ow) in _windows(x, a["filter_h"], a["filter_w"], a, np.nan):
        if out is None:
            out = np.zeros((1, oh, ow, x.shape[3]))
        vals = patch[valid]
        out[0, oy, ox] = vals.mean(axis=0) if kind == "avg" else vals.max(axis=0)
    return _act(out, a["activation"])


# -- float cases ----------------------------------------------------------------------
def f_conv():
    a = dict(stride_h=2, stride_w=1, dilation_h=1, dilation_w=2, padding="SAME", activation="RELU6")
    w, b = _rand((5, 3, 2, 3), 1), _rand((5,), 2)
    g = single_op_graph(
        "CONV_2D",
        [_f("x", (1, 7, 8, 3)), _f("w", w.shape, w), _f("b", b.shape, b)],
        [_f("y", (1, 4, 8, 5))],
        a,
    )
    return g, [_rand((1, 7, 8, 3), 3) * 3], lambda i: ref_conv(i[0], w, b, a)


def f_conv_nobias():
    a = dict(stride_h=1, stride_w=2, dilation_h=1, dilation_w=1, padding="VALID", activation="NONE")
    w = _rand((2, 3, 3, 2), 1)
    g = single_op_graph(
        "CONV_2D", [_f("x", (1, 6, 7, 2)), _f("w", w.shape, w)], [_f("y", (1, 4, 3, 2))], a
    )
    g.nodes[0].inputs.append("")
    return g, [_rand((1, 6, 7, 2), 3)], lambda i: ref_conv(i[0], w, 0.0, a)


def f_depthwise():
    a = dict(
        stride_h=1,
        stride_w=2,
        dilation_h=2,
        dilation_w=1,
        padding="SAME",
        activation="RELU",
        depth_multiplier=2,
    )
    w, b = _rand((1, 3, 3, 6), 1), _rand((6,), 2)
    g = single_op_graph(
        "DEPTHWISE_CONV_2D",
        [_f("x", (1, 6, 7, 3)), _f("w", w.shape, w), _f("b", b.shape, b)],
        [_f("y", (1, 6, 4, 6))],
        a,
    )
    return g, [_rand((1, 6, 7, 3), 3)], lambda i: ref_conv(i[0], w, b, a, depthwise=True)


def f_fc(keep: bool) -> Case:
    def build():
        a = dict(activation="RELU_N1_TO_1", keep_num_dims=keep)
        w, b = _rand((4, 6), 1), _rand((4,), 2)
        out = (1, 3, 4) if keep else (3, 4)
        g = single_op_graph(
            "FULLY_CONNECTED",
            [_f("x", (1, 3, 6)), _f("w", w.shape, w), _f("b", b.shape, b)],
            [_f("y", out)],
            a,
        )

        def ref(i):
            return _act(i[0] @ w.T + b, a["activation"]).reshape(out)

        return g, [_rand((1, 3, 6), 3)], ref

    return build


def f_binary(op: str, act: str) -> Case:
    def build():
        g = single_op_graph(
            op,
            [_f("a", (1, 3, 4, 5)), _f("b", (1, 1, 4, 1))],
            [_f("y", (1, 3, 4, 5))],
            {"activation": act},
        )
        fn = np.add if op == "ADD" else np.multiply
        return (
            g,
            [_rand((1, 3, 4, 5), 1) * 4, _rand((1, 1, 4, 1), 2) * 2],
            lambda i: _act(fn(i[0], i[1]), act),
        )

    return build


def f_pool(op: str) -> Case:
    def build():
        a = dict(filter_h=3, filter_w=2, stride_h=2, stride_w=1, padding="SAME", activation="RELU")
        g = single_op_graph(op, [_f("x", (1, 7, 5, 3))], [_f("y", (1, 4, 5, 3))], a)
        kind = "avg" if op.startswith("AVERAGE") else "max"
        return g, [_rand((1, 7, 5, 3), 1)], lambda i: ref_pool(i[0], a, kind)

    return build


def f_mean():
    axes = np.array([1, 2], np.int32)
    g = single_op_graph(
        "MEAN",
        [_f("x", (1, 4, 5, 3)), _f("axes", (2,), axes)],
        [_f("y", (1, 1, 1, 3))],
        {"keep_dims": True},
    )
    return g, [_rand((1, 4, 5, 3))], lambda i: i[0].mean(axis=(1, 2), keepdims=True)


def f_reshape():
    g = single_op_graph(
        "RESHAPE",
        [_f("x", (1, 2, 3, 4)), _f("s", (2,), np.array([1, 24], np.int32))],
        [_f("y", (1, 24))],
    )
    return g, [_rand((1, 2, 3, 4))], lambda i: i[0].reshape(1, 24)


def f_softmax():
    g = single_op_graph("SOFTMAX", [_f("x", (1, 10))], [_f("y", (1, 10))], {"beta": 0.5})

    def ref(i):
        e = np.exp(0.5 * (i[0] - i[0].max()))
        return e / e.sum()

    return g, [_rand((1, 10)) * 3], ref


def f_unary(op: str, fn: Callable[[np.ndarray], np.ndarray]) -> Case:
    def build():
        g = single_op_graph(op, [_f("x", (1, 3, 4))], [_f("y", (1, 3, 4))])
        return g, [_rand((1, 3, 4)) * 5], lambda i: fn(i[0])

    return build


def f_concat():
    g = single_op_graph(
        "CONCATENATION",
        [_f("a", (1, 2, 3)), _f("b", (1, 4, 3))],
        [_f("y", (1, 6, 3))],
        {"axis": -2, "activation": "NONE"},
    )
    return g, [_rand((1, 2, 3), 1), _rand((1, 4, 3), 2)], lambda i: np.concatenate(i, axis=1)


def f_pad():
    p = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
    g = single_op_graph("PAD", [_f("x", (1, 2, 3, 2)), _f("p", (4, 2), p)], [_f("y", (1, 5, 4, 2))])
    return g, [_rand((1, 2, 3, 2))], lambda i: np.pad(i[0], p)


def f_transpose():
    perm = np.array([0, 3, 1, 2], np.int32)
    g = single_op_graph(
        "TRANSPOSE", [_f("x", (1, 2, 3, 4)), _f("p", (4,), perm)], [_f("y", (1, 4, 2, 3))]
    )
    return g, [_rand((1, 2, 3, 4))], lambda i: i[0].transpose(perm)


FLOAT_CASES: list[tuple[str, Case]] = [
    ("conv_2d", f_conv),
    ("conv_2d_nobias", f_conv_nobias),
    ("depthwise_conv_2d", f_depthwise),
    ("fully_connected", f_fc(False)),
    ("fully_connected_keep_dims", f_fc(True)),
    ("add", f_binary("ADD", "RELU6")),
    ("mul", f_binary("MUL", "RELU_N1_TO_1")),
    ("average_pool_2d", f_pool("AVERAGE_POOL_2D")),
    ("max_pool_2d", f_pool("MAX_POOL_2D")),
    ("mean", f_mean),
    ("reshape", f_reshape),
    ("softmax", f_softmax),
    ("logistic", f_unary("LOGISTIC", lambda x: 1 / (1 + np.exp(-x)))),
    ("tanh", f_unary("TANH", np.tanh)),
    ("relu", f_unary("RELU", lambda x: np.maximum(x, 0))),
    ("relu6", f_unary("RELU6", lambda x: np.clip(x, 0, 6))),
    ("concatenation", f_concat),
    ("pad", f_pad),
    ("transpose", f_transpose),
]


# -- int8 cases -----------------------------------------------------------------------
def _q(name, shape, scale=0.05, zp=0, **kw) -> Tensor:
    return qtensor(name, shape, scale, zp, **kw)


def _weights(shape, axis, n, seed=1):
    scales = list(np.linspace(0.01, 0.03, n))
    return _q("w", shape, scales, [0] * n, axis=axis, data=random_int(shape, seed=seed, low=-127))


def _bias(n, in_scale, w_scales, seed=2):
    return _q(
        "b",
        (n,),
        [in_scale * s for s in w_scales],
        [0] * n,
        dtype="int32",
        axis=0,
        data=random_int((n,), "int32", seed=seed, low=-500, high=500),
    )


def q_conv(depthwise: bool, fc: bool = False):
    def build():
        x = _q("x", (1, 6, 7, 3), 0.05, 3)
        if fc:
            x = _q("x", (2, 6), 0.05, 3)
            w = _weights((4, 6), 0, 4)
            y, op, a = _q("y", (2, 4), 0.1, -5), "FULLY_CONNECTED", {"activation": "RELU"}
        elif depthwise:
            w = _weights((1, 3, 3, 6), 3, 6)
            y, op = _q("y", (1, 6, 4, 6), 0.1, -5), "DEPTHWISE_CONV_2D"
            a = dict(
                stride_h=1,
                stride_w=2,
                dilation_h=1,
                dilation_w=1,
                padding="SAME",
                activation="RELU6",
                depth_multiplier=2,
            )
        else:
            w = _weights((5, 3, 2, 3), 0, 5)
            y, op = _q("y", (1, 2, 6, 5), 0.1, -5), "CONV_2D"
            a = dict(
                stride_h=2,
                stride_w=1,
                dilation_h=1,
                dilation_w=1,
                padding="VALID",
                activation="NONE",
            )
        b = _bias(w.quant.scale.size, 0.05, w.quant.scale)
        g = single_op_graph(op, [x, w, b], [y], a)
        return g, [random_int(x.shape, seed=3)]

    return build


def q_binary(op: str):
    def build():
        a, b = _q("a", (1, 3, 4, 5), 0.05, 2), _q("b", (1, 1, 4, 1), 0.03, -7)
        g = single_op_graph(op, [a, b], [_q("y", a.shape, 0.08, 1)], {"activation": "RELU"})
        return g, [random_int(a.shape, seed=1), random_int(b.shape, seed=2)]

    return build


def q_same(op: str, attrs: dict[str, Any], in_shape, out_shape, const: Tensor | None = None):
    def build():
        x = _q("x", in_shape, 0.05, 4)
        ins = [x] if const is None else [x, const]
        g = single_op_graph(op, ins, [_q("y", out_shape, 0.05, 4)], attrs)
        return g, [random_int(in_shape, seed=5)]

    return build


def q_fixed_out(op: str, scale: float, zp: int, attrs: dict[str, Any] | None = None):
    def build():
        g = single_op_graph(op, [_q("x", (1, 12), 0.1, 3)], [_q("y", (1, 12), scale, zp)], attrs)
        return g, [random_int((1, 12), seed=6)]

    return build


def q_concat():
    a, b = _q("a", (1, 2, 3), 0.05, 1), _q("b", (1, 4, 3), 0.05, 1)
    g = single_op_graph(
        "CONCATENATION", [a, b], [_q("y", (1, 6, 3), 0.05, 1)], {"axis": 1, "activation": "NONE"}
    )
    return g, [random_int(a.shape, seed=1), random_int(b.shape, seed=2)]


def q_mean():
    axes = Tensor("axes", (2,), "int32", np.array([1, 2], np.int32))
    g = single_op_graph(
        "MEAN",
        [_q("x", (1, 4, 5, 3), 0.05, 2), axes],
        [_q("y", (1, 1, 1, 3), 0.04, -3)],
        {"keep_dims": True},
    )
    return g, [random_int((1, 4, 5, 3), seed=1)]


def q_quantize():
    g = single_op_graph("QUANTIZE", [Tensor("x", (1, 8), "float32")], [_q("y", (1, 8), 0.05, 3)])
    return g, [_rand((1, 8), 1)]


def q_requantize():
    g = single_op_graph("QUANTIZE", [_q("x", (1, 8), 0.05, 3)], [_q("y", (1, 8), 0.11, -9)])
    return g, [random_int((1, 8), seed=1)]


def q_dequantize():
    g = single_op_graph("DEQUANTIZE", [_q("x", (1, 8), 0.05, 3)], [Tensor("y", (1, 8), "float32")])
    return g, [random_int((1, 8), seed=1)]


_pool = dict(filter_h=3, filter_w=2, stride_h=2, stride_w=1, padding="SAME", activation="NONE")
INT8_CASES: list[tuple[str, Callable[[], tuple[Graph, list[np.ndarray]]]]] = [
    ("conv_2d", q_conv(False)),
    ("depthwise_conv_2d", q_conv(True)),
    ("fully_connected", q_conv(False, fc=True)),
    ("add", q_binary("ADD")),
    ("mul", q_binary("MUL")),
    ("average_pool_2d", q_same("AVERAGE_POOL_2D", _pool, (1, 7, 5, 3), (1, 4, 5, 3))),
    ("max_pool_2d", q_same("MAX_POOL_2D", _pool, (1, 7, 5, 3), (1, 4, 5, 3))),
    ("mean", q_mean),
    (
        "reshape",
        q_same(
            "RESHAPE",
            {},
            (1, 2, 3, 4),
            (1, 24),
            Tensor("s", (2,), "int32", np.array([1, 24], np.int32)),
        ),
    ),
    ("softmax", q_fixed_out("SOFTMAX", 1 / 256, -128, {"beta": 1.0})),
    ("logistic", q_fixed_out("LOGISTIC", 1 / 256, -128)),
    ("tanh", q_fixed_out("TANH", 1 / 128, 0)),
    ("relu", q_fixed_out("RELU", 0.05, -128)),
    # TFLM's int8 RELU6 clamps without requantizing: output params must equal the input's.
    ("relu6", q_fixed_out("RELU6", 0.1, 3)),
    ("concatenation", q_concat),
    (
        "pad",
        q_same(
            "PAD",
            {},
            (1, 2, 3, 2),
            (1, 5, 4, 2),
            Tensor("p", (4, 2), "int32", np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)),
        ),
    ),
    (
        "transpose",
        q_same(
            "TRANSPOSE",
            {},
            (1, 2, 3, 4),
            (1, 4, 2, 3),
            Tensor("p", (4,), "int32", np.array([0, 3, 1, 2], np.int32)),
        ),
    ),
    ("quantize", q_quantize),
    ("requantize", q_requantize),
    ("dequantize", q_dequantize),
]
