"""ADD, MUL and MEAN: bit-exact conformance with TFLite Micro, float semantics vs
onnxruntime, and prepare-time error handling."""

from __future__ import annotations

import copy
from pathlib import Path

import harness
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import qtensor, random_int, single_op_graph
from onnx import TensorProto, helper

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import get_kernel


def _binary(op: str, a_shape, b_shape, a_q, b_q, out_q, activation="NONE", seed=0):
    """Single ADD/MUL graph; ``*_q`` are ``(scale, zero_point)``."""
    out_shape = tuple(np.broadcast_shapes(a_shape, b_shape))

    def build():
        g = single_op_graph(
            op,
            [qtensor("a", a_shape, *a_q), qtensor("b", b_shape, *b_q)],
            [qtensor("y", out_shape, *out_q)],
            {"activation": activation},
        )
        return g, [random_int(a_shape, seed=seed), random_int(b_shape, seed=seed + 1)]

    return build


def _mean(shape, axes, keep_dims, in_q, out_q, seed=0):
    rank = len(shape)
    resolved = {a % rank for a in axes}
    if keep_dims:
        out_shape = tuple(1 if d in resolved else s for d, s in enumerate(shape))
    else:
        out_shape = tuple(s for d, s in enumerate(shape) if d not in resolved)

    def build():
        axes_t = Tensor("axes", (len(axes),), "int32", np.array(axes, np.int32))
        g = single_op_graph(
            "MEAN",
            [qtensor("x", shape, *in_q), axes_t],
            [qtensor("y", out_shape, *out_q)],
            {"keep_dims": keep_dims},
        )
        return g, [random_int(shape, seed=seed)]

    return build


