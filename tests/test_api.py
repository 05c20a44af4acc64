"""Library API: quantize_onnx / save_tflite / evaluate / verify / inspect."""

from __future__ import annotations

import os
import stat

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models as tm
from conftest import SHARED

from microquant import api
from microquant.errors import MicroquantError
from microquant.report.evaluate import ModelRunner


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    model = tm.tiny_onnx(d / "tiny.onnx")
    calib = tm.calib_npz(d / "calib.npz", n=24)
    data = tm.calib_npz(d / "data.npz", n=20, seed=3, labels=True)
    graph = api.quantize_onnx(model, calib, progress=False)
    tflite = d / "tiny.tflite"
    api.save_tflite(graph, tflite)
    return {"dir": d, "model": model, "calib": calib, "data": data, "graph": graph,
            "tflite": tflite}


def test_quantize_onnx_is_full_integer(tiny):
    g = tiny["graph"]
    acts = [g.tensor(n) for node in g.nodes for n in node.outputs]
    assert all(t.dtype == "int8" for t in acts)
    assert all(t.quant is not None for t in acts)
    with pytest.raises(MicroquantError, match="unknown calibration"):
        api.quantize_onnx(tiny["model"], tiny["calib"], calibration="median")


def test_save_tflite_atomic(tiny, tmp_path):
    out = tmp_path / "m.tflite"
    size = api.save_tflite(tiny["graph"], out)
    assert size == out.stat().st_size and out.read_bytes()[4:8] == b"TFL3"
    assert os.listdir(tmp_path) == ["m.tflite"]  # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    with pytest.raises(MicroquantError, match="directory does not exist"):
        api.save_tflite(tiny["graph"], tmp_path / "missing" / "m.tflite")
    with pytest.raises(MicroquantError, match="is a directory"):
        api.save_tflite(tiny["graph"], tmp_path)


