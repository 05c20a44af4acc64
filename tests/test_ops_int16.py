"""Conformance of the 16x8 kernels (int16 activations, zero point 0; int8 weights; int64
bias) against TFLite Micro, bit for bit.

Every case in ``CASES`` also runs integer-only traced in ``test_integer_only.py``.
LOGISTIC and TANH are checked on all 65536 int16 inputs (their table interpolation and
input rescale have many branches); SOFTMAX on rows of realistic and saturated values.
"""

from __future__ import annotations

import harness
import numpy as np
import pytest
from harness import qtensor, random_int, single_op_graph

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import get_kernel
from microquant.runtime.ops._common import out_size

I16 = "int16"


def _scales(n: int, lo: float, hi: float, seed: int) -> list[float]:
    return list(np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n)))


def _fit_output(graph: Graph, inputs: list[np.ndarray], fill: float = 0.8) -> None:
    """Set the (int16, symmetric) output scale so the real outputs span ``fill`` of the range."""
    node = graph.nodes[0]
    reals = harness.real_inputs(graph, inputs)  # int16/int8 zero points are 0 here
    y = get_kernel(node.op).run_float(node, graph, reals)[0]
    graph.tensor(node.outputs[0]).quant.scale[:] = float(np.abs(y).max()) / (32767 * fill) + 1e-9


def _weights_and_bias(shape, axis, s_in, seed, bias="int64", per_channel=True):
    n = shape[axis]
    w_scales = _scales(n, 1e-3, 5e-2, seed) if per_channel else [0.01]
    w = qtensor(
        "w",
        shape,
        w_scales,
        [0] * len(w_scales),
        axis=axis if per_channel else None,
        data=random_int(shape, seed=seed + 1, low=-127),
    )
    if bias is None:
        return [w]
    b_scales = [s_in * s for s in w_scales]
    lim = 2**40 if bias == "int64" else 2**20
    data = np.random.default_rng(seed + 2).integers(-lim, lim, size=(n,)).astype(bias)
    b = qtensor(
        "b", (n,), b_scales, [0] * len(b_scales), bias, axis=0 if per_channel else None, data=data
    )
    return [w, b]


def conv16_case(
    x_shape,
    co,
    k,
    stride=(1, 1),
    dilation=(1, 1),
    padding="SAME",
    activation="NONE",
    bias="int64",
    seed=0,
):
    def build():
        _, h, w, ci = x_shape
        ho = out_size(padding, h, k[0], stride[0], dilation[0])
        wo = out_size(padding, w, k[1], stride[1], dilation[1])
        s_in = 2e-4
        wb = _weights_and_bias((co, *k, ci), 0, s_in, seed, bias)
        ins = [qtensor("x", x_shape, s_in, 0, I16), *wb]
        attrs = dict(
            stride_h=stride[0],
            stride_w=stride[1],
            dilation_h=dilation[0],
            dilation_w=dilation[1],
            padding=padding,
            activation=activation,
        )
        g = single_op_graph("CONV_2D", ins, [qtensor("y", (1, ho, wo, co), 1.0, 0, I16)], attrs)
        if bias is None:
            g.nodes[0].inputs.append("")
        x = random_int(x_shape, I16, seed=seed + 3)
        _fit_output(g, [x])
        return g, [x]

    return build


def dw16_case(
    x_shape, dm, k, stride=(1, 1), padding="SAME", activation="NONE", bias="int64", seed=0
):
    def build():
        _, h, w, ci = x_shape
        co = ci * dm
        ho, wo = out_size(padding, h, k[0], stride[0]), out_size(padding, w, k[1], stride[1])
        s_in = 3e-4
        wb = _weights_and_bias((1, *k, co), 3, s_in, seed, bias)
        ins = [qtensor("x", x_shape, s_in, 0, I16), *wb]
        attrs = dict(
            stride_h=stride[0],
            stride_w=stride[1],
            dilation_h=1,
            dilation_w=1,
            padding=padding,
            activation=activation,
            depth_multiplier=dm,
        )
        g = single_op_graph(
            "DEPTHWISE_CONV_2D", ins, [qtensor("y", (1, ho, wo, co), 1.0, 0, I16)], attrs
        )
        if bias is None:
            g.nodes[0].inputs.append("")
        x = random_int(x_shape, I16, seed=seed + 3)
        _fit_output(g, [x])
        return g, [x]

    return build


