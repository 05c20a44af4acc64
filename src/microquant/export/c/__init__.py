"""Standalone integer-only C export (:func:`export_c`) and its Cortex-M tooling.

The generator (:mod:`.c_model`) writes ``<prefix>.h/.c`` plus the hand-written C99 kernel
library in ``lib/`` (bit-exact with the reference runtime and TFLite Micro);
:mod:`.arena` plans the static activation arena; :mod:`.footprint` predicts the Cortex-M
firmware's flash and RAM (measured tables in :mod:`.sizes`); :mod:`.toolchain` builds and
runs the export on the host and on Cortex-M (QEMU).
"""

from __future__ import annotations

from pathlib import Path

from microquant.errors import MicroquantError
from microquant.export.c.arena import plan_offsets
from microquant.export.c.c_model import export_c, generate, write_model
from microquant.export.c.footprint import c_footprint
from microquant.export.c.ops import SUPPORTED_OPS
from microquant.export.c.sizes import code_bytes_estimate

__all__ = [
    "SUPPORTED_OPS", "c_footprint", "code_bytes_estimate", "export_c", "export_c_cli",
    "plan_offsets",
]


def _load_graph(model_path: Path):
    from microquant.ir.tflite_io import read_tflite

    suffix = model_path.suffix.lower()
    if suffix == ".tflite":
        return read_tflite(model_path.read_bytes())
    if suffix == ".onnx":
        raise MicroquantError(
            f"{model_path} is a float ONNX model; quantize it first (microquant quantize) "
            "and export the .tflite"
        )
    raise MicroquantError(f"cannot export {model_path}: expected a quantized .tflite file")


def export_c_cli(model_path: Path, out_dir: Path, prefix: str = "model") -> dict:
    """Load a quantized ``.tflite`` (or take a Graph) and export it as C; return a summary.

    Summary keys: ``files`` (written paths as str), ``arena_bytes``, ``scratch_bytes``,
    ``const_bytes`` (flash data: const arrays and parameter structs), ``flash_bytes_estimate``
    (the Cortex-M4 bare firmware's ``text + data``: :func:`.footprint.c_footprint`, the same
    figure ``microquant fit`` uses), ``ops`` (op counts), ``planner``.
    """
    from microquant.ir.graph import Graph

    graph = model_path if isinstance(model_path, Graph) else None
    if graph is None:
        path = Path(model_path)
        if not path.is_file():
            raise MicroquantError(f"model file {path} does not exist")
        graph = _load_graph(path)
    model = generate(graph, prefix)
    files = write_model(model, Path(out_dir), prefix)
    footprint = c_footprint(graph, model=model)
    ops: dict[str, int] = {}
    for op in graph.ops():
        ops[op] = ops.get(op, 0) + 1
    return {
        "files": [str(p) for p in files],
        "arena_bytes": model.arena_bytes,
        "scratch_bytes": model.scratch_bytes,
        "const_bytes": model.const_bytes,
        "flash_bytes_estimate": footprint.flash_total,
        "ops": ops,
        "planner": model.planner,
    }
