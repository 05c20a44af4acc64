"""The ``quantize --report DIR`` page: what was written, how it behaves, layer by layer.

Sections: a summary (scheme, format, file sizes, compression), for a ``.tflite`` the
bit-exactness check of our reference runtime against TFLite Micro on random inputs
(:func:`microquant.api.verify`), the agreement with the float model on the calibration
samples (top-1 agreement and output SQNR, each model in its natural runtime) and the
per-layer table of ``inspect`` (the quantized ``.tflite``; the float model's layers for an
``.onnx`` output, whose quantized graph is ONNX Runtime's business).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

VERIFY_SAMPLES = 16


def _vs_float(result: Mapping[str, Any], calib: str | Path) -> list[dict[str, Any]]:
    """Top-1 agreement and output SQNR of the written model vs the float one on ``calib``."""
    from microquant.report.compare import _top1, output_sqnr_db, run_timed
    from microquant.report.evaluate import ModelRunner, load_dataset

    float_runner = ModelRunner(result["model"], "ort")
    data, _ = load_dataset(calib, float_runner.input_names, float_runner.input_shapes)
    n = next(iter(data.values())).shape[0]
    ref, _ = run_timed(float_runner, data, n)
    runtime = "tflm" if result["format"] == "tflite" else "ort"
    got, latency = run_timed(ModelRunner(result["output"], runtime), data, n)
    agree = float((_top1(ref) == _top1(got)).mean())
    return [{"samples": n, "runtime": runtime, "top-1 agreement %": round(100 * agree, 2),
             "output SQNR dB": round(output_sqnr_db(ref, got), 1),
             "ms/inference": round(1e3 * latency, 3)}]


def write_quantize_report(out_dir: str | Path, result: Mapping[str, Any],
                          calib: str | Path | None = None) -> Path:
    """Write ``out_dir/report.html`` for a ``quantize`` result dict; returns its path."""
    from microquant import api
    from microquant.report.html import Section, write_html_report
    from microquant.report.inspect import display_rows, layer_rows
    from microquant.report.models import load_graph

    summary = {
        "model": result["model"], "output": result["output"], "format": result["format"],
        "scheme": result["scheme"], "bytes": result["bytes"],
        "float bytes": result["float_bytes"],
        "x smaller": round(result["float_bytes"] / result["bytes"], 2),
    }
    if result.get("calibration"):
        summary["calibration"] = result["calibration"]
    sections = [Section("Summary", table=[{"item": k, "value": v} for k, v in summary.items()])]
    if result["format"] == "tflite":
        v = api.verify(result["output"], random=VERIFY_SAMPLES)
        row = {"inputs": v["source"], "bit-exact vs TFLM": f"{v['bit_exact']}/{v['total']}",
               "max |diff|": v["max_abs_diff"]}
        if "litert_agree_with_tflm" in v:
            row["LiteRT == TFLM"] = f"{v['litert_agree_with_tflm']}/{v['total']}"
        sections.append(Section("Reference runtime vs TFLite Micro", table=[row]))
    if calib is not None:
        sections.append(Section("Agreement with the float model (calibration samples)",
                                table=_vs_float(result, calib)))
    layers_of = result["output"] if result["format"] == "tflite" else result["model"]
    rows = display_rows(layer_rows(load_graph(layers_of)[1]))
    heading = "Layers" if result["format"] == "tflite" else "Layers (float model, lowered)"
    sections.append(Section(heading, table=rows))
    title = f"microquant quantize: {Path(result['output']).name} ({result['scheme']})"
    return write_html_report(out_dir, title, sections)
