"""Conformance of the windowed kernels: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
AVERAGE_POOL_2D, MAX_POOL_2D.

* integer: every case in ``CASES`` runs in our runtime (integer-only traced) and in TFLite
  Micro and must agree bit for bit; a straight loop port of TFLM's reference loops
  cross-checks the vectorised conv/depthwise/avg-pool index arithmetic without TFLM.
* float: ``run_float`` against onnxruntime on the equivalent NCHW ONNX op.
"""

from __future__ import annotations

import harness
import numpy as np
import pytest
from harness import qtensor, random_int, single_op_graph

from microquant.ir.graph import Graph, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import get_kernel
from microquant.runtime.ops._common import out_size, pad_before

# -- quantized case builders -------------------------------------------------------------


def _scales(n: int, lo: float, hi: float, seed: int) -> list[float]:
    """Per-channel scales spread log-uniformly over [lo, hi] (widely differing on purpose)."""
    return list(np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n)))


def _out_scale(graph: Graph, inputs: list[np.ndarray]) -> float:
    """An output scale that keeps most real outputs in range (from the float semantics)."""
    fg = graph.copy()
    reals = harness.real_inputs(fg, inputs)
    node = fg.nodes[0]
    act = node.attrs.get("activation", "NONE")
    node.attrs = dict(node.attrs, activation="NONE")
    y = get_kernel(node.op).run_float(node, fg, reals)[0]
    top = min(float(np.abs(y).max()), 8.0) if act == "RELU6" else float(np.abs(y).max())
    return top / 100.0 + 1e-6


def conv_case(
    x_shape,
    co,
    k,
    stride=(1, 1),
    dilation=(1, 1),
    padding="SAME",
    activation="NONE",
    in_zp=-5,
    out_zp=7,
    bias=True,
    per_channel=True,
    seed=0,
    groups=1,
):
    def build():
        n, h, w, ci_all = x_shape
        ci = ci_all // groups
        kh, kw = k
        ho = out_size(padding, h, kh, stride[0], dilation[0])
        wo = out_size(padding, w, kw, stride[1], dilation[1])
        s_in = 0.02
        w_scales = _scales(co, 2e-4, 5e-2, seed) if per_channel else [0.01]
        wdata = random_int((co, kh, kw, ci), seed=seed + 1, low=-127)
        ins = [
            qtensor("x", x_shape, s_in, in_zp),
            qtensor(
                "w",
                (co, kh, kw, ci),
                w_scales,
                [0] * len(w_scales),
                axis=0 if per_channel else None,
                data=wdata,
            ),
        ]
        if bias:
            b_scales = [s_in * s for s in w_scales]
            bdata = random_int((co,), "int32", seed=seed + 2, low=-3000, high=3000)
            ins.append(
                qtensor(
                    "b",
                    (co,),
                    b_scales,
                    [0] * len(b_scales),
                    "int32",
                    axis=0 if per_channel else None,
                    data=bdata,
                )
            )
        y = qtensor("y", (n, ho, wo, co), 1.0, out_zp)
        attrs = dict(
            stride_h=stride[0],
            stride_w=stride[1],
            dilation_h=dilation[0],
            dilation_w=dilation[1],
            padding=padding,
            activation=activation,
        )
        g = single_op_graph("CONV_2D", ins, [y], attrs)
        x = random_int(x_shape, seed=seed + 3)
        g.tensor("y").quant.scale[:] = _out_scale(g, [x])
        return g, [x]

    return build


def dw_case(
    x_shape,
    dm,
    k,
    stride=(1, 1),
    dilation=(1, 1),
    padding="SAME",
    activation="NONE",
    in_zp=3,
    out_zp=-9,
    seed=10,
):
    def build():
        n, h, w, ci = x_shape
        co = ci * dm
        kh, kw = k
        ho = out_size(padding, h, kh, stride[0], dilation[0])
        wo = out_size(padding, w, kw, stride[1], dilation[1])
        s_in = 0.03
        w_scales = _scales(co, 1e-3, 8e-2, seed)
        wdata = random_int((1, kh, kw, co), seed=seed + 1, low=-127)
        bdata = random_int((co,), "int32", seed=seed + 2, low=-2000, high=2000)
        ins = [
            qtensor("x", x_shape, s_in, in_zp),
            qtensor("w", (1, kh, kw, co), w_scales, [0] * co, axis=3, data=wdata),
            qtensor(
                "b", (co,), [s_in * s for s in w_scales], [0] * co, "int32", axis=0, data=bdata
            ),
        ]
        y = qtensor("y", (n, ho, wo, co), 1.0, out_zp)
        attrs = dict(
            stride_h=stride[0],
            stride_w=stride[1],
            dilation_h=dilation[0],
            dilation_w=dilation[1],
            padding=padding,
            activation=activation,
            depth_multiplier=dm,
        )
        g = single_op_graph("DEPTHWISE_CONV_2D", ins, [y], attrs)
        x = random_int(x_shape, seed=seed + 3)
        g.tensor("y").quant.scale[:] = _out_scale(g, [x])
        return g, [x]

    return build


