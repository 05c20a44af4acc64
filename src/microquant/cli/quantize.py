"""``microquant quantize MODEL.onnx [--calib C.npz] [--scheme S] -o OUT.tflite|OUT.onnx``.

The output suffix picks the exporter: ``.tflite`` (TFLite Micro: int8, int16x8, w4a8) or
``.onnx`` (ONNX Runtime: int8, int16x8, fp16, dynamic, w4, w2, w1). A scheme, or an option,
that the chosen format cannot express is a one-line error before any work is done.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from microquant.api import CALIBRATION_METHODS, DEFAULT_CALIBRATION, SCHEME_NAMES
from microquant.cli._common import (
    Result,
    add_json,
    check_output_dir,
    check_output_file,
    io_entry,
    io_text,
    positive,
    progress,
)
from microquant.errors import MicroquantError
from microquant.report.table import format_kv

WEIGHT_ONLY = ("w4", "w2", "w1")
NO_CALIBRATION = ("fp16", "dynamic", *WEIGHT_ONLY)  # ONNX schemes that need no data


def _check(args: argparse.Namespace, fmt: str) -> None:
    """Every option against the scheme and format (cheap checks, before the pipeline)."""
    from microquant.api import check_scheme

    check_scheme(args.scheme, fmt)
    if args.group_size is not None and args.scheme not in WEIGHT_ONLY:
        raise MicroquantError(f"--group-size applies to the weight-only schemes "
                              f"({', '.join(WEIGHT_ONLY)}), not to {args.scheme!r}")
    if fmt == "tflite":
        if args.symmetric is False:
            raise MicroquantError("--asymmetric cannot be expressed in .tflite: TFLite Micro's "
                                  "int8 kernels take symmetric weights; use an .onnx output")
        if args.per_channel is False and args.scheme != "int8":
            raise MicroquantError(f"--per-tensor with .tflite output is available for scheme "
                                  f"'int8' only, not {args.scheme!r}")
        if args.calib is None:
            raise MicroquantError(f"scheme {args.scheme!r} needs calibration data: "
                                  "--calib CALIB.npz")
    else:
        for flag, value in (("--float-io", args.float_io), ("--c-array", args.c_array)):
            if value:
                raise MicroquantError(f"{flag} applies to .tflite output only")
        if args.calib is None and args.scheme not in NO_CALIBRATION:
            raise MicroquantError(f"scheme {args.scheme!r} needs calibration data: "
                                  "--calib CALIB.npz")
    if args.c_array is not None and not Path(args.c_array).is_dir():
        raise MicroquantError(f"C array directory does not exist: {args.c_array}")
    if args.report is not None:
        check_output_dir(args.report, "report directory")


def run(args: argparse.Namespace) -> Result:
    from microquant.api import output_format

    out = Path(args.output)
    fmt = output_format(out)
    _check(args, fmt)
    check_output_file(out)  # before the (slow) pipeline runs; the writers check again
    if fmt == "tflite":
        text, result = _to_tflite(args, out)
    else:
        text, result = _to_onnx(args, out)
    if args.report is not None:
        from microquant.report.quantize_report import write_quantize_report

        try:
            result["html"] = str(write_quantize_report(args.report, result, calib=args.calib))
        except BaseException:
            out.unlink(missing_ok=True)  # all or nothing
            raise
        text += f"\nreport: {result['html']}"
    return text, result, 0


def _to_tflite(args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    from microquant import api

    graph = api.quantize_onnx(args.model, args.calib, calibration=args.calibration,
                              float_io=args.float_io, progress=progress(args),
                              scheme=args.scheme, per_channel=args.per_channel is not False)
    data = api.to_tflite_bytes(graph)
    api.write_file_atomic(data, out)
    c_files: list[str] = []
    if args.c_array is not None:
        from microquant.export.c_array import write_c_array

        try:
            files = write_c_array(data, args.c_array)
        except BaseException:
            out.unlink(missing_ok=True)  # all or nothing
            raise
        c_files = [str(f) for f in (files if isinstance(files, list | tuple) else [files])]
    io = {
        "inputs": [io_entry(graph, n) for n in graph.inputs],
        "outputs": [io_entry(graph, n) for n in graph.outputs],
    }
    float_bytes = Path(args.model).stat().st_size
    result = {
        "command": "quantize",
        "model": str(args.model),
        "output": str(out),
        "format": "tflite",
        "scheme": args.scheme,
        "bytes": len(data),
        "float_bytes": float_bytes,
        "ratio": len(data) / float_bytes,
        "calibration": args.calibration,
        "float_io": bool(args.float_io),
        "layers": len(graph.nodes),
        "ops": dict(Counter(graph.ops())),
        **io,
        "c_array": c_files,
    }
    text = format_kv({
        "wrote": f"{out} ({len(data)} bytes, {args.scheme})",
        "calibration": args.calibration,
        "layers": ", ".join(f"{k} x{v}" for k, v in result["ops"].items()),
        **{f"input {d['name']}": io_text(d) for d in io["inputs"]},
        **{f"output {d['name']}": io_text(d) for d in io["outputs"]},
        **({"C array": ", ".join(c_files)} if c_files else {}),
    })
    return text, result


def _to_onnx(args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    from microquant.export.onnx_qdq import quantize_to_onnx

    calib = args.calib if args.scheme not in NO_CALIBRATION else None
    r = quantize_to_onnx(
        args.model, calib, args.scheme, out,
        per_channel=args.per_channel is not False, symmetric=args.symmetric is not False,
        group_size=args.group_size, calibration=args.calibration, progress=progress(args),
    )
    result = {
        "command": "quantize",
        "model": str(args.model),
        "output": str(out),
        "format": "onnx",
        "scheme": args.scheme,
        "bytes": int(r["bytes"]),
        "float_bytes": int(r["float_bytes"]),
        "ratio": float(r["ratio"]),
        "calibration": args.calibration if calib is not None else None,
        "per_channel": args.per_channel is not False,
        "symmetric": args.symmetric is not False,
        "group_size": args.group_size,
        "opset": r.get("opset"),
        "weights": r.get("weights"),
    }
    text = format_kv({
        "wrote": f"{out} ({result['bytes']} bytes, {args.scheme}, for ONNX Runtime)",
        "float model": f"{result['float_bytes']} bytes (x{1 / result['ratio']:.2f} smaller)",
        "weights quantized": result["weights"],
        "weights": ("per-channel" if result["per_channel"] else "per-tensor")
                   + (", symmetric" if result["symmetric"] else ", asymmetric")
                   + (f", groups of {args.group_size}" if args.group_size else ""),
        **({"calibration": args.calibration} if calib is not None else {}),
    })
    return text, result


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "quantize", help="float ONNX -> quantized .tflite (TFLite Micro) or .onnx (ONNX Runtime)",
        description="Quantize a float ONNX model. The output suffix picks the format: .tflite "
                    "(full-integer for TFLite Micro: schemes int8, int16x8, w4a8) or .onnx "
                    "(for ONNX Runtime: int8, int16x8, fp16, dynamic, w4, w2, w1). Activation "
                    "ranges come from running the calibration samples through ONNX Runtime.",
    )
    q.add_argument("model", help="float ONNX model")
    q.add_argument("--calib", metavar="CALIB.npz",
                   help="calibration samples: one array [N, ...] per model input, keyed by "
                        "input name (or 'x' for a single input); not needed by fp16, dynamic, "
                        "w4, w2, w1")
    q.add_argument("--scheme", default="int8", metavar="SCHEME",
                   help=f"one of {', '.join(SCHEME_NAMES)} (default: int8)")
    q.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help=f"activation range estimator (default: {DEFAULT_CALIBRATION})")
    q.add_argument("--group-size", type=positive, metavar="N",
                   help="w4/w2/w1: one scale per N consecutive weights of a channel (must "
                        "divide every weight's input size)")
    sym = q.add_mutually_exclusive_group()
    sym.add_argument("--symmetric", dest="symmetric", action="store_true", default=None,
                     help="symmetric weights (default)")
    sym.add_argument("--asymmetric", dest="symmetric", action="store_false",
                     help="asymmetric weights with a zero point (.onnx only)")
    gran = q.add_mutually_exclusive_group()
    gran.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                      help="one weight scale per output channel (default)")
    gran.add_argument("--per-tensor", dest="per_channel", action="store_false",
                      help="one weight scale per tensor (smaller file, usually less "
                           "accurate; .tflite: int8 scheme)")
    q.add_argument("--float-io", action="store_true",
                   help=".tflite: keep float32 model inputs/outputs (QUANTIZE/DEQUANTIZE inside)")
    q.add_argument("--c-array", metavar="DIR",
                   help=".tflite: also write model_data.cc/.h for TFLite Micro into DIR")
    q.add_argument("--report", metavar="DIR",
                   help="also write DIR/report.html: layers, sizes, bit-exactness (.tflite) "
                        "and agreement with the float model")
    q.add_argument("-o", "--output", required=True, metavar="OUT.tflite|OUT.onnx",
                   help="output path (its directory must exist)")
    add_json(q)
    q.set_defaults(func=run)
