"""Per-layer error analysis: a planted outlier is named, its fix is applied and measured.

The test network (built here with onnx.helper) classifies synthetic 8x8 patterns:
Conv3x3(1->8)+Relu -> Conv3x3(8->8)+Relu -> MaxPool2 -> Flatten -> Gemm(128->4), the Gemm
fitted by least squares on the float features. Two plants keep the float function intact:

* ``dead``: conv1's channel 7 never fires (bias -50), and conv2's weights reading that
  channel are 400x the largest normal weight. Float output unchanged (they multiply 0);
  in int8 every conv2 output channel's scale is set by the outliers and its normal
  weights round to 0 - a weight problem no int8 setting fixes -> "float".
* ``wide``: conv1's output channel 0 is scaled x100 and conv2's weights reading it /100:
  conv1's per-tensor output range is 100x too wide for the other channels, which conv2
  reads almost as zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from microquant.api import quantize_onnx
from microquant.errors import MicroquantError
from microquant.report.layers import (
    POOR_SQNR_DB,
    analyze_graphs,
    analyze_layers,
    compare_outputs,
    float_fallback,
    format_layers_text,
    layers_cli,
    run_dataset,
    sqnr_db,
    suggest_fix,
)
from microquant.report.models import load_onnx_lowered
from microquant.runtime.evaluator import Evaluator

CLASSES = 4
SHAPE = (1, 8, 8)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    protos = np.random.default_rng(99).uniform(-1, 1, (CLASSES, *SHAPE))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = protos[y] + 0.35 * rng.standard_normal((n, *SHAPE))
    return x.astype(np.float32), y


def _model(nodes, inits, out: str, out_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "layers_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *SHAPE])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def build_net(path: Path, plant: str | None) -> Path:
    import onnxruntime as ort

    rng = np.random.default_rng(5)
    w1 = (rng.standard_normal((8, 1, 3, 3)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((8, 8, 3, 3)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    if plant == "dead":
        b1[7] = -50.0  # never fires on inputs of magnitude ~1
        w2[:, 7] = 400 * np.abs(w2).max() * rng.choice([-1.0, 1.0], size=(8, 3, 3))
    elif plant == "wide":
        w1[0] *= 100.0
        b1[0] *= 100.0
        w2[:, 0] /= 100.0
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node(
            "MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p"], ["flat"], name="flatten", axis=1),
    ]
    # Fit the classifier on the float features (ridge least squares onto one-hot labels).
    sess = ort.InferenceSession(_model(nodes, inits, "flat", [1, 128]).SerializeToString())
    x, y = _data(256, seed=1)
    feats = np.concatenate([sess.run(None, {"x": s[None]})[0] for s in x])
    f1 = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    target = np.eye(CLASSES)[y] * 2 - 1
    sol = np.linalg.solve(f1.T @ f1 + 1e-2 * np.eye(f1.shape[1]), f1.T @ target)
    inits["wf"] = sol[:-1].T.astype(np.float32)
    inits["bf"] = sol[-1].astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1))
    onnx.save(_model(nodes, inits, "logits", [1, CLASSES]), str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("layers")
    x, _ = _data(64, seed=2)
    np.savez(d / "calib.npz", x=x)
    out = {"calib": d / "calib.npz"}
    for plant in ("clean", "dead", "wide"):
        out[plant] = build_net(d / f"{plant}.onnx", None if plant == "clean" else plant)
    return out


def _graphs(model: Path, calib: Path):
    return load_onnx_lowered(model)[1], quantize_onnx(model, calib, "minmax", progress=False)


def _eval_set() -> dict[str, np.ndarray]:
    return {"x": _data(200, seed=3)[0][:, None]}


def test_sqnr_db():
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert sqnr_db(0.0, 1.0) == -120.0 and sqnr_db(1.0, 0.0) == 120.0


def test_clean_net_needs_no_fix(files):
    rep = analyze_layers(files["clean"], files["calib"])
    assert rep.suggestions == []
    assert rep.summary["int8"]["top1_agreement"] >= 0.95
    assert all(r["sqnr_isolated_db"] > POOR_SQNR_DB for r in rep.rows)
    assert rep.rows[1]["weight_outliers"] == 0


def test_dead_channel_outlier_named_and_float_fix_recovers(files):
    rep = analyze_layers(files["dead"], files["calib"])
    assert rep.worst[0] == "conv2"
    conv2 = rep.row("conv2")
    assert conv2["sqnr_isolated_db"] < 10 < POOR_SQNR_DB
    assert conv2["weight_outliers"] == 8 * 9  # the planted input channel, every output row
    assert conv2["weight_channel_spread"] == pytest.approx(1.0, abs=0.2)  # all rows alike
    [s] = rep.suggestions
    assert (s["layer"], s["fix"]) == ("conv2", "float")
    # The analysis measured its own fix on the calibration samples ...
    assert rep.summary["int8"]["top1_agreement"] < 0.7
    assert rep.summary["float_fallback"]["top1_agreement"] >= 0.97
    # ... and it holds on unseen data: apply the fix here and measure again.
    lowered, quantized = _graphs(files["dead"], files["calib"])
    data = _eval_set()
    ref = run_dataset(lowered, data)
    before = compare_outputs(ref, run_dataset(quantized, data))
    fixed = float_fallback(quantized, lowered, [s["name"]])
    assert [n.op for n in fixed.nodes].count("DEQUANTIZE") == 1
    assert Evaluator(fixed).float_nodes.count(True) == 1
    after = compare_outputs(ref, run_dataset(fixed, data))
    assert before["top1_agreement"] < 0.7
    assert after["top1_agreement"] >= 0.97
    assert after["output_sqnr_db"] > before["output_sqnr_db"] + 20


def test_wide_range_is_input_bound_and_float_region_connects(files):
    """conv2 reads conv1's x100 channel through x1/100 weights: its error comes from its
    int8 input (and its tiny weights), so leaving conv2 alone in float cannot help - the
    int8 tensor between them is already coarse. Leaving both in float connects them in
    float and recovers the output."""
    rep = analyze_layers(files["wide"], files["calib"])
    assert rep.worst[0] == "conv2"
    sim = rep.row("conv2")["sim_sqnr_db"]
    assert sim["act8"] < POOR_SQNR_DB and rep.row("conv1")["act_max"] > 30
    lowered, quantized = _graphs(files["wide"], files["calib"])
    data = _eval_set()
    ref = run_dataset(lowered, data)
    alone = compare_outputs(ref, run_dataset(float_fallback(quantized, lowered, ["conv2"]), data))
    both_graph = float_fallback(quantized, lowered, ["conv1", "conv2"])
    ops = [n.op for n in both_graph.nodes]
    assert ops.count("DEQUANTIZE") == ops.count("QUANTIZE") == 1  # no int8 in between
    both = compare_outputs(ref, run_dataset(both_graph, data))
    assert alone["output_sqnr_db"] < POOR_SQNR_DB < both["output_sqnr_db"]


@pytest.mark.parametrize(
    "sim, scheme, fix",
    [
        (
            {"weights": 10.0, "weights_per_channel": 40.0, "act8": 40.0, "int16": 40.0},
            "per-tensor",
            "per-channel",
        ),
        (
            {"weights": 45.0, "weights_per_channel": 45.0, "act8": 15.0, "int16": 44.0},
            "per-channel",
            "int16-activations",
        ),
        ({"act8": 12.0, "int16": 60.0}, None, "int16-activations"),
        (
            {"weights": 5.0, "weights_per_channel": 5.0, "act8": 40.0, "int16": 5.0},
            "per-channel",
            "float",
        ),
    ],
)
def test_suggestion_rules(sim, scheme, fix):
    row = {
        "label": "l",
        "name": "n",
        "index": 0,
        "weight_scheme": scheme,
        "sqnr_isolated_db": min(sim.values()),
        "sim_sqnr_db": sim,
    }
    assert suggest_fix(row)["fix"] == fix
    assert suggest_fix({**row, "sqnr_isolated_db": POOR_SQNR_DB + 1}) is None


def test_per_tensor_weights_suggest_per_channel(files):
    """A per-tensor variant of the clean net's conv2 with one dead output channel (bias
    -1000) whose weights are 50x the others: the single weight scale follows the dead
    channel and the live channels round to ~0; per-channel scales would avoid that."""
    lowered, quantized = _graphs(files["clean"], files["calib"])
    low, q = lowered.copy(), quantized.copy()
    [i] = [k for k, n in enumerate(q.nodes) if n.name == "conv2"]
    lnode, node = low.nodes[i], q.nodes[i]
    w = np.array(low.tensor(lnode.inputs[1]).data)
    b = np.array(low.tensor(lnode.inputs[2]).data)
    w[0] *= 50.0
    b[0] = -1000.0
    low.tensor(lnode.inputs[1]).data, low.tensor(lnode.inputs[2]).data = w, b
    _per_tensor(q, node, w, b)
    rep = analyze_graphs(low, q, {"x": _data(32, seed=4)[0][:, None]})
    row = rep.row("conv2")
    assert row["weight_scheme"] == "per-tensor"
    assert row["weight_channel_spread"] > 20
    assert rep.worst[0] == "conv2"
    s = {x["layer"]: x for x in rep.suggestions}["conv2"]
    assert s["fix"] == "per-channel"
    assert row["sim_sqnr_db"]["weights_per_channel"] > row["sim_sqnr_db"]["weights"] + 20


def _per_tensor(g, node, w: np.ndarray, b: np.ndarray) -> None:
    """Quantize ``node``'s weights with one symmetric scale (bias scale s_in * s_w)."""
    from microquant.ir.graph import QuantParams
    from microquant.quant.primitives import round_half_away

    s_in = np.float32(g.tensor(node.inputs[0]).quant.scale[0])
    s_w = np.float32(np.abs(w).max() / 127)
    wt, bt = g.tensor(node.inputs[1]), g.tensor(node.inputs[2])
    wt.data = np.clip(round_half_away(w / s_w), -127, 127).astype(np.int8)
    wt.quant = QuantParams([s_w], [0], None)
    b_scale = np.float32(s_in * s_w)
    bt.data = round_half_away(b / b_scale).astype(np.int32)
    bt.quant = QuantParams([b_scale], [0], None)


