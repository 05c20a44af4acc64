"""Helpers shared by the command modules: result type, exit codes, argument types, output
checks and JSON encoding."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError

EXIT_ERROR = 2
EXIT_MISMATCH = 1

Result = tuple[str, dict[str, Any], int]  # (human text, JSON object, exit code)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (on the last line) instead of text")


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a human at a terminal (never with --json)."""
    return not args.json and sys.stderr.isatty()


def parent_dir(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if str(p.parent) else Path(".")


def check_output_file(path: str | Path) -> Path:
    """Fail early (before any slow work) when ``path`` cannot be written as a file."""
    out = Path(path)
    if not parent_dir(out).is_dir():
        raise MicroquantError(f"output directory does not exist: {parent_dir(out)}")
    if out.is_dir():
        raise MicroquantError(f"output path is a directory: {out}")
    return out


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """A directory we may create: it may exist; otherwise its parent must (no ``mkdir -p``:
    a typo in a parent directory should not silently create a tree)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise MicroquantError(f"{what} is not a directory: {out}")
    if not out.exists() and not parent_dir(out).is_dir():
        raise MicroquantError(f"{what} {out}: parent directory does not exist: {parent_dir(out)}")
    return out


def io_entry(graph: Any, name: str) -> dict[str, Any]:
    """``{"name", "shape", "dtype"[, "scale", "zero_point"]}`` of a graph input/output."""
    t = graph.tensor(name)
    d: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": t.dtype}
    if t.quant is not None:
        d["scale"] = float(t.quant.scale[0])
        d["zero_point"] = int(t.quant.zero_point[0])
    return d


def io_text(d: dict[str, Any]) -> str:
    s = f"{d['dtype']} {'x'.join(map(str, d['shape']))}"
    if "scale" in d:
        s += f"  scale={d['scale']:.6g} zero_point={d['zero_point']}"
    return s


def json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def one_line(msg: str) -> str:
    return " ".join(str(msg).split()) or "unknown error"
