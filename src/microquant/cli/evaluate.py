"""``microquant eval MODEL --data DATA.npz [--runtime R]``: accuracy / output statistics."""

from __future__ import annotations

import argparse

from microquant.api import RUNTIMES
from microquant.cli._common import Result, add_json, progress
from microquant.report.table import format_kv, format_table


def run(args: argparse.Namespace) -> Result:
    from microquant import api

    r = api.evaluate(args.model, args.data, runtime=args.runtime, progress=progress(args))
    r = {"command": "eval", **r}
    head = {"model": r["model"], "runtime": r["runtime"], "samples": r["samples"]}
    if "accuracy" in r:
        head["top-1 accuracy"] = f"{100 * r['accuracy']:.2f} %"
    if "reconstruction_mse" in r:
        head["reconstruction MSE"] = r["reconstruction_mse"]
    text = format_kv(head) + "\n\n" + format_table(r["outputs"])
    return text, r, 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "eval", help="accuracy / output statistics of a model on a data set",
        description="Run a data set through a model. Float data is quantized with the model's "
                    "input parameters for integer inputs; integer outputs are dequantized. With "
                    "labels 'y' in the data, top-1 accuracy is reported.",
    )
    e.add_argument("model", help=".onnx or .tflite model")
    e.add_argument("--data", required=True, metavar="DATA.npz",
                   help="inputs [N, ...] (keyed by input name or 'x') and optional labels 'y'")
    e.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="tflm, litert (.tflite), ort (ONNX) or reference (our NumPy runtime); "
                        "default: tflm for .tflite, ort for ONNX")
    add_json(e)
    e.set_defaults(func=run)
