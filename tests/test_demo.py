"""The built-in digits demo: NumPy training is correct, the job runs end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from microquant.cli import main
from microquant.demo.train import INPUT_NAME, TinyCNN, export_onnx, load_digits_split, train


def test_gradients_match_finite_differences():
    data = load_digits_split(seed=0)
    model = TinyCNN.init(seed=3)
    model.params = {k: v.astype(np.float64) + 0.01 for k, v in model.params.items()}
    x, y = data.x_train[:4].astype(np.float64), data.y_train[:4]
    _, grads = model.gradients(x, y)
    rng = np.random.default_rng(0)
    for name, p in model.params.items():
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in p.shape)
            old = p[idx]
            p[idx] = old + 1e-6
            up, _ = model.gradients(x, y)
            p[idx] = old - 1e-6
            down, _ = model.gradients(x, y)
            p[idx] = old
            assert grads[name][idx] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-7)


def test_onnx_export_matches_numpy(tmp_path):
    data = load_digits_split(seed=0)
    model = train(data, epochs=1)
    path = export_onnx(model, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_NAME: data.x_test})[0]
    np.testing.assert_allclose(got, model.predict_proba(data.x_test), atol=1e-5)


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["test_samples"] == 360 and r["epochs"] == 4
    assert r["float"]["accuracy"] >= 0.93
    assert r["int8"]["accuracy"] >= r["float"]["accuracy"] - 0.02
    assert r["int8"]["agreement"] >= 0.97
    assert r["bit_exact"] == r["bit_exact_total"] == 360
    assert r["onnx_vs_numpy_max_abs_diff"] < 1e-5
    assert r["int8"]["bytes"] < r["float"]["bytes"]
    for name in ("digits_cnn.onnx", "digits_cnn_int8.tflite", "model_data.cc", "model_data.h"):
        assert (out / name).is_file()
    # The human-readable variant prints the comparison table.
    assert main(["demo", "--out", str(out), "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "float (onnxruntime)" in text and "int8 (tflm)" in text and "agreement" in text
