"""Lowering to the TFLite-level NHWC graph.

Oracle: ONNX Runtime on the original model vs our float reference evaluator on the
lowered graph - for the outputs and for every intermediate named in ``calib_source``
(which must hold the same values up to an axis permutation / reshape).
"""

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from microquant.errors import MicroquantError
from microquant.ir.onnx_io import graph_from_model, load_onnx, to_onnx
from microquant.passes import lower, normalize
from microquant.runtime import Evaluator

MLPERF = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
RNG = np.random.default_rng(11)
HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model(text: str, **inits) -> onnx.ModelProto:
    m = onnx.parser.parse_model(HEADER + text)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items())
    return m


def _same_up_to_layout(low: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> bool:
    cands = [ref.reshape(low.shape)] if ref.size == low.size else []
    if ref.ndim == low.ndim and ref.ndim <= 4:
        cands += [
            ref.transpose(p)
            for p in itertools.permutations(range(ref.ndim))
            if ref.transpose(p).shape == low.shape
        ]
    return any(np.allclose(low, c, rtol=rtol, atol=atol) for c in cands)


def _lower_and_check(model: onnx.ModelProto, rtol: float = 1e-5, atol: float = 1e-5, feeds=None):
    """Lower ``model``; compare outputs and calib_source intermediates with ONNX Runtime."""
    onnx_graph = normalize(graph_from_model(model))
    lowered = lower(onnx_graph)
    if feeds is None:
        feeds = {i: _randn(*onnx_graph.tensor(i).shape) for i in onnx_graph.inputs}
    src = lowered.meta["calib_source"]
    acts = [n for n, t in lowered.tensors.items() if not t.is_const]
    fetch = sorted({src[a] for a in acts if a in src} - set(onnx_graph.inputs))
    sess = ort.InferenceSession(to_onnx(onnx_graph, outputs=fetch).SerializeToString())
    ref = dict(zip(fetch, sess.run(fetch, feeds), strict=True)) | feeds
    # Outputs of the untouched original model too.
    orig = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    values = Evaluator(lowered, mode="float").run_all(feeds)
    assert lowered.inputs == onnx_graph.inputs and lowered.outputs == onnx_graph.outputs
    for name, r in zip(lowered.outputs, orig, strict=True):
        assert values[name].shape == r.shape  # logical output shapes preserved
        np.testing.assert_allclose(values[name], r, rtol=rtol, atol=atol)
    for a in acts:
        if a in src:
            assert _same_up_to_layout(values[a], ref[src[a]], rtol, atol), (a, src[a])
        else:  # only explicit-padding outputs may lack a source
            assert lowered.producer(a).op == "PAD", a
    return lowered


def _node(lowered, op):
    return next(n for n in lowered.nodes if n.op == op)


# -- convolutions ---------------------------------------------------------------------


def test_conv_bn_relu_nchw_input():
    m = _model(
        """
    g (float[1, 3, 6, 6] x) => (float[1, 4, 6, 6] y) {
      c = Conv<pads = [1, 1, 1, 1], kernel_shape = [3, 3]>(x, w, b)
      n = BatchNormalization(c, s, beta, mean, var)
      y = Relu(n)
    }""",
        w=_randn(4, 3, 3, 3),
        b=_randn(4),
        s=_randn(4),
        beta=_randn(4),
        mean=_randn(4),
        var=np.abs(_randn(4)) + 0.1,
    )
    low = _lower_and_check(m)
    # NCHW model input/output: layout transposes at the boundary, BN and ReLU fused.
    assert low.ops() == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"]
    conv = _node(low, "CONV_2D")
    assert conv.attrs["padding"] == "SAME" and conv.attrs["activation"] == "RELU"
    assert low.tensor(conv.inputs[1]).shape == (4, 3, 3, 3)
    assert low.meta["calib_source"][conv.outputs[0]] == "y"
    assert low.tensor("x").shape == (1, 3, 6, 6) and low.tensor("y").shape == (1, 4, 6, 6)


def test_tf2onnx_nhwc_model_has_no_transpose():
    m = _model(
        """
    g (float[N, 10, 10, 3] x) => (float[N, 5] y) {
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      c1 = Conv<pads = [0, 0, 1, 1], strides = [2, 2], kernel_shape = [3, 3]>(t, w1, b1)
      r1 = Relu(c1)
      c2 = Conv<pads = [1, 1, 1, 1], kernel_shape = [3, 3], group = 8>(r1, w2, b2)
      r2 = Clip(c2, zero, six)
      c3 = Conv<kernel_shape = [1, 1]>(r2, w3, b3)
      s = Add(c3, r1)
      r3 = Relu(s)
      p = AveragePool<kernel_shape = [5, 5], strides = [5, 5]>(r3)
      f = Reshape(p, shape)
      h = MatMul(f, wd)
      a = Add(h, bd)
      y = Softmax(a)
    }""",
        w1=_randn(8, 3, 3, 3),
        b1=_randn(8),
        w2=_randn(8, 1, 3, 3),
        b2=_randn(8),
        w3=_randn(8, 8, 1, 1),
        b3=_randn(8),
        zero=np.float32(0),
        six=np.float32(6),
        shape=np.array([-1, 8], np.int64),
        wd=_randn(8, 5),
        bd=_randn(5),
    )
    low = _lower_and_check(m)
    assert low.ops() == [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "ADD",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
    ]
    acts = [n.attrs.get("activation") for n in low.nodes]
    assert acts == ["RELU", "RELU6", "NONE", "RELU", "NONE", None, "NONE", None]
    assert low.nodes[0].inputs[0] == "x" and low.nodes[0].attrs["padding"] == "SAME"
    dw = low.nodes[1]
    assert dw.attrs["depth_multiplier"] == 1 and low.tensor(dw.inputs[1]).shape == (1, 3, 3, 8)
    fc = _node(low, "FULLY_CONNECTED")
    assert low.tensor(fc.inputs[1]).shape == (5, 8) and fc.attrs["keep_num_dims"] is False
    assert low.tensor("x").shape == (1, 10, 10, 3)


def test_depthwise_with_multiplier_and_explicit_pads():
    m = _model(
        """
    g (float[1, 2, 7, 7] x) => (float[1, 6, 8, 9] y) {
      y = Conv<pads = [1, 0, 2, 2], kernel_shape = [3, 3], group = 2>(x, w, b)
    }""",
        w=_randn(6, 1, 3, 3),
        b=_randn(6),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["TRANSPOSE", "PAD", "DEPTHWISE_CONV_2D", "TRANSPOSE"]
    dw = _node(low, "DEPTHWISE_CONV_2D")
    assert dw.attrs["depth_multiplier"] == 3 and dw.attrs["padding"] == "VALID"
    pad = _node(low, "PAD")
    assert low.tensor(pad.inputs[1]).data.tolist() == [[0, 0], [1, 2], [0, 2], [0, 0]]


def test_dilated_conv_without_bias():
    m = _model(
        """
    g (float[1, 9, 9, 2] x) => (float[1, 9, 9, 3] y) {
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      c = Conv<pads = [2, 2, 2, 2], kernel_shape = [3, 3], dilations = [2, 2]>(t, w)
      y = Transpose<perm = [0, 2, 3, 1]>(c)
    }""",
        w=_randn(3, 2, 3, 3),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["CONV_2D"]
    conv = low.nodes[0]
    assert conv.attrs["dilation_h"] == 2 and conv.attrs["padding"] == "SAME"
    assert conv.outputs == ["y"] and low.tensor(conv.inputs[2]).shape == (3,)


# -- pooling / reductions ---------------------------------------------------------------


def _nhwc_wrap(body: str, c_in: int, hw: int, out_sig: str, out_name: str = "o") -> str:
    """A tf2onnx-style graph: NHWC input x, body reads ``t`` (NCHW), output transposed back."""
    return f"""
    g (float[1, {hw}, {hw}, {c_in}] x) => ({out_sig} y) {{
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      {body}
      y = Transpose<perm = [0, 2, 3, 1]>({out_name})
    }}"""


@pytest.mark.parametrize(
    "attrs,padding",
    [
        ("kernel_shape = [3, 3], strides = [2, 2], pads = [0, 0, 1, 1]", "SAME"),
        ("kernel_shape = [2, 2], strides = [2, 2]", "VALID"),
        ('kernel_shape = [3, 3], auto_pad = "SAME_UPPER"', "SAME"),
    ],
)
def test_max_pool(attrs, padding):
    hw = 7 if "SAME_UPPER" in attrs else 8
    out = {"SAME": (hw + 1) // 2 if "strides" in attrs else hw, "VALID": hw // 2}[padding]
    m = _model(_nhwc_wrap(f"o = MaxPool<{attrs}>(t)", 3, hw, f"float[1, {out}, {out}, 3]"))
    low = _lower_and_check(m)
    assert low.ops() == ["MAX_POOL_2D"] and low.nodes[0].attrs["padding"] == padding


def test_average_pool_same_and_count_include_pad():
    m = _model(
        _nhwc_wrap(
            """
      a = AveragePool<kernel_shape = [3, 3], pads = [1, 1, 1, 1]>(t)
      o = AveragePool<kernel_shape = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 1>(a)""",
            2,
            6,
            "float[1, 7, 7, 2]",
        )
    )
    low = _lower_and_check(m)
    assert low.ops() == ["AVERAGE_POOL_2D", "PAD", "AVERAGE_POOL_2D"]
    assert [n.attrs.get("padding") for n in low.nodes] == ["SAME", None, "VALID"]


def test_max_pool_explicit_pads_after_relu_and_avg_pool_same_include_pad():
    # PyTorch ResNet stem: MaxPool(3, stride 2, pad 1) after a ReLU - exact with zero PAD.
    m = _model(
        _nhwc_wrap(
            """
      r = Relu(t)
      m = MaxPool<kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]>(r)
      o = AveragePool<kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = 1>(m)""",
            2,
            8,
            "float[1, 4, 4, 2]",
        )
    )
    low = _lower_and_check(m)
    assert low.ops() == ["RELU", "PAD", "MAX_POOL_2D", "PAD", "AVERAGE_POOL_2D"]
    assert [n.attrs.get("padding") for n in low.nodes if "POOL" in n.op] == ["VALID", "VALID"]


def test_global_average_pool_and_reduce_mean():
    m = _model(_nhwc_wrap("o = GlobalAveragePool(t)", 4, 5, "float[1, 1, 1, 4]"))
    low = _lower_and_check(m)
    assert low.ops() == ["AVERAGE_POOL_2D"]
    m2 = _model("""
    g (float[1, 5, 5, 4] x) => (float[1, 4] y) {
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      y = ReduceMean<axes = [2, 3], keepdims = 0>(t)
    }""")
    low2 = _lower_and_check(m2)
    assert low2.ops() == ["MEAN"]
    mean = low2.nodes[0]
    assert low2.tensor(mean.inputs[1]).data.tolist() == [1, 2]
    assert low2.tensor(mean.inputs[1]).dtype == "int32" and mean.attrs["keep_dims"] is False


# -- element-wise, concat, pad ------------------------------------------------------------


def test_broadcast_constants_sub_div_follow_layout():
    m = _model(
        _nhwc_wrap(
            """
      a = Mul(t, sc)
      b = Sub(a, sh)
      c = Div(b, dv)
      d = Add(k, c)
      e = Sigmoid(d)
      o = Tanh(e)""",
            3,
            4,
            "float[1, 4, 4, 3]",
        ),
        sc=_randn(3, 1, 1),
        sh=_randn(1, 3, 1, 1),
        dv=np.float32(4.0),
        k=_randn(4),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["MUL", "ADD", "MUL", "ADD", "LOGISTIC", "TANH"]
    assert low.tensor(low.nodes[0].inputs[1]).shape == (1, 1, 1, 3)
    assert float(low.tensor(low.nodes[2].inputs[1]).data.reshape(-1)[0]) == 0.25
    # Add(k, c): constant moved second; k runs along logical W = physical axis 2.
    assert low.nodes[3].inputs[0] == low.nodes[2].outputs[0]
    assert low.tensor(low.nodes[3].inputs[1]).shape == (1, 1, 4, 1)


def test_concat_and_pad_remap_axes_and_relu6_standalone():
    m = _model(
        _nhwc_wrap(
            """
      a = Conv<kernel_shape = [1, 1]>(t, w, b)
      c = Concat<axis = 1>(a, t)
      p = Pad(c, pads)
      o = Clip(p, zero, six)""",
            2,
            4,
            "float[1, 5, 6, 5]",
        ),
        w=_randn(3, 2, 1, 1),
        b=_randn(3),
        pads=np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
        zero=np.float32(0),
        six=np.float32(6),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["CONV_2D", "CONCATENATION", "PAD", "RELU6"]
    assert low.nodes[1].attrs["axis"] == 3
    assert low.tensor(low.nodes[2].inputs[1]).data.tolist() == [[0, 0], [1, 0], [0, 2], [0, 0]]


def test_relu_not_fused_when_producer_has_two_readers():
    m = _model(
        """
    g (float[1, 6] x) => (float[1, 4] y, float[1, 4] z) {
      h = Gemm<transB = 1>(x, w, b)
      y = Relu(h)
      z = Sigmoid(h)
    }""",
        w=_randn(4, 6),
        b=_randn(4),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["FULLY_CONNECTED", "RELU", "LOGISTIC"]
    assert low.nodes[0].attrs["activation"] == "NONE"


def test_clip_minus_one_one_fused():
    m = _model(
        """
    g (float[2, 6] x) => (float[2, 4] y) {
      h = Gemm(x, w, b)
      y = Clip(h, lo, hi)
    }""",
        w=_randn(6, 4),
        b=_randn(4),
        lo=np.float32(-1),
        hi=np.float32(1),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["FULLY_CONNECTED"] and low.nodes[0].attrs["activation"] == "RELU_N1_TO_1"


def test_reshape_flatten_squeeze_unsqueeze_collapse():
    m = _model(
        """
    g (float[1, 2, 3, 4] x) => (float[1, 24] y, float[2, 12] z) {
      t = Transpose<perm = [0, 2, 3, 1]>(x)
      f = Flatten<axis = 1>(t)
      u = Unsqueeze(f, ax)
      s = Squeeze(u, ax)
      y = Relu(s)
      z = Reshape(x, shp)
    }""",
        ax=np.array([0], np.int64),
        shp=np.array([2, 12], np.int64),
    )
    low = _lower_and_check(m)
    # Transpose of a non-unit axis is materialized once; the reshape chain collapses.
    assert low.ops() == ["TRANSPOSE", "RESHAPE", "RELU", "RESHAPE"]
    assert low.tensor(low.nodes[0].inputs[1]).data.tolist() == [0, 2, 3, 1]


def test_unit_axis_transpose_becomes_reshape():
    # kws_dscnn style: Reshape NHWC [1,H,W,1] -> NCHW [1,1,H,W], then Conv in NHWC.
    m = _model(
        """
    g (float[N, 7, 5, 1] x) => (float[N, 2, 7, 5] y) {
      r = Reshape(x, shp)
      y = Conv<kernel_shape = [3, 3], pads = [1, 1, 1, 1]>(r, w, b)
    }""",
        shp=np.array([-1, 1, 7, 5], np.int64),
        w=_randn(2, 1, 3, 3),
        b=_randn(2),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["CONV_2D", "TRANSPOSE"]
    assert low.nodes[0].inputs[0] == "x"


def test_matmul_rank3_becomes_fc_and_reshape():
    m = _model(
        """
    g (float[1, 3, 4] x) => (float[1, 3, 2] y) { y = MatMul(x, w) }""",
        w=_randn(4, 2),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["FULLY_CONNECTED", "RESHAPE"]


def test_softmax_on_nhwc_channel_axis_needs_transpose_only_at_output():
    m = _model("""
    g (float[1, 3, 4, 5] x) => (float[1, 3, 4, 5] y) { y = Softmax(x) }""")
    low = _lower_and_check(m)
    assert low.ops() == ["SOFTMAX"] and low.nodes[0].attrs["beta"] == 1.0


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,inits,match",
    [
        (
            "g (float[1, 4, 5, 5] x) => (float[1, 4, 5, 5] y) "
            "{ y = Conv<kernel_shape = [1, 1], group = 2>(x, w) }",
            {"w": _randn(4, 2, 1, 1)},
            "grouped convolution",
        ),
        (
            "g (float[1, 3, 4] x) => (float[1, 3, 4] y) { y = Softmax<axis = 1>(x) }",
            {},
            "last axis",
        ),
        ("g (float[1, 4] x, float[1, 4] z) => (float[1, 4] y) { y = Sub(x, z) }", {}, "constant"),
        (
            "g (float[1, 2, 5, 5] x) => (float[1, 2, 6, 6] y) "
            "{ y = MaxPool<kernel_shape = [2, 2], pads = [1, 1, 1, 1]>(x) }",
            {},
            "not TFLite SAME/VALID",
        ),
        (
            "g (float[1, 4] x) => (float[1, 4] y) { y = Clip(x, lo, hi) }",
            {"lo": np.float32(-2), "hi": np.float32(2)},
            "range",
        ),
        (
            "g (float[1, 4] x) => (float[1, 4] y) { y = Clip(x, lo, hi) }",
            {"lo": np.float32(-1), "hi": np.float32(1)},
            "RELU_N1_TO_1",
        ),
        (
            "g (float[1, 2, 5, 5] x) => (float[1, 2, 3, 3] y) "
            "{ y = MaxPool<kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1>(x) }",
            {},
            "ceil_mode",
        ),
        (
            "g (float[1, 2, 4] x) => (float[1, 3, 4] y) { y = Conv<kernel_shape = [1]>(x, w) }",
            {"w": _randn(3, 2, 1)},
            "only 2-D",
        ),
        (
            "g (float[1, 3, 4] x, float[4, 2] w) => (float[1, 3, 2] y) { y = MatMul(x, w) }",
            {},
            "must be a constant",
        ),
    ],
)
def test_lowering_errors(text, inits, match):
    g = normalize(graph_from_model(_model(text, **inits)))
    with pytest.raises(MicroquantError, match=match):
        lower(g)


# -- the MLPerf Tiny models ----------------------------------------------------------------

EXPECTED_OPS = {
    "ic_resnet8": {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
    "kws_dscnn": {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
    },
    "vww_mobilenetv1": {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
    },
    "ad_autoencoder": {"FULLY_CONNECTED"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_mlperf_tiny_lowers_and_matches_onnxruntime(name):
    path = MLPERF / f"{name}.onnx"
    if not path.exists():
        pytest.skip("shared MLPerf Tiny models not available")
    model = onnx.load(str(path))
    low = lower(normalize(load_onnx(path)))
    assert set(low.ops()) == EXPECTED_OPS[name]
    # Every ReLU was fused: one compute op per layer, activations in the op attrs.
    assert "RELU" not in low.ops()
    shape = low.tensor(low.inputs[0]).shape
    scale = 255.0 if name == "ic_resnet8" else 1.0
    x = (np.random.default_rng(3).random(shape) * scale).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {low.inputs[0]: x})[0]
    got = Evaluator(low, mode="float").run([x])[0]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_mlperf_kws_intermediates_match_calib_sources():
    path = MLPERF / "kws_dscnn.onnx"
    data = MLPERF.parents[1] / "data" / "kws01_calib.npz"
    if not path.exists() or not data.exists():
        pytest.skip("shared MLPerf Tiny model/data not available")
    x = np.load(data)["x"][:1]
    _lower_and_check(
        onnx.load(str(path)), rtol=1e-4, atol=1e-3, feeds={"serving_default_input_1:0": x}
    )


def test_rank_broadcast_between_activations():
    # [1, C, H, W] + [W] activation: the lower-rank operand forces the logical layout.
    m = _model(
        """
    g (float[1, 4, 4, 2] x, float[3] v) => (float[1, 2, 4, 3] y) {
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      c = Conv<kernel_shape = [2, 2]>(t, w, b)
      y = Add(c, v)
    }""",
        w=_randn(2, 2, 2, 2),
        b=_randn(2),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["CONV_2D", "TRANSPOSE", "ADD"]


def test_dead_nodes_are_dropped():
    m = _model("""
    g (float[1, 4] x) => (float[1, 4] y) { dead = Sigmoid(x)  y = Relu(x) }""")
    assert _lower_and_check(m).ops() == ["RELU"]


def test_tf2onnx_flatten_after_transpose_back_to_nhwc():
    # Keras Flatten on NHWC: tf2onnx transposes back to NHWC and reshapes - no TRANSPOSE left.
    m = _model(
        """
    g (float[1, 4, 4, 2] x) => (float[1, 3] y) {
      t = Transpose<perm = [0, 3, 1, 2]>(x)
      c = Conv<kernel_shape = [3, 3], pads = [1, 1, 1, 1]>(t, w, b)
      r = Relu(c)
      n = Transpose<perm = [0, 2, 3, 1]>(r)
      f = Reshape(n, shp)
      y = Gemm(f, wd, bd)
    }""",
        w=_randn(5, 2, 3, 3),
        b=_randn(5),
        shp=np.array([1, 80], np.int64),
        wd=_randn(80, 3),
        bd=_randn(3),
    )
    low = _lower_and_check(m)
    assert low.ops() == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
