"""``microquant compare MODEL.onnx --calib C.npz --data D.npz [--schemes a,b,...]
[--report DIR] [--plot PATH]``: one row per scheme plus float (see
:mod:`microquant.report.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from microquant.api import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from microquant.cli._common import (
    Result,
    add_json,
    check_output_dir,
    check_output_file,
    positive,
    progress,
)
from microquant.errors import MicroquantError

PLOT_NAME = "accuracy_vs_size.png"


def run(args: argparse.Namespace) -> Result:
    from microquant.report import compare

    compare.parse_schemes(args.schemes)  # unknown names fail before any work
    if args.plot is not None:
        if Path(args.plot).suffix.lower() != ".png":
            raise MicroquantError(f"--plot writes a PNG file, got {args.plot!r}")
        check_output_file(args.plot)
    if args.report is not None:
        check_output_dir(args.report, "report directory")
    r = compare.compare_schemes(args.model, args.calib, args.data, args.schemes,
                                calibration=args.calibration, n_samples=args.samples,
                                progress=progress(args))
    r = {"command": "compare", **r, "plot": None, "html": None}
    plot = args.plot
    if plot is None and args.report is not None:
        Path(args.report).mkdir(exist_ok=True)
        plot = Path(args.report) / PLOT_NAME
    if plot is not None:
        r["plot"] = str(compare.plot_accuracy_vs_size(r, plot))
    if args.report is not None:
        r["html"] = str(compare.write_compare_report(r, args.report, r["plot"]))
    return compare.format_compare_text(r), r, 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compare", help="size / accuracy / error / latency / MCU fit of every scheme",
        description="Quantize a float ONNX model with several schemes and run each in its "
                    "natural runtime (TFLite Micro for .tflite int8/int16x8/w4a8, ONNX "
                    "Runtime for fp16/dynamic/w4/w2/w1 and the float model): file size, "
                    "compression, top-1 accuracy (labels 'y' in the data), top-1 agreement "
                    "and output SQNR vs float, host latency, and which MCUs' flash it fits.",
    )
    c.add_argument("model", help="float ONNX model")
    c.add_argument("--calib", required=True, metavar="CALIB.npz",
                   help="calibration samples (keyed by input name or 'x')")
    c.add_argument("--data", required=True, metavar="DATA.npz",
                   help="evaluation inputs [N, ...] and optional labels 'y'")
    c.add_argument("--schemes", metavar="LIST",
                   help="comma-separated schemes (default: int8,int16x8,w4a8,fp16,dynamic,"
                        "w4,w2,w1); the float model is always included")
    c.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help=f"activation range estimator (default: {DEFAULT_CALIBRATION})")
    c.add_argument("--samples", type=positive, metavar="N",
                   help="use the first N samples of DATA (default: all)")
    c.add_argument("--plot", metavar="PATH.png", help="write the accuracy-vs-size plot here")
    c.add_argument("--report", metavar="DIR",
                   help=f"write DIR/report.html (table + plot; the plot as DIR/{PLOT_NAME} "
                        "unless --plot is given)")
    add_json(c)
    c.set_defaults(func=run)