def fc16_case(batches, k, n, activation="NONE", per_channel=True, seed=0):
    def build():
        s_in = 1e-4
        wb = _weights_and_bias((n, k), 0, s_in, seed, "int64", per_channel)
        ins = [qtensor("x", (batches, k), s_in, 0, I16), *wb]
        g = single_op_graph(
            "FULLY_CONNECTED",
            ins,
            [qtensor("y", (batches, n), 1.0, 0, I16)],
            {"activation": activation, "keep_num_dims": False},
        )
        x = random_int((batches, k), I16, seed=seed + 3)
        _fit_output(g, [x])
        return g, [x]

    return build


def binary16_case(op, shape_a, shape_b, scales=(2e-3, 7e-4), activation="NONE", seed=0):
    def build():
        out_shape = np.broadcast_shapes(shape_a, shape_b)
        ins = [qtensor("a", shape_a, scales[0], 0, I16), qtensor("b", shape_b, scales[1], 0, I16)]
        g = single_op_graph(
            op, ins, [qtensor("y", out_shape, 1.0, 0, I16)], {"activation": activation}
        )
        xs = [random_int(shape_a, I16, seed=seed), random_int(shape_b, I16, seed=seed + 1)]
        _fit_output(g, xs, 0.9)
        return g, xs

    return build


def pool16_case(op, x_shape, f, s, padding, activation="NONE", seed=0):
    def build():
        _, h, w, c = x_shape
        out = (1, out_size(padding, h, f, s), out_size(padding, w, f, s), c)
        attrs = dict(
            filter_h=f, filter_w=f, stride_h=s, stride_w=s, padding=padding, activation=activation
        )
        g = single_op_graph(
            op, [qtensor("x", x_shape, 1e-3, 0, I16)], [qtensor("y", out, 1e-3, 0, I16)], attrs
        )
        return g, [random_int(x_shape, I16, seed=seed)]

    return build


def mean16_case(x_shape, axes, keep_dims, out_scale=1.3e-3, seed=0):
    def build():
        kept = [1 if a in axes else d for a, d in enumerate(x_shape)]
        out = tuple(kept) if keep_dims else tuple(d for a, d in enumerate(x_shape) if a not in axes)
        ax = Tensor("axes", (len(axes),), "int32", np.array(axes, np.int32))
        g = single_op_graph(
            "MEAN",
            [qtensor("x", x_shape, 2e-3, 0, I16), ax],
            [qtensor("y", out, out_scale, 0, I16)],
            {"keep_dims": keep_dims},
        )
        return g, [random_int(x_shape, I16, seed=seed)]

    return build


def unary16_case(
    op, shape, in_scale, out_scale, attrs=None, low=None, high=None, seed=0, exhaustive=False
):
    def build():
        g = single_op_graph(
            op,
            [qtensor("x", shape, in_scale, 0, I16)],
            [qtensor("y", shape, out_scale, 0, I16)],
            attrs,
        )
        if exhaustive:
            x = np.arange(-32768, 32768, dtype=np.int16).reshape(shape)
        else:
            x = random_int(shape, I16, seed=seed, low=low, high=high)
        return g, [x]

    return build


