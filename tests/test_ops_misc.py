"""Conformance of the data-movement and element-wise kernels: PAD, RESHAPE, TRANSPOSE,
CONCATENATION, QUANTIZE, DEQUANTIZE, RELU, RELU6 (bit-exact against TFLite Micro), plus
their float semantics against onnxruntime."""

from __future__ import annotations

import harness
import numpy as np
import pytest
from harness import qtensor, random_int, single_op_graph
from test_ops_conv import _ort

from microquant.errors import MicroquantError
from microquant.ir.graph import Tensor
from microquant.runtime.evaluator import Evaluator


def _i32(name: str, values) -> Tensor:
    data = np.asarray(values, dtype=np.int32)
    return Tensor(name, data.shape, "int32", data)


def pad_case(shape, pads, scale=0.1, zp=-7, seed=40):
    def build():
        out = tuple(d + a + b for d, (a, b) in zip(shape, pads, strict=True))
        g = single_op_graph(
            "PAD", [qtensor("x", shape, scale, zp), _i32("p", pads)], [qtensor("y", out, scale, zp)]
        )
        return g, [random_int(shape, seed=seed)]

    return build


def reshape_case(shape, target, seed=41):
    def build():
        g = single_op_graph(
            "RESHAPE",
            [qtensor("x", shape, 0.1, 5), _i32("s", target)],
            [qtensor("y", tuple(target), 0.1, 5)],
        )
        return g, [random_int(shape, seed=seed)]

    return build


def transpose_case(shape, perm, seed=42):
    def build():
        out = tuple(shape[p] for p in perm)
        g = single_op_graph(
            "TRANSPOSE",
            [qtensor("x", shape, 0.1, -1), _i32("perm", perm)],
            [qtensor("y", out, 0.1, -1)],
        )
        return g, [random_int(shape, seed=seed)]

    return build


def concat_case(shapes, axis, seed=43):
    def build():
        rank = len(shapes[0])
        ax = axis % rank
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        ins = [qtensor(f"x{i}", s, 0.07, 12) for i, s in enumerate(shapes)]
        g = single_op_graph(
            "CONCATENATION",
            ins,
            [qtensor("y", tuple(out), 0.07, 12)],
            dict(axis=axis, activation="NONE"),
        )
        return g, [random_int(s, seed=seed + i) for i, s in enumerate(shapes)]

    return build


def quantize_float_case():
    scale, zp = 0.25, -3
    # Exact multiples of scale/2: every ".5" tie, both signs, plus saturating values.
    x = (np.arange(-300, 301, dtype=np.float32) * np.float32(scale / 2)).reshape(1, 601)
    g = single_op_graph(
        "QUANTIZE", [Tensor("x", x.shape, "float32")], [qtensor("y", x.shape, scale, zp)]
    )
    return g, [x]


def quantize_random_float_case():
    x = np.random.default_rng(44).normal(0, 3, (1, 4, 4, 8)).astype(np.float32)
    g = single_op_graph(
        "QUANTIZE", [Tensor("x", x.shape, "float32")], [qtensor("y", x.shape, 0.0371, 17)]
    )
    return g, [x]


def requantize_case(s_in, zp_in, s_out, zp_out, seed=45):
    def build():
        shape = (1, 16, 16)
        g = single_op_graph(
            "QUANTIZE", [qtensor("x", shape, s_in, zp_in)], [qtensor("y", shape, s_out, zp_out)]
        )
        return g, [np.arange(-128, 128, dtype=np.int8).reshape(shape)]

    return build


def dequantize_case():
    shape = (1, 256)
    g = single_op_graph(
        "DEQUANTIZE", [qtensor("x", shape, 0.0473, -19)], [Tensor("y", shape, "float32")]
    )
    return g, [np.arange(-128, 128, dtype=np.int8).reshape(shape)]


def act_case(op, s_in, zp_in, s_out, zp_out):
    def build():
        shape = (1, 2, 8, 16)
        g = single_op_graph(
            op, [qtensor("x", shape, s_in, zp_in)], [qtensor("y", shape, s_out, zp_out)]
        )
        return g, [np.arange(-128, 128, dtype=np.int8).reshape(shape)]

    return build