def test_evaluate_ort_matches_numpy_softmax(tiny):
    """ORT runtime output equals a direct onnxruntime session; labels give accuracy."""
    r = api.evaluate(tiny["model"], tiny["data"], runtime="ort")
    with np.load(tiny["data"]) as z:
        x, y = z["x"], z["y"]
    sess = ort.InferenceSession(str(tiny["model"]), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {tm.INPUT: x})[0]
    assert r["samples"] == 20 and r["format"] == "onnx"
    assert r["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    assert r["outputs"][0]["mean"] == pytest.approx(float(probs.mean()), abs=1e-6)


def test_reference_runtime_on_onnx_runs_lowered_float_graph(tiny):
    """Our float lowering (NHWC, fused activations) reproduces ONNX Runtime."""
    with np.load(tiny["data"]) as z:
        x = z["x"]
    a = ModelRunner(tiny["model"], "ort").run_dataset({tm.INPUT: x})[0]
    b = ModelRunner(tiny["model"], "reference").run_dataset({tm.INPUT: x})[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_evaluate_tflite_runtimes_agree(tiny):
    """TFLM, LiteRT reference kernels and our runtime give identical dequantized outputs."""
    res = {rt: api.evaluate(tiny["tflite"], tiny["data"], runtime=rt)
           for rt in ("tflm", "litert", "reference")}
    assert res["tflm"]["outputs"] == res["reference"]["outputs"]
    assert res["tflm"]["accuracy"] == res["reference"]["accuracy"]
    assert abs(res["litert"]["outputs"][0]["mean"] - res["tflm"]["outputs"][0]["mean"]) < 1e-2
    assert api.evaluate(tiny["tflite"], tiny["data"])["runtime"] == "tflm"  # default


def test_int8_input_quantized_with_model_params(tiny):
    """Float data fed to an int8 model equals feeding the hand-quantized int8 data to TFLM."""
    from microquant.backends.tflm import run_tflm

    g = tiny["graph"]
    q = g.tensor(g.inputs[0]).quant
    x = tm.samples(1, seed=9)[0]
    xq = np.clip(np.floor(x / q.scale[0] + 0.5) + q.zero_point[0], -128, 127).astype(np.int8)
    direct = run_tflm(tiny["tflite"].read_bytes(), [xq[None]])[0]
    qo = g.tensor(g.outputs[0]).quant
    expect = (direct.astype(np.float32) - qo.zero_point[0]) * qo.scale[0]
    got = ModelRunner(tiny["tflite"], "tflm").run([x])[0]
    np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_verify_reports(tiny):
    r = api.verify(tiny["tflite"], random=5, seed=1)
    assert r["total"] == 5 and r["bit_exact"] == 5 and r["max_abs_diff"] == 0
    assert r["outputs"][0]["name"] == tiny["graph"].outputs[0]
    r = api.verify(tiny["tflite"], data_path=tiny["data"])
    assert r["total"] == 20 and r["bit_exact"] == 20
    with pytest.raises(MicroquantError, match="needs a .tflite"):
        api.verify(tiny["model"])
    with pytest.raises(MicroquantError, match="not both"):
        api.verify(tiny["tflite"], data_path=tiny["data"], random=3)


def test_verify_detects_a_mismatch(tiny, monkeypatch):
    """A wrong kernel in our runtime must show up as non-bit-exact samples."""
    from microquant.runtime import evaluator

    real_run = evaluator.Evaluator.run

    def off_by_one(self, feeds):
        outs = real_run(self, feeds)
        return [np.clip(o.astype(np.int16) + 1, -128, 127).astype(o.dtype) for o in outs]

    monkeypatch.setattr(evaluator.Evaluator, "run", off_by_one)
    r = api.verify(tiny["tflite"], random=4)
    assert r["bit_exact"] < r["total"] and r["max_abs_diff"] == 1


def test_inspect_rows(tiny):
    rows = api.inspect(tiny["tflite"])
    ops = [r["op"] for r in rows]
    assert "CONV_2D" in ops and "MAX_POOL_2D" in ops and "FULLY_CONNECTED" in ops
    pool = rows[ops.index("MAX_POOL_2D")]
    assert pool["params"]["filter"] == "2x2" and pool["params"]["stride"] == "2x2"
    assert pool["input_quant"][0] == pool["output_quant"][0]  # TFLite: pool keeps its scale


KWS = SHARED / "models" / "mlperf_tiny" / "kws_dscnn.onnx"
KWS_DATA = SHARED / "data" / "kws01_calib.npz"


@pytest.mark.skipif(not KWS_DATA.is_file(), reason="needs /work/shared")
def test_kws_accuracy_close_to_float(tmp_path):
    """Real model: int8 (TFLM) top-1 stays within 3 points of float (ORT) on held-out data."""
    with np.load(KWS_DATA) as z:
        x, y = z["x"], z["y"]
    np.savez(tmp_path / "cal.npz", x=x[:100])
    np.savez(tmp_path / "ev.npz", x=x[100:], y=y[100:])
    api.save_tflite(api.quantize_onnx(KWS, tmp_path / "cal.npz", progress=False),
                    tmp_path / "kws.tflite")
    f = api.evaluate(KWS, tmp_path / "ev.npz", runtime="ort")["accuracy"]
    q = api.evaluate(tmp_path / "kws.tflite", tmp_path / "ev.npz", runtime="tflm")["accuracy"]
    assert q >= f - 0.03


def test_ort_eval_needs_no_conversion(tiny, tmp_path):
    """A float model microquant cannot convert (Erf) still gets an ONNX Runtime baseline."""
    model = tm.tiny_onnx(tmp_path / "erf.onnx", extra_op="Erf")
    r = api.evaluate(model, tiny["data"], runtime="ort")
    assert r["samples"] == 20 and 0.0 <= r["accuracy"] <= 1.0
    with pytest.raises(MicroquantError, match="Erf"):
        api.evaluate(model, tiny["data"], runtime="reference")