def fc_case(x_shape, n_out, per_channel=True, activation="NONE", in_zp=-11, out_zp=4, seed=20):
    def build():
        k = int(np.prod(x_shape[1:]))
        s_in = 0.05
        w_scales = _scales(n_out, 5e-4, 3e-2, seed) if per_channel else [0.004]
        wdata = random_int((n_out, k), seed=seed + 1, low=-127)
        bdata = random_int((n_out,), "int32", seed=seed + 2, low=-5000, high=5000)
        ax = 0 if per_channel else None
        ins = [
            qtensor("x", x_shape, s_in, in_zp),
            qtensor("w", (n_out, k), w_scales, [0] * len(w_scales), axis=ax, data=wdata),
            qtensor(
                "b",
                (n_out,),
                [s_in * s for s in w_scales],
                [0] * len(w_scales),
                "int32",
                axis=ax,
                data=bdata,
            ),
        ]
        y = qtensor("y", (x_shape[0], n_out), 1.0, out_zp)
        g = single_op_graph(
            "FULLY_CONNECTED", ins, [y], dict(activation=activation, keep_num_dims=False)
        )
        x = random_int(x_shape, seed=seed + 3)
        g.tensor("y").quant.scale[:] = _out_scale(g, [x])
        return g, [x]

    return build


def pool_case(op, x_shape, f, stride, padding, activation="NONE", zp=-3, scale=0.04, seed=30):
    def build():
        n, h, w, c = x_shape
        ho = out_size(padding, h, f[0], stride[0])
        wo = out_size(padding, w, f[1], stride[1])
        g = single_op_graph(
            op,
            [qtensor("x", x_shape, scale, zp)],
            [qtensor("y", (n, ho, wo, c), scale, zp)],
            dict(
                filter_h=f[0],
                filter_w=f[1],
                stride_h=stride[0],
                stride_w=stride[1],
                padding=padding,
                activation=activation,
            ),
        )
        return g, [random_int(x_shape, seed=seed)]

    return build


AVG, MAX = "AVERAGE_POOL_2D", "MAX_POOL_2D"