def shape16_case(op, seed=0):
    """RESHAPE / TRANSPOSE / PAD / CONCATENATION on int16: values are moved, never changed."""

    def build():
        x = random_int((1, 3, 4, 5), I16, seed=seed)
        xin = qtensor("x", (1, 3, 4, 5), 1e-3, 0, I16)
        if op == "RESHAPE":
            shp = Tensor("shape", (2,), "int32", np.array([1, 60], np.int32))
            return single_op_graph(op, [xin, shp], [qtensor("y", (1, 60), 1e-3, 0, I16)]), [x]
        if op == "TRANSPOSE":
            perm = Tensor("perm", (4,), "int32", np.array([0, 2, 1, 3], np.int32))
            out = qtensor("y", (1, 4, 3, 5), 1e-3, 0, I16)
            return single_op_graph(op, [xin, perm], [out]), [x]
        if op == "PAD":
            pads = Tensor(
                "pads", (4, 2), "int32", np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
            )
            return single_op_graph(op, [xin, pads], [qtensor("y", (1, 6, 5, 5), 1e-3, 0, I16)]), [x]
        other = qtensor("x2", (1, 3, 4, 2), 1e-3, 0, I16)
        g = single_op_graph(
            op,
            [xin, other],
            [qtensor("y", (1, 3, 4, 7), 1e-3, 0, I16)],
            {"axis": 3, "activation": "NONE"},
        )
        return g, [x, random_int((1, 3, 4, 2), I16, seed=seed + 1)]

    return build


def requant16_case(in_dtype, out_dtype, in_scale, out_scale, in_zp=0, out_zp=0, seed=0):
    def build():
        if in_dtype == "float32":
            xin = Tensor("x", (2, 40), "float32")
            x = (np.random.default_rng(seed).normal(size=(2, 40)) * 2).astype(np.float32)
        else:
            xin = qtensor("x", (2, 40), in_scale, in_zp, in_dtype)
            x = random_int((2, 40), in_dtype, seed=seed)
        out = (
            Tensor("y", (2, 40), "float32")
            if out_dtype == "float32"
            else qtensor("y", (2, 40), out_scale, out_zp, out_dtype)
        )
        op = "DEQUANTIZE" if out_dtype == "float32" else "QUANTIZE"
        return single_op_graph(op, [xin], [out]), [x]

    return build


