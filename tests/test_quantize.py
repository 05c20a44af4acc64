"""``quantize_graph`` on hand-built TFLite-level float graphs: the int8 spec rules, and
numerical agreement of the quantized graph (reference runtime) with the float graph."""

from __future__ import annotations

import numpy as np
import pytest

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.quant.primitives import choose_qparams, dequantize, quantize
from microquant.quant.quantize import quantize_graph
from microquant.runtime.evaluator import Evaluator

RNG = np.random.default_rng(3)
CONV = dict(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, padding="SAME")


def _t(g: Graph, name: str, shape, data=None) -> str:
    dtype = "float32" if data is None else str(np.asarray(data).dtype)
    g.add_tensor(Tensor(name, shape, dtype, None if data is None else np.asarray(data)))
    return name


def conv_net() -> Graph:
    """CONV(RELU) -> DW(RELU6, stride 2) -> MAX_POOL -> RESHAPE -> FC(no bias) -> SOFTMAX."""
    g = Graph(name="conv_net", inputs=["x"], outputs=["y"])
    _t(g, "x", (1, 8, 8, 3))
    _t(g, "w1", (4, 3, 3, 3), (RNG.normal(size=(4, 3, 3, 3)) * 0.3).astype(np.float32))
    _t(g, "b1", (4,), (RNG.normal(size=4) * 0.1).astype(np.float32))
    _t(g, "c1", (1, 8, 8, 4))
    _t(g, "w2", (1, 3, 3, 4), (RNG.normal(size=(1, 3, 3, 4)) * 0.5).astype(np.float32))
    _t(g, "b2", (4,), (RNG.normal(size=4) * 0.1).astype(np.float32))
    _t(g, "d1", (1, 4, 4, 4))
    _t(g, "p1", (1, 2, 2, 4))
    _t(g, "shape", (2,), np.array([1, 16], np.int32))
    _t(g, "r1", (1, 16))
    _t(g, "w3", (5, 16), (RNG.normal(size=(5, 16)) * 0.3).astype(np.float32))
    _t(g, "f1", (1, 5))
    _t(g, "y", (1, 5))
    g.nodes = [
        Node("CONV_2D", ["x", "w1", "b1"], ["c1"], dict(CONV, activation="RELU"), "conv"),
        Node(
            "DEPTHWISE_CONV_2D",
            ["c1", "w2", "b2"],
            ["d1"],
            dict(CONV, stride_h=2, stride_w=2, depth_multiplier=1, activation="RELU6"),
            "dw",
        ),
        Node(
            "MAX_POOL_2D",
            ["d1"],
            ["p1"],
            dict(
                filter_h=2, filter_w=2, stride_h=2, stride_w=2, padding="VALID", activation="NONE"
            ),
            "pool",
        ),
        Node("RESHAPE", ["p1", "shape"], ["r1"], {}, "reshape"),
        Node(
            "FULLY_CONNECTED",
            ["r1", "w3", ""],
            ["f1"],
            dict(activation="NONE", keep_num_dims=False),
            "fc",
        ),
        Node("SOFTMAX", ["f1"], ["y"], dict(beta=1.0), "softmax"),
    ]
    return g


