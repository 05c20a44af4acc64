"""The built-in end-to-end job: train, export, quantize, deploy-check a digits CNN.

Steps (all files land in ``out_dir``):

1. train :class:`~microquant.demo.train.TinyCNN` in NumPy on scikit-learn's digits;
2. export ``digits_cnn.onnx``, check it with ``onnx.checker`` and compare ONNX Runtime
   with the NumPy forward pass on the test set;
3. quantize with calibration on training samples -> ``digits_cnn_int8.tflite`` and the
   C array ``model_data.cc/.h``;
4. run the test set through ONNX Runtime (float) and TFLite Micro (int8): accuracy and
   top-1 agreement of int8 with float, plus a bit-exactness check of our reference
   runtime against TFLM on the whole test set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from microquant.demo.train import INPUT_NAME, export_onnx, load_digits_split, train
from microquant.errors import MicroquantError

DEFAULT_EPOCHS = 15
CALIB_SAMPLES = 300


def run_demo(out_dir: str | Path = "microquant_demo", epochs: int = DEFAULT_EPOCHS,
             seed: int = 0, calibration: str | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Run the whole job; returns the numbers the CLI prints (see module docstring)."""
    import onnxruntime as ort

    from microquant import api
    from microquant.export.c_array import write_c_array
    from microquant.report.evaluate import ModelRunner, top1

    calibration = calibration or api.DEFAULT_CALIBRATION
    if epochs < 1:
        raise MicroquantError(f"epochs must be at least 1, got {epochs}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroquantError(f"cannot create output directory {out}: {e.strerror}") from None

    data = load_digits_split(seed)
    t0 = time.perf_counter()
    model = train(data, epochs=epochs, seed=seed)
    train_seconds = time.perf_counter() - t0

    onnx_path = export_onnx(model, out / "digits_cnn.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    p_float = sess.run(None, {INPUT_NAME: data.x_test})[0]
    export_diff = float(np.abs(p_float - model.predict_proba(data.x_test)).max())

    calib_path = out / "digits_calib.npz"
    np.savez(calib_path, **{INPUT_NAME: data.x_train[:CALIB_SAMPLES]})
    test_path = out / "digits_test.npz"
    np.savez(test_path, **{INPUT_NAME: data.x_test, "y": data.y_test})

    t0 = time.perf_counter()
    graph = api.quantize_onnx(onnx_path, calib_path, calibration=calibration, progress=progress)
    tflite_path = out / "digits_cnn_int8.tflite"
    size = api.save_tflite(graph, tflite_path)
    quantize_seconds = time.perf_counter() - t0
    c_files = write_c_array(tflite_path.read_bytes(), out, name="model_data")

    runner = ModelRunner(tflite_path, "tflm")
    [p_int8] = runner.run_dataset({runner.input_names[0]: data.x_test})
    pred_f, pred_q = top1(p_float), top1(p_int8)
    check = api.verify(tflite_path, data_path=test_path)

    return {
        "out_dir": str(out),
        "epochs": epochs,
        "seed": seed,
        "train_samples": int(data.x_train.shape[0]),
        "test_samples": int(data.x_test.shape[0]),
        "train_seconds": round(train_seconds, 3),
        "quantize_seconds": round(quantize_seconds, 3),
        "calibration": calibration,
        "onnx_vs_numpy_max_abs_diff": export_diff,
        "float": {"file": str(onnx_path), "bytes": onnx_path.stat().st_size,
                  "runtime": "onnxruntime", "accuracy": float(np.mean(pred_f == data.y_test)),
                  "agreement": 1.0},
        "int8": {"file": str(tflite_path), "bytes": size, "runtime": "tflm",
                 "accuracy": float(np.mean(pred_q == data.y_test)),
                 "agreement": float(np.mean(pred_q == pred_f))},
        "bit_exact": check["bit_exact"],
        "bit_exact_total": check["total"],
        "c_array": [str(p) for p in _as_list(c_files)],
    }


def _as_list(files: Any) -> list[Any]:
    if files is None:
        return []
    if isinstance(files, str | Path):
        return [files]
    return list(files)