CASES = [
    ("i16_conv_same", conv16_case((1, 7, 6, 5), 4, (3, 3))),
    (
        "i16_conv_stride2_relu6_dil",
        conv16_case((1, 9, 9, 3), 6, (3, 3), (2, 2), (2, 1), "VALID", "RELU6", seed=1),
    ),
    ("i16_conv_relu_1x1", conv16_case((1, 4, 4, 16), 8, (1, 1), activation="RELU", seed=2)),
    ("i16_conv_no_bias", conv16_case((1, 5, 5, 4), 3, (3, 3), bias=None, seed=3)),
    ("i16_conv_int32_bias", conv16_case((1, 5, 5, 4), 3, (2, 2), bias="int32", seed=4)),
    ("i16_dw_dm1", dw16_case((1, 7, 7, 6), 1, (3, 3))),
    ("i16_dw_dm2_stride2_relu", dw16_case((1, 8, 8, 3), 2, (3, 3), (2, 2), "SAME", "RELU", seed=1)),
    ("i16_dw_no_bias", dw16_case((1, 5, 5, 4), 1, (3, 3), padding="VALID", bias=None, seed=2)),
    ("i16_fc_per_channel", fc16_case(1, 64, 10)),
    ("i16_fc_per_tensor_relu", fc16_case(3, 20, 7, "RELU", per_channel=False, seed=1)),
    ("i16_add", binary16_case("ADD", (1, 4, 4, 3), (1, 4, 4, 3))),
    (
        "i16_add_broadcast_relu",
        binary16_case("ADD", (1, 4, 4, 3), (1, 1, 1, 3), (5e-4, 3e-3), "RELU", seed=2),
    ),
    ("i16_mul", binary16_case("MUL", (1, 4, 4, 3), (1, 4, 4, 3), seed=4)),
    ("i16_mul_broadcast", binary16_case("MUL", (1, 2, 3, 5), (1, 1, 3, 1), seed=6)),
    ("i16_avgpool", pool16_case("AVERAGE_POOL_2D", (1, 9, 9, 4), 3, 2, "SAME")),
    (
        "i16_avgpool_valid_relu6",
        pool16_case("AVERAGE_POOL_2D", (1, 6, 6, 2), 2, 2, "VALID", "RELU6", seed=1),
    ),
    ("i16_maxpool", pool16_case("MAX_POOL_2D", (1, 9, 9, 4), 3, 2, "SAME", seed=2)),
    ("i16_mean_hw_keep", mean16_case((1, 5, 6, 4), (1, 2), True)),
    ("i16_mean_hw", mean16_case((1, 5, 6, 4), (1, 2), False, 2e-3, seed=1)),
    (
        "i16_softmax_small",
        unary16_case("SOFTMAX", (4, 10), 1e-3, 1 / 32768, {"beta": 1.0}, -3000, 3000),
    ),
    ("i16_softmax_wide", unary16_case("SOFTMAX", (2, 100), 3e-4, 1 / 32768, {"beta": 1.0}, seed=1)),
    (
        "i16_softmax_beta",
        unary16_case("SOFTMAX", (3, 33), 2e-4, 1 / 32768, {"beta": 0.5}, -20000, 20000, seed=2),
    ),
    ("i16_logistic_all", unary16_case("LOGISTIC", (1, 65536), 3e-4, 1 / 32768, exhaustive=True)),
    ("i16_logistic_pot", unary16_case("LOGISTIC", (1, 65536), 2**-12, 1 / 32768, exhaustive=True)),
    ("i16_tanh_all", unary16_case("TANH", (1, 65536), 1e-3, 1 / 32768, exhaustive=True)),
    ("i16_tanh_pot", unary16_case("TANH", (1, 65536), 2**-11, 1 / 32768, exhaustive=True)),
    ("i16_relu", unary16_case("RELU", (2, 50), 1e-3, 7e-4)),
    ("i16_relu6", unary16_case("RELU6", (2, 50), 4e-4, 4e-4, seed=1)),
    ("i16_reshape", shape16_case("RESHAPE")),
    ("i16_transpose", shape16_case("TRANSPOSE")),
    ("i16_pad", shape16_case("PAD")),
    ("i16_concat", shape16_case("CONCATENATION")),
    ("i16_quantize_f32", requant16_case("float32", I16, 0, 1e-4)),
    ("i16_requantize_to_int8", requant16_case(I16, "int8", 1e-4, 0.02, out_zp=3)),
    ("i16_requantize_from_int8", requant16_case("int8", I16, 0.02, 1e-4, in_zp=-5)),
    ("i16_requantize_int16", requant16_case(I16, I16, 1e-4, 3e-4)),
    ("i16_dequantize", requant16_case(I16, "float32", 1e-4, 0)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_int16_matches_tflm(case):
    graph, inputs = case[1]()
    if graph.nodes[0].op == "DEQUANTIZE":
        ours = harness.run_reference(graph, inputs, check_integer=False)
        theirs = harness.run_tflm(graph, inputs)
        assert np.array_equal(ours[0], np.asarray(theirs[0]).reshape(ours[0].shape))
        return
    harness.check_against_tflm(graph, inputs)


def test_int16_outputs_are_not_trivial():
    """The fitted output scales make the conformance cases exercise the int16 range."""
    for name, build in CASES:
        graph, inputs = build()
        if graph.nodes[0].op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL"):
            y = Evaluator(graph, mode="int").run(inputs)[0]
            assert np.abs(y.astype(np.int64)).max() > 1000, name


def test_int16_nonzero_zero_point_is_rejected():
    graph, inputs = conv16_case((1, 4, 4, 2), 2, (1, 1))()
    graph.tensor("x").quant.zero_point[:] = 3
    with pytest.raises(MicroquantError, match="zero point 0"):
        Evaluator(graph, mode="int")


def test_int16_softmax_needs_fixed_output_scale():
    graph, _ = unary16_case("SOFTMAX", (1, 10), 1e-3, 1 / 256)()
    with pytest.raises(MicroquantError, match="scale"):
        Evaluator(graph, mode="int")