CASES = [
    ("pad_hw", pad_case((1, 5, 6, 3), [[0, 0], [1, 2], [2, 1], [0, 0]])),
    ("pad_channels_zp", pad_case((1, 4, 4, 3), [[0, 0], [0, 0], [0, 0], [1, 2]], zp=100)),
    ("reshape_flatten", reshape_case((1, 4, 4, 3), [1, 48])),
    ("reshape_4d", reshape_case((1, 6, 10), [1, 3, 4, 5])),
    ("transpose_nhwc_nchw", transpose_case((1, 3, 4, 5), [0, 3, 1, 2])),
    ("transpose_3d", transpose_case((2, 3, 7), [2, 0, 1])),
    ("concat_channels_3", concat_case([(1, 4, 4, 3), (1, 4, 4, 5), (1, 4, 4, 1)], 3)),
    ("concat_axis1", concat_case([(1, 2, 3, 4), (1, 5, 3, 4)], 1)),
    ("concat_neg_axis", concat_case([(1, 7), (1, 2)], -1)),
    ("quantize_ties", quantize_float_case),
    ("quantize_random", quantize_random_float_case),
    ("requantize_up", requantize_case(0.05, 3, 0.02, -10)),
    ("requantize_down", requantize_case(0.013, -128, 0.041, 7)),
    ("dequantize", dequantize_case),
    ("relu_rescale_up", act_case("RELU", 0.05, -20, 0.03, -128)),
    ("relu_rescale_down", act_case("RELU", 0.02, 10, 0.05, -100)),
    ("relu_same_qparams", act_case("RELU", 0.04, -3, 0.04, -3)),
    ("relu6_in_range", act_case("RELU6", 0.05, -100, 0.05, -100)),
    ("relu6_saturating_six", act_case("RELU6", 0.03, -50, 0.03, -50)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_tflm(case):
    graph, inputs = case[1]()
    harness.check_against_tflm(graph, inputs)


def test_quantize_rounds_ties_away_from_zero():
    graph, (x,) = quantize_float_case()
    q = Evaluator(graph).run([x])[0].ravel()
    # x / scale = -2.5 -> -3, +2.5 -> +3 (then + zero point -3)
    assert q[np.flatnonzero(x.ravel() == -0.625)[0]] == -6
    assert q[np.flatnonzero(x.ravel() == 0.625)[0]] == 0


def test_concatenation_rejects_fused_activation():
    graph, inputs = concat_case([(1, 2), (1, 3)], 1)()
    graph.nodes[0].attrs["activation"] = "RELU"
    with pytest.raises(MicroquantError, match="fused activation"):
        Evaluator(graph)


# -- float semantics against onnxruntime ---------------------------------------------------


def _float_run(op, x_shape, y_shape, consts, attrs=None, extra_inputs=()):
    ins = [Tensor("x", x_shape)] + [Tensor(f"x{i}", s) for i, s in enumerate(extra_inputs)]
    ins += [
        Tensor(f"c{i}", np.shape(c), str(np.asarray(c).dtype), np.asarray(c))
        for i, c in enumerate(consts)
    ]
    return single_op_graph(op, ins, [Tensor("y", y_shape)], attrs)


def test_pad_transpose_concat_float_match_onnxruntime():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    pads = np.array([[0, 0], [1, 0], [2, 3], [0, 1]], np.int32)
    g = _float_run("PAD", x.shape, (1, 4, 9, 3), [pads])
    ref = _ort("Pad", {}, x, [pads.T.ravel().astype(np.int64)])
    np.testing.assert_array_equal(Evaluator(g).run([x])[0], ref)

    g = _float_run("TRANSPOSE", x.shape, (1, 2, 3, 4), [np.array([0, 3, 1, 2], np.int32)])
    ref = _ort("Transpose", dict(perm=[0, 3, 1, 2]), x, [])
    np.testing.assert_array_equal(Evaluator(g).run([x])[0], ref)

    other = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    g = _float_run(
        "CONCATENATION", x.shape, (1, 3, 4, 7), [], dict(axis=3), extra_inputs=[other.shape]
    )
    ref = np.concatenate([x, other], axis=3)
    np.testing.assert_array_equal(Evaluator(g).run([x, other])[0], ref)


@pytest.mark.parametrize("op,onnx_op,extra", [("RELU", "Relu", []), ("RELU6", "Clip", [0, 6])])
def test_relu_float_matches_onnxruntime(op, onnx_op, extra):
    x = np.linspace(-10, 10, 64, dtype=np.float32).reshape(1, 64)
    g = _float_run(op, x.shape, x.shape, [])
    consts = [np.array(v, np.float32) for v in extra]
    np.testing.assert_array_equal(Evaluator(g).run([x])[0], _ort(onnx_op, {}, x, consts))
