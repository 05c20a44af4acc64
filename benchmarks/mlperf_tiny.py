"""MLPerf Tiny: microquant vs the TFLite converter's reference int8 and ONNX Runtime.

Measures, side by side in one run (needs ../shared):
  1. every model quantizes; reference runtime vs TFLite Micro bit-exact over >= 100 inputs;
  2. file size of our .tflite (default per-channel weights, and with --per-tensor weights as
     the TFLite converter uses for FULLY_CONNECTED) vs MLCommons' reference int8 .tflite;
  3. keyword spotting top-1 on held-out data (2-fold: calibrate on one half of
     kws01_calib.npz, evaluate on the other, then swap) - float (ONNX Runtime), ours (TFLite
     Micro), MLCommons' reference int8 (TFLite Micro), ONNX Runtime quantize_static (default
     per-channel QDQ, run in ONNX Runtime);
  4. wall time to quantize VWW with 200 calibration samples: microquant vs quantize_static.

Only KWS has real data in ../shared; the other models are calibrated and checked on inputs drawn
from their documented input domain (pixels 0-255 for ResNet-8, 0-1 for VWW, N(0,1) features for the
autoencoder), which is enough for bit-exactness and size, not for accuracy.

    python benchmarks/mlperf_tiny.py [--shared ../shared] [--out out/bench] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from microquant import api
from microquant.report.table import format_table

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "ic_resnet8": ("pixels", (32, 32, 3)),
    "kws_dscnn": ("kws", (49, 10, 1)),
    "vww_mobilenetv1": ("unit", (96, 96, 3)),
    "ad_autoencoder": ("normal", (640,)),
}


def synthetic(kind: str, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "pixels":
        return rng.integers(0, 256, size=(n, *shape)).astype(np.float32)
    if kind == "unit":
        return rng.random((n, *shape), dtype=np.float32)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def input_name(onnx_path: Path) -> str:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def quantize_to(onnx_path: Path, calib: Path, out: Path,
                calibration: str = api.DEFAULT_CALIBRATION,
                per_channel: bool = True) -> tuple[Path, float]:
    t0 = time.perf_counter()
    graph = api.quantize_onnx(onnx_path, calib, calibration=calibration, progress=False,
                              per_channel=per_channel)
    api.save_tflite(graph, out)
    return out, time.perf_counter() - t0


def accuracy(model: Path, data: Path, runtime: str) -> float:
    return api.evaluate(model, data, runtime)["accuracy"]


def ort_quantize_static(onnx_path: Path, xs: np.ndarray, out: Path) -> float:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = input_name(onnx_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{name: x[None]} for x in xs])

        def get_next(self):
            return next(self.it, None)

    t0 = time.perf_counter()
    quantize_static(str(onnx_path), str(out), Reader(), per_channel=True)
    return time.perf_counter() - t0


def bench_models(shared: Path, out: Path, n_verify: int) -> list[dict]:
    rows = []
    kws = np.load(shared / "data" / "kws01_calib.npz")
    for model, (kind, shape) in MODELS.items():
        onnx_path = shared / "models" / "mlperf_tiny" / f"{model}.onnx"
        ref = shared / "models" / "mlperf_tiny" / f"{model}.reference_int8.tflite"
        name = input_name(onnx_path)
        calib_x = kws["x"] if kind == "kws" else synthetic(kind, shape, 200, seed=0)
        calib = save_npz(out / f"{model}_calib.npz", **{name: calib_x})
        tfl, secs = quantize_to(onnx_path, calib, out / f"{model}.tflite")
        verify_x = kws["x"] if kind == "kws" else synthetic(kind, shape, n_verify, seed=1)
        vdata = save_npz(out / f"{model}_verify.npz", **{name: verify_x})
        v = api.verify(tfl, data_path=vdata)
        # The TFLite converter's choice for FULLY_CONNECTED: one weight scale per tensor.
        tfl_pt, _ = quantize_to(onnx_path, calib, out / f"{model}_per_tensor.tflite",
                                per_channel=False)
        v_pt = api.verify(tfl_pt, data_path=vdata)
        rows.append({
            "model": model,
            "quantize_s": round(secs, 2),
            "bit_exact": v["bit_exact"],
            "total": v["total"],
            "max_abs_diff": v["max_abs_diff"],
            "size_B": tfl.stat().st_size,
            "reference_size_B": ref.stat().st_size,
            "size_ok": tfl.stat().st_size <= ref.stat().st_size,
            "per_tensor_size_B": tfl_pt.stat().st_size,
            "per_tensor_bit_exact": f"{v_pt['bit_exact']}/{v_pt['total']}",
        })
    return rows


def bench_kws_accuracy(shared: Path, out: Path) -> dict:
    d = np.load(shared / "data" / "kws01_calib.npz")
    x, y = d["x"], d["y"]
    onnx_path = shared / "models" / "mlperf_tiny" / "kws_dscnn.onnx"
    ref = shared / "models" / "mlperf_tiny" / "kws_dscnn.reference_int8.tflite"
    name = input_name(onnx_path)
    half = len(x) // 2
    folds = [(np.arange(half), np.arange(half, len(x))), (np.arange(half, len(x)), np.arange(half))]
    hits = {"float (ONNX Runtime)": 0, "microquant int8 (TFLite Micro)": 0,
            "TFLite converter int8 (TFLite Micro)": 0, "ORT quantize_static int8 (ORT)": 0}
    total = 0
    for k, (cal, held) in enumerate(folds):
        calib = save_npz(out / f"kws_fold{k}.npz", **{name: x[cal]})
        tfl, _ = quantize_to(onnx_path, calib, out / f"kws_fold{k}.tflite")
        ort_q = out / f"kws_fold{k}_ort.onnx"
        ort_quantize_static(onnx_path, x[cal], ort_q)
        data = save_npz(out / f"kws_fold{k}_heldout.npz", x=x[held], y=y[held])
        for label, model, runtime in [
            ("float (ONNX Runtime)", onnx_path, "ort"),
            ("microquant int8 (TFLite Micro)", tfl, "tflm"),
            ("TFLite converter int8 (TFLite Micro)", ref, "tflm"),
            ("ORT quantize_static int8 (ORT)", ort_q, "ort"),
        ]:
            hits[label] += round(accuracy(model, data, runtime) * len(held))
        total += len(held)
    return {k: round(100.0 * v / total, 2) for k, v in hits.items()} | {"held_out_samples": total}


def bench_vww_speed(shared: Path, out: Path, repeats: int = 5) -> dict:
    onnx_path = shared / "models" / "mlperf_tiny" / "vww_mobilenetv1.onnx"
    xs = synthetic("unit", (96, 96, 3), 200, seed=0)
    calib = save_npz(out / "vww_speed_calib.npz", **{input_name(onnx_path): xs})
    ours, theirs = [], []
    quantize_to(onnx_path, calib, out / "vww_speed.tflite")  # warm-up: imports, caches
    ort_quantize_static(onnx_path, xs, out / "vww_speed_ort.onnx")
    for _ in range(repeats):  # interleaved so both see the same machine state
        ours.append(quantize_to(onnx_path, calib, out / "vww_speed.tflite")[1])
        theirs.append(ort_quantize_static(onnx_path, xs, out / "vww_speed_ort.onnx"))
    m, o = float(np.median(ours)), float(np.median(theirs))
    return {"microquant_s": round(m, 3), "ort_quantize_static_s": round(o, 3),
            "ratio": round(m / o, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--n-verify", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # quiet ORT's quantizer advice
    out = args.out or Path(tempfile.mkdtemp(prefix="mq-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    rows = bench_models(args.shared, out, args.n_verify)
    print(format_table(rows))
    acc = bench_kws_accuracy(args.shared, out)
    print("\nKeyword spotting top-1 on held-out kws01 (2-fold), %:")
    print(format_table([{"model": k, "top1": v} for k, v in acc.items()]))
    speed = bench_vww_speed(args.shared, out)
    print("\nQuantize VWW, 200 calibration samples, median of 5 after a warm-up (s):")
    print(format_table([speed]))
    if args.json:
        print(json.dumps({"models": rows, "kws_accuracy": acc, "vww_speed": speed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