def misc_net() -> Graph:
    """PAD -> AVG_POOL, ADD(const) -> MEAN -> LOGISTIC, CONCAT(x, add) -> TANH."""
    g = Graph(name="misc_net", inputs=["x"], outputs=["ap", "s", "t"])
    _t(g, "x", (1, 4, 4, 2))
    _t(g, "pads", (4, 2), np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    _t(g, "pd", (1, 6, 6, 2))
    _t(g, "ap", (1, 3, 3, 2))
    _t(g, "c", (1, 1, 1, 2), np.array([[[[0.5, -1.5]]]], np.float32))
    _t(g, "a1", (1, 4, 4, 2))
    _t(g, "axes", (2,), np.array([1, 2], np.int32))
    _t(g, "m", (1, 1, 1, 2))
    _t(g, "s", (1, 1, 1, 2))
    _t(g, "cat", (1, 4, 4, 4))
    _t(g, "t", (1, 4, 4, 4))
    g.nodes = [
        Node("PAD", ["x", "pads"], ["pd"], {}, "pad"),
        Node(
            "AVERAGE_POOL_2D",
            ["pd"],
            ["ap"],
            dict(
                filter_h=2, filter_w=2, stride_h=2, stride_w=2, padding="VALID", activation="NONE"
            ),
            "avg",
        ),
        Node("ADD", ["x", "c"], ["a1"], dict(activation="NONE"), "add"),
        Node("MEAN", ["a1", "axes"], ["m"], dict(keep_dims=True), "mean"),
        Node("LOGISTIC", ["m"], ["s"], {}, "logistic"),
        Node("CONCATENATION", ["x", "a1"], ["cat"], dict(axis=3, activation="NONE"), "concat"),
        Node("TANH", ["cat"], ["t"], {}, "tanh"),
    ]
    return g


def samples(g: Graph, n: int = 32, seed: int = 0) -> list[np.ndarray]:
    shape = g.tensor(g.inputs[0]).shape
    return [np.random.default_rng(seed + i).normal(size=shape).astype(np.float32) for i in range(n)]


def float_ranges(g: Graph, xs: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """Min/max calibration with the float reference runtime (every activation)."""
    ev = Evaluator(g, mode="float")
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for x in xs:
        for name, v in ev.run_all([x]).items():
            if name and not g.tensors[name].is_const:
                lo[name] = min(lo.get(name, np.inf), float(np.min(v)))
                hi[name] = max(hi.get(name, -np.inf), float(np.max(v)))
    return {k: (lo[k], hi[k]) for k in lo}


@pytest.fixture(scope="module")
def conv_case():
    g = conv_net()
    xs = samples(g)
    return g, xs, float_ranges(g, xs)


@pytest.fixture(scope="module")
def misc_case():
    g = misc_net()
    xs = samples(g)
    return g, xs, float_ranges(g, xs)


def qp(g: Graph, name: str) -> tuple[float, int]:
    q = g.tensor(name).quant
    return float(q.scale[0]), int(q.zero_point[0])


# -- structure ---------------------------------------------------------------------------
def test_weights_symmetric_per_channel(conv_case):
    g, _, ranges = conv_case
    q = quantize_graph(g, ranges)
    for node, axis in (("conv", 0), ("dw", 3), ("fc", 0)):
        n = next(n for n in q.nodes if n.name == node)
        w, wf = q.tensor(n.inputs[1]), g.tensor(n.inputs[1]).data
        assert w.dtype == "int8" and w.quant.axis == axis
        assert not w.quant.zero_point.any() and w.quant.scale.size == wf.shape[axis]
        red = tuple(a for a in range(wf.ndim) if a != axis)
        np.testing.assert_allclose(w.quant.scale, np.abs(wf).max(axis=red) / 127, rtol=1e-6)
        assert w.data.min() >= -127 and (np.abs(w.data).max(axis=red) == 127).all()
        deq = dequantize(w.data, w.quant.scale, w.quant.zero_point, axis)
        assert np.abs(deq - wf).max() <= w.quant.scale.max() / 2 + 1e-7


def test_bias_int32_scale_product_and_created(conv_case):
    g, _, ranges = conv_case
    q = quantize_graph(g, ranges)
    for name in ("conv", "dw", "fc"):
        n = next(n for n in q.nodes if n.name == name)
        x, w, b = (q.tensor(i) for i in n.inputs[:3])
        assert b.dtype == "int32" and b.data.dtype == np.int32
        want = (np.float32(x.quant.scale[0]) * w.quant.scale).astype(np.float32)
        np.testing.assert_array_equal(b.quant.scale, want)
        assert not b.quant.zero_point.any()
        if name == "fc":  # created: zeros
            assert b.shape == (5,) and not b.data.any()
        else:
            bf = g.tensor(n.inputs[2]).data
            np.testing.assert_allclose(b.data * b.quant.scale, bf, atol=float(want.max()))


def test_activation_qparams_and_fused_clamp(conv_case):
    g, _, ranges = conv_case
    q = quantize_graph(g, ranges)
    s, z = choose_qparams(*ranges["x"])
    assert qp(q, "x") == (pytest.approx(float(s)), int(z))
    assert q.tensor("x").dtype == "int8"
    # RELU-fused conv: range starts at 0 -> zero point -128
    assert qp(q, "c1")[1] == -128
    assert qp(q, "c1")[0] == pytest.approx(ranges["c1"][1] / 255, rel=1e-6)


def test_fused_activation_clamps_a_pre_activation_range(conv_case):
    """A range observed before the activation (e.g. [-3, 9] for RELU6) is clamped."""
    g, _, ranges = conv_case
    r = dict(ranges, d1=(-3.0, 9.0), p1=(-3.0, 9.0), r1=(-3.0, 9.0))
    q = quantize_graph(g, r)
    s, z = choose_qparams(-3.0, 9.0)  # p1/r1 ranges are unclamped members of the group
    assert qp(q, "d1") == (pytest.approx(float(s)), int(z))
    r = dict(ranges, d1=(-3.0, 9.0))
    r.pop("p1"), r.pop("r1")
    q = quantize_graph(g, r)
    assert qp(q, "d1") == (pytest.approx(6.0 / 255), -128)


def test_shared_qparams_group(conv_case):
    g, _, ranges = conv_case
    q = quantize_graph(g, ranges)
    # DW output, MAX_POOL output and RESHAPE output: one encoding, union of ranges
    assert qp(q, "d1") == qp(q, "p1") == qp(q, "r1")
    lo = min(ranges[k][0] for k in ("d1", "p1", "r1"))
    hi = max(ranges[k][1] for k in ("d1", "p1", "r1"))
    s, z = choose_qparams(max(lo, 0.0), min(hi, 6.0))
    assert qp(q, "p1") == (pytest.approx(float(s)), int(z))
    # a group needs only one member's range
    r = {k: v for k, v in ranges.items() if k not in ("p1", "r1")}
    assert qp(quantize_graph(g, r), "r1") == qp(q, "d1")


def test_fixed_output_params(conv_case, misc_case):
    q = quantize_graph(conv_case[0], conv_case[2])
    assert qp(q, "y") == (1 / 256, -128)
    q = quantize_graph(misc_case[0], misc_case[2])
    assert qp(q, "s") == (1 / 256, -128)
    assert qp(q, "t") == (1 / 128, 0)
    # fixed outputs need no calibration range
    r = {k: v for k, v in misc_case[2].items() if k not in ("s", "t")}
    assert qp(quantize_graph(misc_case[0], r), "t") == (1 / 128, 0)


def test_concat_pad_avgpool_share(misc_case):
    g, _, ranges = misc_case
    q = quantize_graph(g, ranges)
    # CONCATENATION ties all inputs to the output; PAD/AVG_POOL tie x to their outputs
    assert qp(q, "x") == qp(q, "a1") == qp(q, "cat") == qp(q, "pd") == qp(q, "ap")
    lo = min(ranges[k][0] for k in ("x", "a1", "cat", "pd", "ap"))
    hi = max(ranges[k][1] for k in ("x", "a1", "cat", "pd", "ap"))
    s, z = choose_qparams(lo, hi)
    assert qp(q, "cat") == (pytest.approx(float(s)), int(z))
    assert qp(q, "m") != qp(q, "a1")  # MEAN rescales: its own range


def test_other_float_constant_is_int8_per_tensor(misc_case):
    g, _, ranges = misc_case
    q = quantize_graph(g, ranges)
    c = q.tensor("c")
    assert c.dtype == "int8" and c.data.dtype == np.int8 and c.quant.scale.size == 1
    s, z = choose_qparams(-1.5, 0.5)
    assert qp(q, "c") == (pytest.approx(float(s)), int(z))
    np.testing.assert_allclose(
        dequantize(c.data, c.quant.scale, c.quant.zero_point), g.tensor("c").data, atol=float(s) / 2
    )
    # integer constants are untouched
    assert q.tensor("axes").dtype == "int32" and q.tensor("pads").dtype == "int32"


def test_input_graph_is_not_modified(conv_case):
    g, _, ranges = conv_case
    before = {k: (t.dtype, t.quant) for k, t in g.tensors.items()}
    quantize_graph(g, ranges, float_io=True)
    assert {k: (t.dtype, t.quant) for k, t in g.tensors.items()} == before
    assert g.ops()[0] == "CONV_2D"


def test_missing_range_names_tensor(conv_case):
    g, _, ranges = conv_case
    r = {k: v for k, v in ranges.items() if k != "c1"}
    with pytest.raises(MicroquantError, match="no calibration range for tensor 'c1'"):
        quantize_graph(g, r)


def test_bad_range_and_unsupported_op(conv_case):
    g, _, ranges = conv_case
    with pytest.raises(MicroquantError, match="invalid calibration range"):
        quantize_graph(g, dict(ranges, c1=(1.0, float("nan"))))
    g2 = g.copy()
    g2.nodes[-1].op = "GELU"
    with pytest.raises(MicroquantError, match="cannot quantize op GELU"):
        quantize_graph(g2, ranges)


def test_shared_weight_and_bias_get_private_copies():
    """One bias read by two FCs with different input scales needs two int32 encodings."""
    g = Graph(inputs=["a", "b"], outputs=["ya", "yb"])
    _t(g, "a", (1, 4))
    _t(g, "b", (1, 4))
    _t(g, "w", (3, 4), RNG.normal(size=(3, 4)).astype(np.float32))
    _t(g, "bias", (3,), np.array([0.1, -0.2, 0.3], np.float32))
    _t(g, "ya", (1, 3))
    _t(g, "yb", (1, 3))
    g.nodes = [
        Node("FULLY_CONNECTED", ["a", "w", "bias"], ["ya"], {"activation": "NONE"}),
        Node("FULLY_CONNECTED", ["b", "w", "bias"], ["yb"], {"activation": "NONE"}),
    ]
    ranges = {"a": (-1, 1), "b": (-10, 10), "ya": (-5, 5), "yb": (-50, 50)}
    q = quantize_graph(g, ranges)
    b0, b1 = (q.tensor(n.inputs[2]) for n in q.nodes)
    assert b0.name != b1.name
    assert all(t.dtype != "float32" for t in q.tensors.values())  # no float leftovers
    assert b0.quant.scale[0] * 10 == pytest.approx(b1.quant.scale[0], rel=1e-5)


def test_all_zero_weight_channel():
    g = Graph(inputs=["x"], outputs=["y"])
    _t(g, "x", (1, 2))
    w = np.array([[1.0, -0.5], [0.0, 0.0]], np.float32)
    _t(g, "w", (2, 2), w)
    _t(g, "b", (2,), np.array([0.0, 0.25], np.float32))
    _t(g, "y", (1, 2))
    g.nodes = [Node("FULLY_CONNECTED", ["x", "w", "b"], ["y"], {"activation": "NONE"})]
    q = quantize_graph(g, {"x": (-1, 1), "y": (-2, 2)})
    wq = q.tensor("w")
    assert np.isfinite(wq.quant.scale).all() and (wq.quant.scale > 0).all()
    assert wq.data[1].tolist() == [0, 0]
    out = run_quantized(q, [np.array([[0.5, 0.5]], np.float32)])[0]
    assert out[0, 1] == pytest.approx(0.25, abs=0.02)


def test_float_io_inserts_quantize_dequantize(conv_case):
    g, _, ranges = conv_case
    plain = quantize_graph(g, ranges)
    q = quantize_graph(g, ranges, float_io=True)
    assert q.inputs == ["x"] and q.outputs == ["y"]
    assert q.tensor("x").dtype == "float32" and q.tensor("y").dtype == "float32"
    assert q.nodes[0].op == "QUANTIZE" and q.nodes[0].inputs == ["x"]
    assert q.nodes[-1].op == "DEQUANTIZE" and q.nodes[-1].outputs == ["y"]
    inner_in, inner_out = q.nodes[0].outputs[0], q.nodes[-1].inputs[0]
    assert q.tensor(inner_in).dtype == "int8" and q.tensor(inner_out).dtype == "int8"
    assert qp(q, inner_in) == qp(plain, "x") and qp(q, inner_out) == qp(plain, "y")
    assert q.nodes[1].inputs[0] == inner_in
    assert plain.ops() == q.ops()[1:-1]


# -- numerics ------------------------------------------------------------------------------
def run_quantized(q: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Quantize inputs, run the integer graph, dequantize outputs."""
    feeds = []
    for name, x in zip(q.inputs, xs, strict=True):
        t = q.tensor(name)
        feeds.append(x if t.dtype == "float32" else quantize(x, t.quant.scale, t.quant.zero_point))
    outs = Evaluator(q).run(feeds)
    res = []
    for name, o in zip(q.outputs, outs, strict=True):
        t = q.tensor(name)
        res.append(o if t.dtype == "float32" else dequantize(o, t.quant.scale, t.quant.zero_point))
    return res


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = np.sum((ref - got) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / max(noise, 1e-30)))


@pytest.mark.parametrize("case", ["conv_case", "misc_case"])
@pytest.mark.parametrize("float_io", [False, True])
def test_quantized_matches_float(case, float_io, request):
    g, xs, ranges = request.getfixturevalue(case)
    q = quantize_graph(g, ranges, float_io=float_io)
    ev = Evaluator(g, mode="float")
    test_xs = samples(g, n=8, seed=1000)  # unseen inputs
    for i, name in enumerate(g.outputs):
        ref = np.concatenate([ev.run([x])[i].ravel() for x in test_xs])
        got = np.concatenate([run_quantized(q, [x])[i].ravel() for x in test_xs])
        assert sqnr_db(ref, got) > 25.0, (name, sqnr_db(ref, got))


def test_quantized_graph_runs_bit_exact_in_tflm(conv_case, misc_case):
    """TFLM's Prepare accepts our encodings (shared/fixed params) and agrees bit for bit."""
    harness = pytest.importorskip("harness")
    pytest.importorskip("microquant.backends.tflm")
    pytest.importorskip("microquant.ir.tflite_io")
    for g, _, ranges in (conv_case, misc_case):
        q = quantize_graph(g, ranges)
        x = samples(g, n=1, seed=77)[0]
        t = q.tensor(q.inputs[0])
        harness.check_against_tflm(q, [quantize(x, t.quant.scale, t.quant.zero_point)])
