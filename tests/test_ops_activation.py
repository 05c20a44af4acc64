"""SOFTMAX, LOGISTIC and TANH: bit-exact conformance with TFLite Micro (full int8 input
sweeps), float semantics vs onnxruntime, and the fixed output quantization."""

from __future__ import annotations

import harness
import numpy as np
import onnxruntime as ort
import pytest
from harness import qtensor, random_int, single_op_graph
from onnx import TensorProto, helper

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import get_kernel

# Every int8 value once; as one row or split over rows.
SWEEP = np.arange(-128, 128, dtype=np.int8)
OUT_Q = {"SOFTMAX": (1 / 256, -128), "LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}


def _unary(op: str, shape, scale: float, zero_point: int, data=None, beta: float = 1.0):
    def build():
        attrs = {"beta": beta} if op == "SOFTMAX" else {}
        g = single_op_graph(op, [qtensor("x", shape, scale, zero_point)],
                            [qtensor("y", shape, *OUT_Q[op])], attrs)
        x = random_int(shape, seed=7) if data is None else np.asarray(data, np.int8).reshape(shape)
        return g, [x]

    return build


def _sweeps(op: str, params: list[tuple[float, int]]):
    return [(f"{op.lower()}_sweep_s{s:g}_zp{zp}", _unary(op, (256,), s, zp, SWEEP))
            for s, zp in params]


_ACT_PARAMS = [(0.001, 0), (0.01, 0), (0.03, -60), (0.0625, 0), (0.1, 0), (0.5, 20), (2.0, -7)]

CASES = [
    *_sweeps("LOGISTIC", _ACT_PARAMS),
    *_sweeps("TANH", _ACT_PARAMS),
    # One 256-wide row: differences span the whole int8 range.
    ("softmax_row256_s0.01", _unary("SOFTMAX", (1, 256), 0.01, 0, SWEEP)),
    ("softmax_row256_s0.05", _unary("SOFTMAX", (1, 256), 0.05, -20, SWEEP)),
    # Two rows of 128: each row has its own max.
    ("softmax_2rows_s0.1", _unary("SOFTMAX", (2, 128), 0.1, 5, SWEEP)),
    ("softmax_4rows_s0.5", _unary("SOFTMAX", (4, 64), 0.5, 0, SWEEP)),
    ("softmax_16rows_s0.0625", _unary("SOFTMAX", (16, 16), 0.0625, 0, SWEEP)),
    # beta * scale * 2**26 saturates at 2**31 - 1.
    ("softmax_capped_multiplier", _unary("SOFTMAX", (4, 64), 40.0, 0, SWEEP)),
    ("softmax_beta_0.5", _unary("SOFTMAX", (2, 128), 0.1, 0, SWEEP, beta=0.5)),
    ("softmax_4d_classifier", _unary("SOFTMAX", (1, 1, 1, 12), 0.15, -10)),
    ("softmax_3d", _unary("SOFTMAX", (2, 3, 10), 0.08, 3)),
    ("softmax_depth1", _unary("SOFTMAX", (5, 1), 0.1, 0)),
    ("softmax_wide_row", _unary("SOFTMAX", (1, 500), 0.001, 0)),
    ("softmax_constant_row", _unary("SOFTMAX", (2, 50), 0.05, 0, np.full(100, 127))),
    # 511 equal values: exp-sum 511.0, the largest TFLM accepts (512 aborts, see below).
    ("softmax_largest_accepted_sum", _unary("SOFTMAX", (1, 511), 0.001, 0, np.full(511, 5))),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_tflm(case):
    graph, inputs = case[1]()
    harness.check_against_tflm(graph, inputs)


# -- sanity of the integer results -----------------------------------------------------


@pytest.mark.parametrize("op,fn", [("LOGISTIC", lambda x: 1 / (1 + np.exp(-x))),
                                   ("TANH", np.tanh)])
def test_sweep_close_to_real_function(op, fn):
    """Integer output within one output step of the exact function, and monotone."""
    graph, [x] = _unary(op, (256,), 0.05, 3, SWEEP)()
    [y] = harness.run_reference(graph, [x])
    out_scale, out_zp = OUT_Q[op]
    real = fn(0.05 * (x.astype(np.float64) - 3))
    assert np.all(np.abs(out_scale * (y.astype(np.float64) - out_zp) - real) <= out_scale)
    assert np.all(np.diff(y.astype(np.int64)) >= 0)


def test_softmax_close_to_real_function():
    graph, [x] = _unary("SOFTMAX", (4, 64), 0.1, 0, SWEEP)()
    [y] = harness.run_reference(graph, [x])
    z = 0.1 * x.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    real = e / e.sum(axis=-1, keepdims=True)
    assert np.all(np.abs((y.astype(np.float64) + 128) / 256 - real) <= 1 / 256)


def test_softmax_row_tflm_would_abort_on_raises():
    """exp-sum >= 512 makes TFLM's TFLITE_CHECK(exponent <= 31) abort; we raise instead
    (TFLM is deliberately not run: it would kill the test process)."""
    graph, inputs = _unary("SOFTMAX", (1, 512), 0.001, 0, np.full(512, 5))()
    with pytest.raises(MicroquantError, match="aborts"):
        harness.run_reference(graph, inputs)


# -- fixed output quantization -------------------------------------------------------


@pytest.mark.parametrize("op", ["SOFTMAX", "LOGISTIC", "TANH"])
def test_wrong_output_quantization_is_rejected(op):
    graph, _ = _unary(op, (1, 8), 0.1, 0)()
    graph.tensor("y").quant = qtensor("q", (1, 8), 0.01, 0).quant
    with pytest.raises(MicroquantError, match="output must have scale"):
        Evaluator(graph, mode="int")


def test_softmax_prepare_matches_tflite_formulas():
    """scale 2**-5, beta 1: real multiplier 2**21 -> (2**30, 22); radius 31 * 2**26 / 2**22."""
    graph, _ = _unary("SOFTMAX", (1, 8), 2.0**-5, 0)()
    p = get_kernel("SOFTMAX").prepare(graph.nodes[0], graph)
    assert (p.input_multiplier, p.input_left_shift) == (1 << 30, 22)
    assert p.diff_min == -31 * 16


def test_logistic_prepare_matches_tflite_formulas():
    """scale 2**-4: s * 2**27 = 2**23 -> frexp (0.5, 24); radius floor(15 * 2**27 / 2**24)."""
    graph, _ = _unary("LOGISTIC", (1, 8), 2.0**-4, 0)()
    p = get_kernel("LOGISTIC").prepare(graph.nodes[0], graph)
    assert (p.input_multiplier, p.input_left_shift, p.input_range_radius) == (1 << 30, 24, 120)


# -- float semantics vs onnxruntime ----------------------------------------------------


def _ort(op_type: str, x: np.ndarray, **attrs) -> np.ndarray:
    node = helper.make_node(op_type, ["x"], ["out"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _run_float(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    g = Graph()
    g.add_tensor(Tensor("x", x.shape))
    g.add_tensor(Tensor("y", x.shape))
    node = Node(op, ["x"], ["y"], attrs)
    g.nodes.append(node)
    [y] = get_kernel(op).run_float(node, g, [x])
    assert y.dtype == np.float32 and y.shape == x.shape
    return y


@pytest.mark.parametrize("op,onnx_op", [("LOGISTIC", "Sigmoid"), ("TANH", "Tanh")])
def test_unary_float_matches_onnxruntime(op, onnx_op):
    x = np.linspace(-20, 20, 801, dtype=np.float32).reshape(3, 267)
    np.testing.assert_allclose(_run_float(op, x, {}), _ort(onnx_op, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 10), (2, 3, 7), (1, 1, 1, 12)])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_softmax_float_matches_onnxruntime(shape, beta):
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32) * 5
    expected = _ort("Softmax", (x * np.float32(beta)).astype(np.float32), axis=-1)
    np.testing.assert_allclose(_run_float("SOFTMAX", x, {"beta": beta}), expected,
                               rtol=1e-5, atol=1e-7)
