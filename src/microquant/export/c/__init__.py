"""Standalone integer-only C export (:func:`export_c`) and its Cortex-M tooling.

The generator (:mod:`.c_model`) writes ``<prefix>.h/.c`` plus the hand-written C99 kernel
library in ``lib/`` (bit-exact with the reference runtime and TFLite Micro);
:mod:`.arena` plans the static activation arena; :mod:`.toolchain` builds and runs the
export on the host and on Cortex-M (QEMU).
"""

from __future__ import annotations

from pathlib import Path

from microquant.errors import MicroquantError
from microquant.export.c.arena import plan_offsets
from microquant.export.c.c_model import export_c, generate, write_model
from microquant.export.c.ops import SUPPORTED_OPS

__all__ = ["SUPPORTED_OPS", "code_bytes_estimate", "export_c", "export_c_cli", "plan_offsets"]

# Cortex-M4 code bytes of the library's functions (arm-none-eabi-gcc 12, -O2, measured with
# arm-none-eabi-nm -S); a model links only the kernels it uses (--gc-sections). The whole
# library is ~16 KB at -O2 and ~5.5 KB at -Os.
_FUNC_BYTES = {
    "conv": 674, "dot": 2234, "dw": 1172 + 2064, "fc": 148, "pool": 672, "add": 3518,
    "mul": 796, "bcast": 102, "mean": 596, "walk": 80, "copy": 16, "pad": 166, "concat": 80,
    "transpose": 132, "softmax": 632, "logistic": 624, "tanh": 612, "exp": 476 + 56,
    "newton": 296, "requant": 356, "clamp": 58,
}
_OP_FUNCS = {
    "CONV_2D": ("conv", "dot"), "DEPTHWISE_CONV_2D": ("dw",), "FULLY_CONNECTED": ("fc", "dot"),
    "AVERAGE_POOL_2D": ("pool",), "MAX_POOL_2D": ("pool",), "ADD": ("add", "bcast"),
    "MUL": ("mul", "bcast"), "MEAN": ("mean", "walk"), "RESHAPE": ("copy",),
    "PAD": ("pad", "walk"), "CONCATENATION": ("concat",), "TRANSPOSE": ("transpose", "walk"),
    "SOFTMAX": ("softmax", "exp", "newton"), "LOGISTIC": ("logistic", "exp", "newton"),
    "TANH": ("tanh", "exp", "newton"), "RELU": ("requant",), "QUANTIZE": ("requant",),
    "RELU6": ("clamp",),
}
_BASE_CODE_BYTES = 1200  # invoke function, memcpy/memset/memmove, integer helpers


def code_bytes_estimate(ops: list[str]) -> int:
    """Approximate Cortex-M4 (-O2) code bytes of the kernels a model with ``ops`` links."""
    funcs = {f for op in set(ops) for f in _OP_FUNCS.get(op, ())}
    return _BASE_CODE_BYTES + sum(_FUNC_BYTES[f] for f in funcs)


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
    ``const_bytes`` (flash data), ``flash_bytes_estimate`` (const data + Cortex-M4 code
    estimate, :func:`code_bytes_estimate`), ``ops`` (op counts), ``planner``.
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
    ops: dict[str, int] = {}
    for op in graph.ops():
        ops[op] = ops.get(op, 0) + 1
    return {
        "files": [str(p) for p in files],
        "arena_bytes": model.arena_bytes,
        "scratch_bytes": model.scratch_bytes,
        "const_bytes": model.const_bytes,
        "flash_bytes_estimate": model.const_bytes + code_bytes_estimate(graph.ops()),
        "ops": ops,
        "planner": model.planner,
    }