def test_fallback_rejects_unknown_layer(files):
    lowered, quantized = _graphs(files["clean"], files["calib"])
    with pytest.raises(MicroquantError, match="no layer named 'nope'"):
        float_fallback(quantized, lowered, ["nope"])


def test_analysis_rejects_mismatched_graphs(files):
    lowered, quantized = _graphs(files["clean"], files["calib"])
    fixed = float_fallback(quantized, lowered, ["conv2"])
    with pytest.raises(MicroquantError, match="node for node"):
        analyze_graphs(lowered, fixed, _eval_set())


def test_layers_cli_writes_report(files, tmp_path):
    res = layers_cli(files["dead"], files["calib"], "minmax", tmp_path / "rep", n_samples=16)
    assert res["samples"] == 16 and res["worst"][0] == "conv2"
    assert [Path(p).read_bytes()[:4] for p in res["histograms"]] == [b"\x89PNG"]
    page = Path(res["html"]).read_text()
    assert page.count("<img ") == 2 and "conv2" in page
    text = format_layers_text(res)
    assert "conv2: float" in text and "float_fallback" in text
    import json

    json.dumps(res)  # --json must serialize
    plain = layers_cli(files["clean"], files["calib"], "minmax", None, n_samples=4)
    assert plain["html"] is None and plain["histograms"] == []


def test_layers_cli_user_errors(files, tmp_path):
    with pytest.raises(MicroquantError, match="n_samples"):
        analyze_layers(files["clean"], files["calib"], n_samples=0)
    with pytest.raises(MicroquantError, match="not found"):
        layers_cli(tmp_path / "missing.onnx", files["calib"])


SHARED = Path("/work/shared")


@pytest.mark.skipif(not (SHARED / "models").is_dir(), reason="needs /work/shared")
def test_kws_dscnn_analysis():
    rep = analyze_layers(
        SHARED / "models/mlperf_tiny/kws_dscnn.onnx", SHARED / "data/kws01_calib.npz", n_samples=20
    )
    assert len(rep.rows) == 13
    assert rep.summary["int8"]["top1_agreement"] >= 0.9
    # Every layer's isolated error is activation bound (weights alone stay > 40 dB).
    for r in rep.rows:
        if "weights" in r["sim_sqnr_db"]:
            assert r["sim_sqnr_db"]["weights"] > 40 > r["sqnr_isolated_db"]
