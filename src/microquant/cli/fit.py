"""``microquant fit MODEL [--target NAME ...] [--target-file F.toml] [--reserve-ram 64KB]
[--reserve-flash 256KB] [--runtime c|tflm] [--measure]``: does the model fit these
microcontrollers (flash and RAM)?"""

from __future__ import annotations

import argparse
from pathlib import Path

from microquant.cli._common import Result, add_json, check_output_file
from microquant.errors import MicroquantError


def run(args: argparse.Namespace) -> Result:
    try:
        from microquant.targets.fit import fit_cli, format_fit
    except ImportError:
        raise MicroquantError("target profiles are not available in this installation") \
            from None
    if args.plot is not None:
        if Path(args.plot).suffix.lower() != ".png":
            raise MicroquantError(f"--plot writes a PNG file, got {args.plot!r}")
        check_output_file(args.plot)
    r = fit_cli(args.model, args.target or None, args.target_file,
                reserve_ram=args.reserve_ram, reserve_flash=args.reserve_flash,
                strategy=args.strategy, runtime=args.runtime, measure=args.measure)
    r = {"command": "fit", **r, "plot": None}
    text = format_fit(r)
    if args.plot is not None:
        r["plot"] = str(_plot(args.model, args.plot))
        text += f"\nmemory plot: {r['plot']}"
    return text, r, 0


def _plot(model: str, path: str) -> Path:
    """Live arena bytes per step, greedy vs optimized plan, of the deployed graph (the
    ``.tflite`` as stored; for an ONNX model its int8 estimate)."""
    from microquant.report.models import load_graph
    from microquant.targets.fit import int8_estimate_graph
    from microquant.targets.planner import plan_memory
    from microquant.targets.plot import plot_memory

    mf, graph = load_graph(model)
    title = Path(model).name
    if mf.kind == "onnx":
        graph, title = int8_estimate_graph(graph), f"{title} (int8 estimate)"
    plans = {s: plan_memory(graph, s) for s in ("greedy", "optimized")}
    return plot_memory(plans, path, title)


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fit", help="flash and RAM estimate of a model against microcontroller profiles",
        description="Estimate flash (weights, quantization parameters, graph, code) and RAM "
                    "(planned activation arena + runtime overhead) of a .tflite model, or of "
                    "a float .onnx model both as float32 and as an int8 estimate, and check "
                    "them against target profiles (all built-in ones by default).",
    )
    f.add_argument("model", help=".tflite or .onnx model")
    f.add_argument("--target", action="append", metavar="NAME",
                   help="built-in target profile (repeatable or comma-separated), e.g. "
                        "nrf52840, stm32f746, rp2040, esp32")
    f.add_argument("--target-file", metavar="F.toml",
                   help="your own target profile (name, flash, ram, core, ... as the "
                        "built-in TOML files)")
    f.add_argument("--reserve-ram", default="0", metavar="SIZE",
                   help="RAM kept for the application, e.g. 64KB (default: 0)")
    f.add_argument("--reserve-flash", default="0", metavar="SIZE",
                   help="flash kept for the application, e.g. 256KB (default: 0)")
    f.add_argument("--strategy", choices=("optimized", "greedy"), default="optimized",
                   help="arena planner: optimized (microquant's C export) or greedy (what "
                        "TFLite Micro plans); default: optimized")
    f.add_argument("--runtime", choices=("c", "tflm"), default="c",
                   help="deployment to size for a .tflite: c (microquant's standalone C "
                        "export, default) or tflm (TensorFlow Lite Micro interpreter)")
    f.add_argument("--measure", action="store_true",
                   help="c runtime: build the firmware with arm-none-eabi-gcc and report its "
                        "measured size instead of the estimate (needs the toolchain)")
    f.add_argument("--plot", metavar="PATH.png",
                   help="write the activation memory over time (greedy vs optimized plan)")
    add_json(f)
    f.set_defaults(func=run)
