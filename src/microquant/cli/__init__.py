"""``microquant`` command line: quantize, eval, verify, inspect, export, fit, compare, demo.

Every command prints readable text, or with ``--json`` one JSON object on the last line.
User mistakes (:class:`MicroquantError`, and bad arguments) print one ``error: <message>``
line on stderr and exit 2 without a traceback; a failed ``verify`` (not every sample
bit-exact) exits 1.

One module per command (``cli/<command>.py``): ``register(subparsers)`` adds its subparser
and sets ``func``, a thin handler over the library API returning ``(text, json, exit code)``.

Example:
    $ microquant quantize model.onnx --calib calib.npz -o model.tflite
    $ microquant verify model.tflite --random 64 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from microquant import __version__
from microquant.cli import compare, demo, evaluate, export, fit, inspect, quantize, verify
from microquant.cli._common import EXIT_ERROR, Result, json_default, one_line
from microquant.errors import MicroquantError

# Order of the commands in --help.
COMMANDS = (quantize, evaluate, verify, inspect, export, fit, compare, demo)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one ``error:`` line, exit 2 (argparse
    prints the whole usage block otherwise)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"error: {one_line(message)} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="microquant",
        description="Float ONNX -> quantized models: full-integer .tflite that TensorFlow "
                    "Lite Micro runs bit-exactly, or quantized ONNX for ONNX Runtime.",
        epilog="Run 'microquant demo' for an end-to-end example. Errors exit with status 2.",
    )
    parser.add_argument("--version", action="version", version=f"microquant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


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
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=json_default, allow_nan=False))
    else:
        print(text)
    sys.stdout.flush()
    return code


__all__ = ["build_parser", "main"]
