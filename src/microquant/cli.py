"""``microquant`` command line: quantize, eval, verify, inspect, demo.

Every command prints readable text, or with ``--json`` one JSON object on the last line.
User mistakes (:class:`MicroquantError`) print ``error: <message>`` on stderr and exit 2
without a traceback; a failed ``verify`` (not every sample bit-exact) exits 1.

Example:
    $ microquant quantize model.onnx --calib calib.npz -o model.tflite
    $ microquant verify model.tflite --random 64 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microquant import __version__
from microquant.api import CALIBRATION_METHODS, DEFAULT_CALIBRATION, RUNTIMES
from microquant.errors import MicroquantError
from microquant.report.table import format_kv, format_table

EXIT_ERROR = 2
EXIT_MISMATCH = 1

Result = tuple[str, dict[str, Any], int]  # (human text, JSON object, exit code)


# -- commands ---------------------------------------------------------------------------

def _quantize(args: argparse.Namespace) -> Result:
    from microquant import api

    out = Path(args.output)
    if args.c_array is not None and not Path(args.c_array).is_dir():
        raise MicroquantError(f"C array directory does not exist: {args.c_array}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        # Checked before the (slow) pipeline runs; save_tflite checks again.
        raise MicroquantError(f"output directory does not exist: {out.parent}")
    graph = api.quantize_onnx(args.model, args.calib, calibration=args.calibration,
                              float_io=args.float_io, progress=_progress(args))
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
        "inputs": [_io(graph, n) for n in graph.inputs],
        "outputs": [_io(graph, n) for n in graph.outputs],
    }
    result = {
        "command": "quantize",
        "model": str(args.model),
        "output": str(out),
        "bytes": len(data),
        "calibration": args.calibration,
        "float_io": bool(args.float_io),
        "layers": len(graph.nodes),
        "ops": dict(Counter(graph.ops())),
        **io,
        "c_array": c_files,
    }
    text = format_kv({
        "wrote": f"{out} ({len(data)} bytes)",
        "calibration": args.calibration,
        "layers": ", ".join(f"{k} x{v}" for k, v in result["ops"].items()),
        **{f"input {d['name']}": _io_text(d) for d in io["inputs"]},
        **{f"output {d['name']}": _io_text(d) for d in io["outputs"]},
        **({"C array": ", ".join(c_files)} if c_files else {}),
    })
    return text, result, 0


def _io(graph: Any, name: str) -> dict[str, Any]:
    t = graph.tensor(name)
    d: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": t.dtype}
    if t.quant is not None:
        d["scale"] = float(t.quant.scale[0])
        d["zero_point"] = int(t.quant.zero_point[0])
    return d


def _io_text(d: dict[str, Any]) -> str:
    s = f"{d['dtype']} {'x'.join(map(str, d['shape']))}"
    if "scale" in d:
        s += f"  scale={d['scale']:.6g} zero_point={d['zero_point']}"
    return s


def _eval(args: argparse.Namespace) -> Result:
    from microquant import api

    r = api.evaluate(args.model, args.data, runtime=args.runtime, progress=_progress(args))
    r = {"command": "eval", **r}
    head = {"model": r["model"], "runtime": r["runtime"], "samples": r["samples"]}
    if "accuracy" in r:
        head["top-1 accuracy"] = f"{100 * r['accuracy']:.2f} %"
    if "reconstruction_mse" in r:
        head["reconstruction MSE"] = r["reconstruction_mse"]
    text = format_kv(head) + "\n\n" + format_table(r["outputs"])
    return text, r, 0


def _verify(args: argparse.Namespace) -> Result:
    from microquant import api

    r = {"command": "verify", **api.verify(args.model, data_path=args.data, random=args.random,
                                           seed=args.seed, progress=_progress(args))}
    ok = r["bit_exact"] == r["total"]
    head = {
        "model": r["model"],
        "inputs": r["source"],
        "bit-exact vs TFLM": f"{r['bit_exact']}/{r['total']} samples"
                             + ("" if ok else f" (max |diff| {r['max_abs_diff']:g})"),
    }
    if "litert_agree_with_tflm" in r:
        head["LiteRT == TFLM"] = f"{r['litert_agree_with_tflm']}/{r['total']} samples"
    cols = ["name", "dtype", "mismatched_samples", "max_abs_diff",
            "litert_mismatched_samples", "litert_max_abs_diff"]
    text = format_kv(head) + "\n\n" + format_table(r["outputs"], cols)
    text += "\n\n" + ("PASS: bit-exact" if ok else "FAIL: our runtime and TFLM differ")
    return text, r, 0 if ok else EXIT_MISMATCH


def _inspect(args: argparse.Namespace) -> Result:
    from microquant.report.inspect import display_rows, layer_rows, summary
    from microquant.report.models import load_graph

    mf, graph = load_graph(args.model)
    rows = layer_rows(graph)
    s = summary(graph, rows)
    r = {"command": "inspect", "model": str(args.model), "format": mf.kind,
         "file_bytes": len(mf.data), "summary": s, "layers": rows}
    head = {
        "model": f"{args.model} ({mf.kind}, {len(mf.data)} bytes)",
        "layers": s["layers"],
        "MACs": f"{s['macs']:,}",
        "parameters": f"{s['parameters']:,} ({s['constant_bytes']:,} bytes)",
        **{f"input {d['name']}": _io_text({**d, **(d['quant'] or {})}) for d in s["inputs"]},
        **{f"output {d['name']}": _io_text({**d, **(d['quant'] or {})}) for d in s["outputs"]},
    }
    text = format_table(display_rows(rows)) + "\n\n" + format_kv(head)
    return text, r, 0


def _demo(args: argparse.Namespace) -> Result:
    from microquant.demo.run import run_demo

    r = {"command": "demo", **run_demo(args.out, epochs=args.epochs, seed=args.seed,
                                       calibration=args.calibration, progress=_progress(args))}
    rows = [
        {"model": f"float ({r['float']['runtime']})", "file": Path(r["float"]["file"]).name,
         "bytes": r["float"]["bytes"], "accuracy %": round(100 * r["float"]["accuracy"], 2),
         "agreement %": round(100 * r["float"]["agreement"], 2)},
        {"model": f"int8 ({r['int8']['runtime']})", "file": Path(r["int8"]["file"]).name,
         "bytes": r["int8"]["bytes"], "accuracy %": round(100 * r["int8"]["accuracy"], 2),
         "agreement %": round(100 * r["int8"]["agreement"], 2)},
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


# -- parser -----------------------------------------------------------------------------

def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (on the last line) instead of text")


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microquant",
        description="Float ONNX -> full-integer int8 .tflite that TensorFlow Lite Micro runs "
                    "bit-exactly.",
        epilog="Run 'microquant demo' for an end-to-end example. Errors exit with status 2.",
    )
    parser.add_argument("--version", action="version", version=f"microquant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    q = sub.add_parser(
        "quantize", help="float ONNX + calibration data -> int8 .tflite",
        description="Quantize a float ONNX model to a full-integer int8 .tflite. Activation "
                    "ranges come from running the calibration samples through ONNX Runtime.",
    )
    q.add_argument("model", help="float ONNX model")
    q.add_argument("--calib", required=True, metavar="CALIB.npz",
                   help="calibration samples: one array [N, ...] per model input, keyed by "
                        "input name (or 'x' for a single input)")
    q.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help=f"activation range estimator (default: {DEFAULT_CALIBRATION})")
    q.add_argument("--float-io", action="store_true",
                   help="keep float32 model inputs/outputs (QUANTIZE/DEQUANTIZE inside the model)")
    q.add_argument("--c-array", metavar="DIR",
                   help="also write model_data.cc/.h for TFLite Micro into DIR")
    q.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                   help="output .tflite path (its directory must exist)")
    _add_common(q)
    q.set_defaults(func=_quantize)

    e = sub.add_parser(
        "eval", help="accuracy / output statistics of a model on a data set",
        description="Run a data set through a model. Float data is quantized with the model's "
                    "input parameters for int8 inputs; int8 outputs are dequantized. With labels "
                    "'y' in the data, top-1 accuracy is reported.",
    )
    e.add_argument("model", help=".onnx or .tflite model")
    e.add_argument("--data", required=True, metavar="DATA.npz",
                   help="inputs [N, ...] (keyed by input name or 'x') and optional labels 'y'")
    e.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="tflm, litert (.tflite), ort (ONNX) or reference (our NumPy runtime); "
                        "default: tflm for .tflite, ort for ONNX")
    _add_common(e)
    e.set_defaults(func=_eval)

    v = sub.add_parser(
        "verify", help="check our reference runtime against TFLite Micro bit for bit",
        description="Run samples through our integer reference runtime, TFLite Micro and "
                    "LiteRT's reference kernels and compare every output. Exits 1 when any "
                    "sample differs between our runtime and TFLM.",
    )
    v.add_argument("model", help=".tflite model")
    src = v.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DATA.npz", help="take inputs from a data file")
    src.add_argument("--random", type=_positive, metavar="N",
                     help="N random inputs (default when no --data: 32)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_common(v)
    v.set_defaults(func=_verify)

    i = sub.add_parser(
        "inspect", help="per-layer summary of a .onnx or .tflite model",
        description="One row per layer: op, shapes, stride/padding/activation, MACs, weight "
                    "range and, for quantized models, weight/activation quantization "
                    "(scale/zero point). ONNX models are shown after normalize + lower.",
    )
    i.add_argument("model", help=".onnx or .tflite model")
    _add_common(i)
    i.set_defaults(func=_inspect)

    d = sub.add_parser(
        "demo", help="train a digits CNN in NumPy and take it through the whole pipeline",
        description="Train a small CNN on scikit-learn's 8x8 digits, export ONNX, quantize to "
                    "int8, run TFLite Micro and compare accuracy with the float model.",
    )
    d.add_argument("--out", default="microquant_demo", metavar="DIR",
                   help="directory for the generated files (default: ./microquant_demo)")
    d.add_argument("--epochs", type=_positive, default=15, help="training epochs (default: 15)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help=f"activation range estimator (default: {DEFAULT_CALIBRATION})")
    _add_common(d)
    d.set_defaults(func=_demo)
    return parser


def _progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split()) or "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``microquant`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    func: Callable[[argparse.Namespace], Result] = args.func
    try:
        text, result, code = func(args)
    except MicroquantError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=_json_default, allow_nan=False))
    else:
        print(text)
    sys.stdout.flush()
    return code
