"""``microquant export MODEL.tflite --c OUT_DIR``: standalone integer-only C (no TFLM)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from microquant.cli._common import Result, add_json, check_output_dir
from microquant.errors import MicroquantError
from microquant.report.table import format_kv


def run(args: argparse.Namespace) -> Result:
    try:
        from microquant.export.c import export_c_cli
    except ImportError:
        raise MicroquantError("the standalone C exporter is not available in this "
                              "installation") from None
    out = check_output_dir(args.c, "C output directory")
    created = not out.exists()
    try:
        r = export_c_cli(Path(args.model), out)
    except BaseException:
        if created:  # leave nothing behind when the export fails
            shutil.rmtree(out, ignore_errors=True)
        raise
    result = {"command": "export", "model": str(args.model), "out_dir": str(out), **r}
    ops = r.get("ops", {})
    text = format_kv({
        "wrote": ", ".join(Path(f).name for f in r["files"]) + f"  (in {out})",
        "ops": ", ".join(f"{k} x{v}" for k, v in ops.items()),
        "activation arena": f"{r['arena_bytes']:,} bytes"
                            + (f" (+{r['scratch_bytes']:,} scratch)"
                               if r.get("scratch_bytes") else ""),
        "constant data": f"{r['const_bytes']:,} bytes",
        "flash estimate": f"{r['flash_bytes_estimate']:,} bytes (Cortex-M4 firmware text + data)",
    })
    return text, result, 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="quantized .tflite -> standalone C sources (no interpreter)",
        description="Generate plain C99 for a quantized .tflite: <out>/model.h, model.c and "
                    "the integer kernel library (bit-exact with TFLite Micro), with a "
                    "statically planned activation arena.",
    )
    e.add_argument("model", help="quantized .tflite model (int8)")
    e.add_argument("--c", required=True, metavar="OUT_DIR",
                   help="directory for the C sources (created if missing; its parent must "
                        "exist)")
    add_json(e)
    e.set_defaults(func=run)
