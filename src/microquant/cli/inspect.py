"""``microquant inspect MODEL``: per-layer summary; with ``--calib C --layers``: per-layer
quantization error analysis (:func:`microquant.report.layers.layers_cli`)."""

from __future__ import annotations

import argparse
from typing import Any

from microquant.api import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from microquant.cli._common import Result, add_json, check_output_dir, io_text, positive
from microquant.errors import MicroquantError
from microquant.report.table import format_kv, format_table


def inspect_model(model: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(JSON result, display rows)`` of the plain per-layer summary."""
    from microquant.report.inspect import display_rows, layer_rows, summary
    from microquant.report.models import load_graph

    mf, graph = load_graph(model)
    rows = layer_rows(graph)
    s = summary(graph, rows)
    r = {"command": "inspect", "model": str(model), "format": mf.kind,
         "file_bytes": len(mf.data), "summary": s, "layers": rows}
    return r, display_rows(rows)


def summary_pairs(r: dict[str, Any]) -> dict[str, Any]:
    s = r["summary"]
    return {
        "model": f"{r['model']} ({r['format']}, {r['file_bytes']} bytes)",
        "layers": s["layers"],
        "MACs": f"{s['macs']:,}",
        "parameters": f"{s['parameters']:,} ({s['constant_bytes']:,} bytes)",
        **{f"input {d['name']}": io_text({**d, **(d['quant'] or {})}) for d in s["inputs"]},
        **{f"output {d['name']}": io_text({**d, **(d['quant'] or {})}) for d in s["outputs"]},
    }


def run(args: argparse.Namespace) -> Result:
    if args.layers and args.calib is None:
        raise MicroquantError("--layers needs calibration data: --calib CALIB.npz")
    if args.calib is not None and not args.layers:
        raise MicroquantError("--calib is only used with --layers (per-layer error analysis)")
    if not args.layers and (args.samples is not None or args.calibration is not None):
        raise MicroquantError("--calibration and --samples are only used with --layers")
    if args.report is not None:
        check_output_dir(args.report, "report directory")
    if args.layers:
        return _layers(args)
    r, rows = inspect_model(args.model)
    text = format_table(rows) + "\n\n" + format_kv(summary_pairs(r))
    if args.report is not None:
        from microquant.report.html import Section, write_html_report

        page = write_html_report(args.report, f"microquant inspect: {r['model']}", [
            Section("Summary", table=[{"item": k, "value": v}
                                      for k, v in summary_pairs(r).items()]),
            Section("Layers", table=rows),
        ])
        r["html"] = str(page)
        text += f"\nreport: {page}"
    return text, r, 0


def _layers(args: argparse.Namespace) -> Result:
    from microquant.report.layers import format_layers_text, layers_cli

    method = args.calibration or DEFAULT_CALIBRATION
    r = layers_cli(args.model, args.calib, method=method, out_dir=args.report,
                   n_samples=args.samples)
    result = {"command": "inspect", "analysis": "layers", **r}
    return format_layers_text(r), result, 0


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser(
        "inspect", help="per-layer summary, or per-layer quantization error analysis",
        description="One row per layer: op, shapes, stride/padding/activation, MACs, weight "
                    "range and, for quantized models, weight/activation quantization "
                    "(scale/zero point). ONNX models are shown after normalize + lower. "
                    "With --calib and --layers (float ONNX): quantize with the calibration "
                    "data and measure each layer's error (isolated and cumulative SQNR), "
                    "weight/activation statistics and a suggested fix for the poor layers.",
    )
    i.add_argument("model", help=".onnx or .tflite model (--layers: float .onnx)")
    i.add_argument("--calib", metavar="CALIB.npz",
                   help="calibration samples for --layers (keyed by input name or 'x')")
    i.add_argument("--layers", action="store_true",
                   help="per-layer quantization error analysis (needs --calib)")
    i.add_argument("--calibration", choices=CALIBRATION_METHODS, default=None,
                   help=f"--layers: activation range estimator (default: {DEFAULT_CALIBRATION})")
    i.add_argument("--samples", type=positive, metavar="N",
                   help="--layers: analyze the first N calibration samples (default: all)")
    i.add_argument("--report", metavar="DIR",
                   help="also write DIR/report.html (and, with --layers, the PNG plots)")
    add_json(i)
    i.set_defaults(func=run)
