"""``microquant verify MODEL.tflite [--data D | --random N]``: our runtime vs TFLM, bit for bit."""

from __future__ import annotations

import argparse

from microquant.cli._common import EXIT_MISMATCH, Result, add_json, positive, progress
from microquant.report.table import format_kv, format_table


def run(args: argparse.Namespace) -> Result:
    from microquant import api

    r = {"command": "verify", **api.verify(args.model, data_path=args.data, random=args.random,
                                           seed=args.seed, progress=progress(args))}
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


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "verify", help="check our reference runtime against TFLite Micro bit for bit",
        description="Run samples through our integer reference runtime, TFLite Micro and "
                    "LiteRT's reference kernels and compare every output. Exits 1 when any "
                    "sample differs between our runtime and TFLM.",
    )
    v.add_argument("model", help=".tflite model")
    src = v.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="DATA.npz", help="take inputs from a data file")
    src.add_argument("--random", type=positive, metavar="N",
                     help="N random inputs (default when no --data: 32)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_json(v)
    v.set_defaults(func=run)