CASES = [
    # ADD
    ("add_same_scale", _binary("ADD", (1, 8, 8, 16), (1, 8, 8, 16), (0.05, 0), (0.05, 0),
                               (0.1, 0))),
    ("add_very_different_scales", _binary("ADD", (1, 4, 4, 8), (1, 4, 4, 8), (0.002, 17),
                                          (0.8, -9), (0.9, 3), seed=2)),
    ("add_extreme_zero_points", _binary("ADD", (1, 6, 6, 4), (1, 6, 6, 4), (0.03, -128),
                                        (0.07, 127), (0.08, -20), seed=4)),
    ("add_broadcast_channel", _binary("ADD", (1, 4, 4, 8), (8,), (0.04, 5), (0.02, -3),
                                      (0.05, 1), seed=6)),
    ("add_broadcast_both", _binary("ADD", (1, 4, 1, 3), (1, 1, 5, 1), (0.1, 3), (0.07, -4),
                                   (0.1, 1), seed=8)),
    ("add_scalar", _binary("ADD", (1,), (1, 4, 4, 3), (0.1, 3), (0.07, -4), (0.1, 1),
                           seed=10)),
    ("add_relu", _binary("ADD", (1, 5, 5, 6), (1, 5, 5, 6), (0.05, 10), (0.06, -10),
                         (0.07, -30), "RELU", seed=12)),
    ("add_relu6", _binary("ADD", (1, 5, 5, 6), (1, 5, 5, 6), (0.05, 10), (0.06, -10),
                          (0.05, -60), "RELU6", seed=14)),
    ("add_relu_n1_to_1", _binary("ADD", (2, 3, 7), (3, 7), (0.02, 0), (0.03, 0),
                                 (0.02, 5), "RELU_N1_TO_1", seed=16)),
    # MUL
    ("mul_same_scale", _binary("MUL", (1, 8, 8, 16), (1, 8, 8, 16), (0.05, 0), (0.05, 0),
                               (0.05, 0))),
    ("mul_nonzero_zero_points", _binary("MUL", (1, 4, 4, 8), (1, 4, 4, 8), (0.03, -128),
                                        (0.04, 90), (0.2, 7), seed=2)),
    ("mul_multiplier_above_one", _binary("MUL", (1, 16), (1, 16), (0.5, 3), (0.5, -4),
                                         (0.001, 1), seed=4)),
    ("mul_very_different_scales", _binary("MUL", (1, 3, 3, 5), (1, 3, 3, 5), (0.001, 2),
                                          (2.0, -2), (0.5, 0), seed=6)),
    ("mul_broadcast_channel", _binary("MUL", (1, 4, 4, 8), (1, 1, 1, 8), (0.04, 5),
                                      (0.02, -3), (0.01, 1), seed=8)),
    ("mul_broadcast_both", _binary("MUL", (1, 4, 1, 3), (1, 1, 5, 1), (0.1, 3), (0.07, -4),
                                   (0.1, 1), seed=10)),
    ("mul_relu", _binary("MUL", (1, 5, 5, 6), (1, 5, 5, 6), (0.05, 10), (0.06, -10),
                         (0.02, -30), "RELU", seed=12)),
    ("mul_relu6", _binary("MUL", (1, 5, 5, 6), (6,), (0.1, 10), (0.1, -10), (0.05, -60),
                          "RELU6", seed=14)),
    # MEAN (TFLM always uses QuantizedMeanOrSum for int8, even with equal qparams)
    ("mean_hw_keep_dims", _mean((1, 7, 7, 16), [1, 2], True, (0.05, 10), (0.01, -3))),
    ("mean_hw_no_keep_dims", _mean((1, 7, 7, 16), [1, 2], False, (0.05, 10), (0.01, -3),
                                   seed=1)),
    ("mean_hw_same_qparams", _mean((1, 7, 6, 5), [1, 2], False, (0.05, -7), (0.05, -7),
                                   seed=2)),
    ("mean_hw_reversed_axes", _mean((1, 4, 4, 6), [2, 1], True, (0.1, 0), (0.1, 0),
                                    seed=3)),
    ("mean_kws_like", _mean((1, 25, 5, 64), [1, 2], False, (0.02, -128), (0.004, -100),
                            seed=4)),
    ("mean_large_count", _mean((1, 64, 64, 3), [1, 2], True, (1.0, -5), (0.001, 0),
                               seed=5)),
    ("mean_last_axis", _mean((1, 4, 4, 8), [-1], True, (0.05, 3), (0.03, -2), seed=6)),
    ("mean_axis1_no_keep_dims", _mean((1, 5, 4, 8), [1], False, (0.05, 3), (0.05, 3),
                                      seed=7)),
    ("mean_all_axes", _mean((1, 8, 8, 16), [0, 1, 2, 3], False, (0.02, 0), (0.3, 100),
                            seed=8)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_tflm(case):
    graph, inputs = case[1]()
    harness.check_against_tflm(graph, inputs)


# -- prepare-time arithmetic -------------------------------------------------------


def test_add_prepare_matches_tflite_formulas():
    """Equal scales give exactly 1/2 per input and 2s/(2**20 s_out) for the output."""
    graph, _ = _binary("ADD", (1, 4), (1, 4), (0.5, 0), (0.5, 0), (1.0, 0))()
    p = get_kernel("ADD").prepare(graph.nodes[0], graph)
    assert (p.input1_multiplier, p.input1_shift) == (1 << 30, 0)
    assert (p.input2_multiplier, p.input2_shift) == (1 << 30, 0)
    assert (p.output_multiplier, p.output_shift) == (1 << 30, -19)
    assert p.left_shift == 20


def test_mean_count_folded_into_multiplier():
    graph, _ = _mean((1, 4, 4, 2), [1, 2], True, (0.5, 0), (0.5, 0))()
    p = get_kernel("MEAN").prepare(graph.nodes[0], graph)
    assert p.count == 16
    assert (p.multiplier, p.shift) == (1 << 30, 1 - 4)


# -- user errors -------------------------------------------------------------------


def test_add_rejects_non_broadcastable_shapes():
    graph, _ = _binary("ADD", (1, 4), (1, 4), (0.1, 0), (0.1, 0), (0.1, 0))()
    graph.tensor("b").shape = (1, 3)
    with pytest.raises(MicroquantError, match="do not broadcast"):
        Evaluator(graph, mode="int")


def test_mul_rejects_per_channel_input():
    graph, _ = _binary("MUL", (1, 2), (1, 2), (0.1, 0), (0.1, 0), (0.1, 0))()
    graph.tensor("a").quant = qtensor("q", (1, 2), [0.1, 0.2], [0, 0], axis=1).quant
    with pytest.raises(MicroquantError, match="per-tensor"):
        Evaluator(graph, mode="int")


def test_add_rejects_tiny_output_scale():
    graph, _ = _binary("ADD", (1, 2), (1, 2), (1.0, 0), (1.0, 0), (1e-7, 0))()
    with pytest.raises(MicroquantError, match="output scale"):
        Evaluator(graph, mode="int")


def test_mean_requires_constant_axes():
    graph, _ = _mean((1, 4, 4, 2), [1, 2], True, (0.1, 0), (0.1, 0))()
    graph.tensor("axes").data = None
    with pytest.raises(MicroquantError, match="constant"):
        get_kernel("MEAN").prepare(graph.nodes[0], graph)


def test_mean_rejects_out_of_range_axis():
    graph, _ = _mean((1, 4, 4, 2), [1, 2], True, (0.1, 0), (0.1, 0))()
    graph.tensor("axes").data = np.array([1, 4], np.int32)
    with pytest.raises(MicroquantError, match="out of range"):
        get_kernel("MEAN").prepare(graph.nodes[0], graph)


# -- float semantics vs onnxruntime --------------------------------------------------


def _ort(op_type: str, feeds: dict[str, np.ndarray], consts: dict[str, np.ndarray] | None = None,
         **attrs) -> np.ndarray:
    """Run one ONNX node in onnxruntime (opset 18)."""
    consts = consts or {}
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape)
              for k, v in feeds.items()]
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in consts.items()]
    node = helper.make_node(op_type, list(feeds) + list(consts), ["out"], **attrs)
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([node], "g", inputs, [out], inits),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _float_graph(op: str, shapes: list[tuple[int, ...]], out_shape, attrs) -> tuple[Graph, Node]:
    g = Graph()
    names = [f"in{i}" for i in range(len(shapes))]
    for n, s in zip(names, shapes, strict=True):
        g.add_tensor(Tensor(n, s))
    g.add_tensor(Tensor("out", out_shape))
    node = Node(op, names, ["out"], attrs)
    g.nodes.append(node)
    return g, node