CASES = [
    ("conv_3x3_s1_same", conv_case((1, 8, 8, 3), 5, (3, 3))),
    (
        "conv_3x3_s2_valid_relu",
        conv_case((1, 9, 9, 4), 6, (3, 3), (2, 2), padding="VALID", activation="RELU", seed=1),
    ),
    (
        "conv_3x3_s2_same_even_relu6",
        conv_case((1, 8, 8, 3), 8, (3, 3), (2, 2), activation="RELU6", in_zp=-128, seed=2),
    ),
    ("conv_3x3_dilation2", conv_case((1, 10, 10, 2), 3, (3, 3), dilation=(2, 2), seed=3)),
    (
        "conv_1x1_nobias_odd",
        conv_case((1, 6, 6, 15), 7, (1, 1), padding="VALID", bias=False, out_zp=-128, seed=4),
    ),
    ("conv_5x3_s21_same", conv_case((1, 11, 7, 3), 4, (5, 3), (2, 1), in_zp=0, seed=5)),
    ("conv_per_tensor_weights", conv_case((1, 7, 7, 4), 5, (3, 3), per_channel=False, seed=6)),
    ("conv_wide_channels", conv_case((1, 5, 5, 32), 33, (3, 3), (2, 2), seed=7)),
    ("conv_grouped", conv_case((1, 6, 6, 4), 6, (3, 3), groups=2, seed=8)),
    ("dw_3x3_s1_same", dw_case((1, 8, 8, 5), 1, (3, 3))),
    (
        "dw_3x3_s2_same_dm2_relu6",
        dw_case((1, 9, 9, 3), 2, (3, 3), (2, 2), activation="RELU6", seed=11),
    ),
    (
        "dw_3x3_dilation2_valid",
        dw_case((1, 10, 10, 4), 1, (3, 3), dilation=(2, 2), padding="VALID", seed=12),
    ),
    (
        "dw_5x5_s2_valid_relu",
        dw_case(
            (1, 12, 12, 3),
            1,
            (5, 5),
            (2, 2),
            padding="VALID",
            activation="RELU",
            in_zp=-128,
            seed=13,
        ),
    ),
    ("dw_3x3_s2_same_even", dw_case((1, 8, 8, 7), 1, (3, 3), (2, 2), seed=14)),
    ("fc_per_channel", fc_case((1, 32), 10)),
    ("fc_per_tensor_relu", fc_case((1, 20), 7, per_channel=False, activation="RELU", seed=21)),
    ("fc_4d_input", fc_case((1, 2, 2, 8), 5, seed=22)),
    ("fc_odd_relu6", fc_case((1, 63), 13, activation="RELU6", in_zp=0, seed=23)),
    ("fc_batch3", fc_case((3, 16), 5, seed=24)),
    ("avg_2x2_s2_valid", pool_case(AVG, (1, 8, 8, 3), (2, 2), (2, 2), "VALID")),
    ("avg_3x3_s1_same_borders", pool_case(AVG, (1, 7, 7, 4), (3, 3), (1, 1), "SAME", seed=31)),
    ("avg_3x3_s2_same_even", pool_case(AVG, (1, 8, 6, 5), (3, 3), (2, 2), "SAME", zp=20, seed=32)),
    ("avg_global_6x5", pool_case(AVG, (1, 6, 5, 9), (6, 5), (1, 1), "VALID", seed=33)),
    (
        "avg_2x2_same_relu6",
        pool_case(AVG, (1, 5, 5, 2), (2, 2), (2, 2), "SAME", "RELU6", zp=-100, scale=0.02, seed=34),
    ),
    ("max_2x2_s2_valid", pool_case(MAX, (1, 8, 8, 3), (2, 2), (2, 2), "VALID", seed=35)),
    ("max_3x3_s2_same", pool_case(MAX, (1, 9, 7, 4), (3, 3), (2, 2), "SAME", seed=36)),
    (
        "max_3x3_s1_same_relu",
        pool_case(MAX, (1, 6, 6, 3), (3, 3), (1, 1), "SAME", "RELU", zp=10, seed=37),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_tflm(case):
    graph, inputs = case[1]()
    harness.check_against_tflm(graph, inputs)


# -- straight loop ports of the TFLM reference loops (small shapes only) -------------------


def _qp(g: Graph, name: str):
    q = g.tensor(name).quant
    return q.scale, int(q.zero_point[0])


def _loop_conv(graph: Graph, x: np.ndarray, depthwise: bool) -> np.ndarray:
    from microquant.runtime.fixedpoint import mbqm

    node = graph.nodes[0]
    params = get_kernel(node.op).prepare(node, graph)
    a = node.attrs
    w = graph.const(node.inputs[1]).astype(np.int64)
    b = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    _, h, wd, ci = x.shape
    kh, kw = w.shape[1], w.shape[2]
    _, ho, wo, co = graph.tensor("y").shape
    ph = pad_before(a["padding"], h, kh, a["stride_h"], a["dilation_h"])
    pw = pad_before(a["padding"], wd, kw, a["stride_w"], a["dilation_w"])
    in_zp = _qp(graph, "x")[1]
    out = np.zeros((1, ho, wo, co), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for oc in range(co):
                acc = 0
                for fy in range(kh):
                    for fx in range(kw):
                        iy = oy * a["stride_h"] - ph + a["dilation_h"] * fy
                        ix = ox * a["stride_w"] - pw + a["dilation_w"] * fx
                        if not (0 <= iy < h and 0 <= ix < wd):
                            continue
                        if depthwise:
                            ic = oc // a["depth_multiplier"]
                            acc += int(w[0, fy, fx, oc]) * (int(x[0, iy, ix, ic]) - in_zp)
                        else:
                            cg = w.shape[3]
                            base = oc // (co // (ci // cg)) * cg  # first channel of the group
                            for ic in range(cg):
                                xv = int(x[0, iy, ix, base + ic]) - in_zp
                                acc += int(w[oc, fy, fx, ic]) * xv
                if b is not None:
                    acc += int(b[oc])
                v = int(
                    mbqm(np.array([acc]), params.mult[oc : oc + 1], params.shift[oc : oc + 1])[0]
                )
                out[0, oy, ox, oc] = min(max(v + params.out_zp, params.act_min), params.act_max)
    return out.astype(np.int8)


def _loop_avg(graph: Graph, x: np.ndarray) -> np.ndarray:
    a = graph.nodes[0].attrs
    _, h, wd, c = x.shape
    _, ho, wo, _ = graph.tensor("y").shape
    ph = pad_before(a["padding"], h, a["filter_h"], a["stride_h"])
    pw = pad_before(a["padding"], wd, a["filter_w"], a["stride_w"])
    params = get_kernel("AVERAGE_POOL_2D").prepare(graph.nodes[0], graph)
    out = np.zeros((1, ho, wo, c), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for ch in range(c):
                vals = [
                    int(x[0, iy, ix, ch])
                    for iy in range(
                        oy * a["stride_h"] - ph, oy * a["stride_h"] - ph + a["filter_h"]
                    )
                    if 0 <= iy < h
                    for ix in range(
                        ox * a["stride_w"] - pw, ox * a["stride_w"] - pw + a["filter_w"]
                    )
                    if 0 <= ix < wd
                ]
                s, n = sum(vals), len(vals)
                q = (abs(s) + n // 2) // n  # C: (s +- n/2) / n truncates toward zero
                v = q if s > 0 else -q
                out[0, oy, ox, ch] = min(max(v, params.act_min), params.act_max)
    return out.astype(np.int8)


LOOP_CASES = [
    c for c in CASES if c[0].startswith(("conv_", "dw_", "avg_")) and c[0] != "conv_wide_channels"
]


@pytest.mark.parametrize("case", LOOP_CASES, ids=[c[0] for c in LOOP_CASES])
def test_matches_reference_loops(case):
    graph, inputs = case[1]()
    ours = harness.run_reference(graph, inputs)[0]
    op = graph.nodes[0].op
    if op == "AVERAGE_POOL_2D":
        want = _loop_avg(graph, inputs[0])
    else:
        want = _loop_conv(graph, inputs[0], depthwise=op == "DEPTHWISE_CONV_2D")
    np.testing.assert_array_equal(ours, want)
    # A case whose outputs all saturate would prove little.
    assert len(np.unique(ours)) > 10 or op == "AVERAGE_POOL_2D"


def test_same_padding_puts_the_odd_pixel_last():
    """8 wide, 3 tap, stride 2: TFLite pads 0 before and 1 after (not 1 and 0)."""
    graph, (x,) = pool_case(MAX, (1, 1, 8, 1), (1, 3), (1, 2), "SAME")()
    x = np.arange(8, dtype=np.int8).reshape(1, 1, 8, 1)
    y = Evaluator(graph).run([x])[0]
    assert y.ravel().tolist() == [2, 4, 6, 7]


# -- float semantics against onnxruntime ---------------------------------------------------


def _ort(node_type: str, attrs: dict, x: np.ndarray, consts: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    names = [f"c{i}" for i in range(len(consts))]
    node = helper.make_node(node_type, ["x", *names], ["y"], **attrs)
    g = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(c, n) for c, n in zip(consts, names, strict=True)],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _onnx_pads(padding, hw, k, s, d):
    pads_b, pads_e = [], []
    for size, kk, ss, dd in zip(hw, k, s, d, strict=True):
        o = out_size(padding, size, kk, ss, dd)
        before = pad_before(padding, size, kk, ss, dd)
        total = max((o - 1) * ss + (kk - 1) * dd + 1 - size, 0) if padding == "SAME" else 0
        pads_b.append(before)
        pads_e.append(total - before)
    return pads_b + pads_e


def _float_graph(op, x_shape, y_shape, consts, attrs):
    ins = [Tensor("x", x_shape)] + [
        Tensor(f"c{i}", c.shape, "float32", c) for i, c in enumerate(consts)
    ]
    return single_op_graph(op, ins, [Tensor("y", y_shape)], attrs)


FLOAT_CONV = [  # (x_shape, co, k, stride, dilation, padding, activation)
    ((1, 9, 8, 3), 5, (3, 3), (2, 2), (1, 1), "SAME", "RELU6"),
    ((1, 10, 10, 4), 6, (3, 2), (1, 2), (2, 1), "SAME", "NONE"),
    ((1, 7, 9, 2), 3, (3, 3), (2, 1), (1, 1), "VALID", "RELU"),
]


@pytest.mark.parametrize("spec", FLOAT_CONV)
def test_conv_float_matches_onnxruntime(spec):
    x_shape, co, k, s, d, padding, act = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((co, *k, x_shape[3])).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    ho = out_size(padding, x_shape[1], k[0], s[0], d[0])
    wo = out_size(padding, x_shape[2], k[1], s[1], d[1])
    g = _float_graph(
        "CONV_2D",
        x_shape,
        (1, ho, wo, co),
        [w, b],
        dict(
            stride_h=s[0],
            stride_w=s[1],
            dilation_h=d[0],
            dilation_w=d[1],
            padding=padding,
            activation=act,
        ),
    )
    ours = Evaluator(g).run([x])[0]
    ref = _ort(
        "Conv",
        dict(strides=list(s), dilations=list(d), pads=_onnx_pads(padding, x_shape[1:3], k, s, d)),
        x.transpose(0, 3, 1, 2),
        [w.transpose(0, 3, 1, 2).copy(), b],
    )
    ref = {"RELU": np.maximum(ref, 0), "RELU6": np.clip(ref, 0, 6)}.get(act, ref)
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        ((1, 9, 9, 3), 2, (3, 3), (2, 2), (1, 1), "SAME"),
        ((1, 10, 8, 4), 1, (3, 3), (1, 1), (2, 2), "VALID"),
    ],
)
def test_depthwise_float_matches_onnxruntime(spec):
    x_shape, dm, k, s, d, padding = spec
    ci = x_shape[3]
    co = ci * dm
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((1, *k, co)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    ho = out_size(padding, x_shape[1], k[0], s[0], d[0])
    wo = out_size(padding, x_shape[2], k[1], s[1], d[1])
    g = _float_graph(
        "DEPTHWISE_CONV_2D",
        x_shape,
        (1, ho, wo, co),
        [w, b],
        dict(
            stride_h=s[0],
            stride_w=s[1],
            dilation_h=d[0],
            dilation_w=d[1],
            padding=padding,
            activation="NONE",
            depth_multiplier=dm,
        ),
    )
    ours = Evaluator(g).run([x])[0]
    w_onnx = w[0].transpose(2, 0, 1)[:, None].copy()  # [Co, 1, kh, kw], group = Ci
    ref = _ort(
        "Conv",
        dict(
            strides=list(s),
            dilations=list(d),
            group=ci,
            pads=_onnx_pads(padding, x_shape[1:3], k, s, d),
        ),
        x.transpose(0, 3, 1, 2),
        [w_onnx, b],
    )
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_fully_connected_float_matches_onnxruntime():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 37)).astype(np.float32)
    w = rng.standard_normal((11, 37)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    g = _float_graph("FULLY_CONNECTED", (1, 37), (1, 11), [w, b], dict(activation="RELU"))
    ours = Evaluator(g).run([x])[0]
    ref = np.maximum(_ort("Gemm", dict(transB=1), x, [w, b]), 0)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,onnx_op", [(AVG, "AveragePool"), (MAX, "MaxPool")])
@pytest.mark.parametrize(
    "spec",
    [
        ((1, 7, 7, 3), (3, 3), (1, 1), "SAME"),
        ((1, 8, 6, 2), (3, 3), (2, 2), "SAME"),
        ((1, 9, 9, 2), (2, 3), (2, 1), "VALID"),
    ],
)
def test_pool_float_matches_onnxruntime(op, onnx_op, spec):
    x_shape, f, s, padding = spec
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    ho = out_size(padding, x_shape[1], f[0], s[0])
    wo = out_size(padding, x_shape[2], f[1], s[1])
    g = _float_graph(
        op,
        x_shape,
        (1, ho, wo, x_shape[3]),
        [],
        dict(
            filter_h=f[0],
            filter_w=f[1],
            stride_h=s[0],
            stride_w=s[1],
            padding=padding,
            activation="NONE",
        ),
    )
    ours = Evaluator(g).run([x])[0]
    attrs = dict(
        kernel_shape=list(f), strides=list(s), pads=_onnx_pads(padding, x_shape[1:3], f, s, (1, 1))
    )
    if onnx_op == "AveragePool":
        attrs["count_include_pad"] = 0
    ref = _ort(onnx_op, attrs, x.transpose(0, 3, 1, 2), [])
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
