"""Every scheme on the four MLPerf Tiny models and the built-in digits demo, in one run.

For each model, ``microquant compare`` quantizes the float ONNX model with every scheme and
runs each result in its natural runtime (TFLite Micro for the ``.tflite`` schemes, ONNX
Runtime for the others), then this script checks the issue's size bars on the files:
int8 <= 0.26x, fp16 <= 0.52x, packed w4 <= 0.14x, w2 <= 0.08x the float file (on the VWW and
autoencoder models, whose weights dominate). ``int8`` is listed twice where it matters: the
default per-channel ``.tflite`` and ``--per-tensor`` weights (the TFLite converter's choice for
FULLY_CONNECTED), because per-channel parameters alone can exceed the 0.26x budget.

Data: KWS uses the real ``kws01_calib.npz`` (calibrate on the first half, compare on the
second, which has labels); the other MLPerf models only have synthetic inputs from their input
domain (agreement and SQNR against float are meaningful, accuracy is not); digits uses the
demo's own train/test split.

    python benchmarks/compare_schemes.py [--shared ../shared] [--samples 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from mlperf_tiny import synthetic  # same input domains as the main MLPerf Tiny benchmark

from microquant import api
from microquant.report.compare import compare_schemes
from microquant.report.table import format_table

ROOT = Path(__file__).resolve().parents[1]
SCHEMES = ["int8", "int16x8", "w4a8", "fp16", "dynamic", "w4", "w2", "w1"]
SIZE_BARS = {"int8": 0.26, "fp16": 0.52, "w4": 0.14, "w2": 0.08}
SIZE_BAR_MODELS = ("vww_mobilenetv1", "ad_autoencoder")
DOMAIN = {"ic_resnet8": "pixels", "vww_mobilenetv1": "unit", "ad_autoencoder": "normal"}


def mlperf_inputs(shared: Path, model: str, work: Path, samples: int) -> tuple[Path, Path, Path]:
    import onnx

    onnx_path = shared / "models" / "mlperf_tiny" / f"{model}.onnx"
    inp = onnx.load(str(onnx_path), load_external_data=False).graph.input[0]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    if model == "kws_dscnn":
        d = np.load(shared / "data" / "kws01_calib.npz")
        half = len(d["x"]) // 2
        np.savez(work / f"{model}_calib.npz", x=d["x"][:half])
        np.savez(work / f"{model}_data.npz", x=d["x"][half:], y=d["y"][half:])
    else:
        np.savez(work / f"{model}_calib.npz", x=synthetic(DOMAIN[model], shape, 200, 0))
        np.savez(work / f"{model}_data.npz", x=synthetic(DOMAIN[model], shape, samples, 1))
    return onnx_path, work / f"{model}_calib.npz", work / f"{model}_data.npz"


def per_tensor_row(onnx_path: Path, calib: Path, data: Path, work: Path,
                   float_bytes: int) -> dict:
    out = work / f"{onnx_path.stem}_int8_per_tensor.tflite"
    api.save_tflite(api.quantize_onnx(onnx_path, calib, progress=False, per_channel=False), out)
    v = api.verify(out, data_path=data)
    size = out.stat().st_size
    return {"scheme": "int8 --per-tensor", "runtime": "tflm", "status": "ok", "bytes": size,
            "ratio": round(size / float_bytes, 3),
            "bit_exact": f"{v['bit_exact']}/{v['total']}"}


def summarize(model: str, result: dict) -> list[dict]:
    rows = []
    for r in result["rows"]:
        ratio = None if r["bytes"] is None else round(r["bytes"] / result["float_bytes"], 3)
        rows.append({
            "scheme": r["scheme"], "runtime": r["runtime"], "status": r["status"],
            "bytes": r["bytes"], "ratio": ratio,
            "accuracy": None if r["accuracy"] is None else round(100 * r["accuracy"], 1),
            "agreement": None if r["agreement"] is None else round(100 * r["agreement"], 1),
            "sqnr_db": None if r["sqnr_db"] is None else round(r["sqnr_db"], 1),
            "latency_ms": None if r["latency_ms"] is None else round(r["latency_ms"], 2),
        })
    return rows


def size_checks(model: str, rows: list[dict]) -> list[dict]:
    checks = []
    if model not in SIZE_BAR_MODELS:
        return checks
    for scheme, bar in SIZE_BARS.items():
        for r in rows:
            if r["scheme"].split()[0] == scheme and r["ratio"] is not None:
                checks.append({"model": model, "scheme": r["scheme"], "ratio": r["ratio"],
                               "bar": bar, "ok": r["ratio"] <= bar})
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--samples", type=int, default=50,
                    help="synthetic inputs per MLPerf model (KWS uses its 100 held-out samples)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mq-compare-bench-"))
    report: dict = {"models": {}, "size_checks": []}

    from microquant.demo.run import run_demo

    demo = run_demo(work / "digits")
    cases = [("digits_demo", Path(demo["out_dir"]) / "digits_cnn.onnx",
              Path(demo["out_dir"]) / "digits_calib.npz",
              Path(demo["out_dir"]) / "digits_test.npz")]
    for model in ("ic_resnet8", "kws_dscnn", "vww_mobilenetv1", "ad_autoencoder"):
        cases.append((model, *mlperf_inputs(args.shared, model, work, args.samples)))

    for name, onnx_path, calib, data in cases:
        result = compare_schemes(onnx_path, calib, data, SCHEMES)
        rows = summarize(name, result)
        rows.append(per_tensor_row(onnx_path, calib, data, work, result["float_bytes"]))
        print(f"\n{name} (float file {result['float_bytes']} B, {result['samples']} samples)")
        print(format_table(rows))
        report["models"][name] = rows
        report["size_checks"] += size_checks(name, rows)

    print("\nSize bars (file / float file):")
    print(format_table(report["size_checks"]))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