@pytest.mark.parametrize("op,onnx_op", [("ADD", "Add"), ("MUL", "Mul")])
@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 4, 5), (2, 3, 4, 5)),
                                             ((2, 3, 4, 5), (5,)),
                                             ((1, 4, 1, 3), (1, 1, 5, 1))])
def test_binary_float_matches_onnxruntime(op, onnx_op, a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=a_shape).astype(np.float32) * 4
    b = rng.normal(size=b_shape).astype(np.float32) * 4
    out_shape = np.broadcast_shapes(a_shape, b_shape)
    expected = _ort(onnx_op, {"a": a, "b": b})
    for act, lo, hi in (("NONE", -np.inf, np.inf), ("RELU", 0, np.inf), ("RELU6", 0, 6)):
        g, node = _float_graph(op, [a_shape, b_shape], out_shape, {"activation": act})
        [y] = get_kernel(op).run_float(node, g, [a, b])
        assert y.dtype == np.float32 and y.shape == out_shape
        np.testing.assert_allclose(y, np.clip(expected, lo, hi), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("axes,keep", [([1, 2], True), ([1, 2], False), ([-1], True),
                                       ([0, 3], False)])
def test_mean_float_matches_onnxruntime(axes, keep):
    x = np.random.default_rng(1).normal(size=(1, 5, 6, 7)).astype(np.float32)
    axes_arr = np.array(axes, np.int64)
    expected = _ort("ReduceMean", {"x": x}, {"axes": axes_arr}, keepdims=int(keep))
    g, node = _float_graph("MEAN", [x.shape, (len(axes),)], expected.shape, {"keep_dims": keep})
    [y] = get_kernel("MEAN").run_float(node, g, [x, axes_arr.astype(np.int32)])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


# -- the same ops with the real quantization of the MLPerf Tiny reference models ---------

_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
_MY_OPS = {"ADD", "MUL", "MEAN", "SOFTMAX", "LOGISTIC", "TANH"}


@pytest.mark.skipif(not _MODELS.is_dir(), reason="shared MLPerf Tiny models not available")
@pytest.mark.parametrize("model", ["ic_resnet8", "kws_dscnn", "vww_mobilenetv1"])
def test_reference_model_nodes_match_tflm(model):
    """Each ADD/MUL/MEAN/SOFTMAX/LOGISTIC/TANH node of the converter-made int8 model, cut
    out as a single-op graph with its real scales, matches TFLM on random inputs."""
    from microquant.ir.tflite_io import read_tflite

    graph = read_tflite((_MODELS / f"{model}.reference_int8.tflite").read_bytes())
    nodes = [n for n in graph.nodes if n.op in _MY_OPS]
    assert nodes, f"{model} has none of {_MY_OPS}"
    for i, node in enumerate(nodes):
        ins = [copy.deepcopy(graph.tensor(n)) for n in node.inputs]
        outs = [copy.deepcopy(graph.tensor(n)) for n in node.outputs]
        g = single_op_graph(node.op, ins, outs, node.attrs)
        feeds = [random_int(t.shape, seed=10 * i + k) for k, t in enumerate(ins) if not t.is_const]
        harness.check_against_tflm(g, feeds)
