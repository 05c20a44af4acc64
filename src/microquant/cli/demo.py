"""``microquant demo [--out DIR]``: NumPy-trained digits CNN through the whole pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from microquant.api import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from microquant.cli._common import Result, add_json, positive, progress
from microquant.report.table import format_kv, format_table


def run(args: argparse.Namespace) -> Result:
    from microquant.demo.run import run_demo

    r = {"command": "demo", **run_demo(args.out, epochs=args.epochs, seed=args.seed,
                                       calibration=args.calibration, progress=progress(args))}
    rows = [
        {"model": f"{kind} ({r[kind]['runtime']})", "file": Path(r[kind]["file"]).name,
         "bytes": r[kind]["bytes"], "accuracy %": round(100 * r[kind]["accuracy"], 2),
         "agreement %": round(100 * r[kind]["agreement"], 2)}
        for kind in ("float", "int8")
    ]
    head = format_kv({
        "data": f"sklearn digits 8x8: {r['train_samples']} train / {r['test_samples']} test",
        "training": f"{r['epochs']} epochs in {r['train_seconds']:.1f} s (NumPy)",
        "ONNX vs NumPy": f"max |diff| {r['onnx_vs_numpy_max_abs_diff']:.2g}",
        "reference == TFLM": f"{r['bit_exact']}/{r['bit_exact_total']} test samples bit-exact",
        "output dir": r["out_dir"],
    })
    note = "agreement = top-1 agreement with the float model on the test set"
    return head + "\n\n" + format_table(rows) + "\n" + note, r, 0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "demo", help="train a digits CNN in NumPy and take it through the whole pipeline",
        description="Train a small CNN on scikit-learn's 8x8 digits, export ONNX, quantize to "
                    "int8, run TFLite Micro and compare accuracy with the float model.",
    )
    d.add_argument("--out", default="microquant_demo", metavar="DIR",
                   help="directory for the generated files (default: ./microquant_demo)")
    d.add_argument("--epochs", type=positive, default=15, help="training epochs (default: 15)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help=f"activation range estimator (default: {DEFAULT_CALIBRATION})")
    add_json(d)
    d.set_defaults(func=run)
