"""ONNX-level normalization passes, each checked against ONNX Runtime on the original model."""

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from microquant.errors import MicroquantError
from microquant.ir.onnx_io import graph_from_model, to_onnx
from microquant.passes import normalize, run_passes

RNG = np.random.default_rng(7)


def _model(text: str, **inits: np.ndarray) -> onnx.ModelProto:
    m = onnx.parser.parse_model(text)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items())
    return m


def _normalized_matches(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """Normalize and check the result computes what the original computes."""
    g = normalize(graph_from_model(model))
    ref = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = ort.InferenceSession(to_onnx(g).SerializeToString()).run(None, feeds)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return g


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_fold_batchnorm_into_conv():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 6, 6] x) => (float[1, 4, 6, 6] y) {
      c = Conv<pads = [1, 1, 1, 1], kernel_shape = [3, 3]>(x, w, b)
      n = BatchNormalization<epsilon = 0.001>(c, s, beta, mean, var)
      y = Relu(n)
    }""",
        w=_randn(4, 3, 3, 3),
        b=_randn(4),
        s=_randn(4),
        beta=_randn(4),
        mean=_randn(4),
        var=np.abs(_randn(4)) + 0.1,
    )
    g = _normalized_matches(m, {"x": _randn(1, 3, 6, 6)})
    assert g.ops() == ["Conv", "Relu"]
    assert g.nodes[0].outputs == ["n"]  # BN's output name survives


def test_conv_without_bias_gets_bn_bias():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 5, 5] x) => (float[1, 2, 5, 5] y) {
      c = Conv<kernel_shape = [1, 1]>(x, w)
      y = BatchNormalization(c, s, beta, mean, var)
    }""",
        w=_randn(2, 2, 1, 1),
        s=_randn(2),
        beta=_randn(2),
        mean=_randn(2),
        var=np.abs(_randn(2)) + 0.1,
    )
    g = _normalized_matches(m, {"x": _randn(1, 2, 5, 5)})
    assert g.ops() == ["Conv"] and len(g.nodes[0].inputs) == 3
    assert g.outputs == ["y"]


def test_batchnorm_after_matmul_folds_into_gemm():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 8] x) => (float[1, 5] y) {
      h = MatMul(x, w)
      y = BatchNormalization(h, s, beta, mean, var)
    }""",
        w=_randn(8, 5),
        s=_randn(5),
        beta=_randn(5),
        mean=_randn(5),
        var=np.abs(_randn(5)) + 0.1,
    )
    g = _normalized_matches(m, {"x": _randn(1, 8)})
    assert g.ops() == ["Gemm"]


def test_standalone_batchnorm_becomes_mul_add():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 4, 4] x) => (float[1, 3, 4, 4] y) {
      y = BatchNormalization(x, s, beta, mean, var)
    }""",
        s=_randn(3),
        beta=_randn(3),
        mean=_randn(3),
        var=np.abs(_randn(3)) + 0.1,
    )
    g = _normalized_matches(m, {"x": _randn(1, 3, 4, 4)})
    assert g.ops() == ["Mul", "Add"]


def test_matmul_add_becomes_canonical_gemm():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 6] x) => (float[1, 3] y) {
      h = MatMul(x, w)
      a = Add(c, h)
      y = Relu(a)
    }""",
        w=_randn(6, 3),
        c=_randn(3),
    )
    g = _normalized_matches(m, {"x": _randn(1, 6)})
    assert g.ops() == ["Gemm", "Relu"]
    gemm = g.nodes[0]
    assert gemm.attrs == {"transB": 1} and gemm.outputs == ["a"]
    assert g.tensor(gemm.inputs[1]).shape == (3, 6) and g.tensor(gemm.inputs[2]).shape == (3,)


def test_gemm_alpha_beta_transb_canonicalized():
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 4] x) => (float[2, 3] y) {
      y = Gemm<alpha = 0.5, beta = 2.0>(x, w, c)
    }""",
        w=_randn(4, 3),
        c=_randn(1, 3),
    )
    g = _normalized_matches(m, {"x": _randn(2, 4)})
    assert g.nodes[0].attrs == {"transB": 1}
    assert g.tensor(g.nodes[0].inputs[2]).shape == (3,)


def test_fold_constants_shape_arithmetic_and_constant_transpose():
    # PyTorch-style flatten: the target shape is computed from Shape(x).
    m = _model(
        """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 2, 3, 3] x) => (float[N, 18] y) {
      s = Shape(x)
      zero = Constant<value = int64[1] {0}>()
      n = Gather<axis = 0>(s, zero)
      minus = Constant<value = int64[1] {-1}>()
      t = Concat<axis = 0>(n, minus)
      r = Reshape(x, t)
      wt = Transpose<perm = [1, 0]>(w)
      y = Add(r, wt)
    }""",
        w=_randn(18, 1),
    )
    g = _normalized_matches(m, {"x": _randn(1, 2, 3, 3)})
    assert g.ops() == ["Reshape", "Add"]
    assert g.tensor(g.nodes[0].inputs[1]).data.tolist() == [1, -1]


def test_identity_and_dropout_removed_even_as_output():
    m = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y, float[1, 4] z) {
      a = Relu(x)
      b = Identity(a)
      c = Dropout(b)
      y = Sigmoid(c)
      z = Identity(c)
    }""")
    g = _normalized_matches(m, {"x": _randn(1, 4)})
    assert g.ops() == ["Relu", "Sigmoid"]
    assert g.outputs == ["y", "z"]


def test_normalize_does_not_mutate_its_input():
    m = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) { a = Identity(x)  y = Relu(a) }""")
    g = graph_from_model(m)
    normalize(g)
    assert g.ops() == ["Identity", "Relu"]


def test_pass_manager_repeats_until_fixed_point_and_detects_divergence():
    calls = []

    def twice(graph):
        calls.append(1)
        return graph, len(calls) < 3

    g = graph_from_model(
        _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }""")
    )
    run_passes(g, [twice])
    assert len(calls) == 3
    with pytest.raises(MicroquantError, match="converge"):
        run_passes(g, [lambda graph: (graph, True)], max_rounds=4)
