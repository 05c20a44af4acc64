"""Open a user's model file as a TFLite-level :class:`Graph`, whatever its format.

``.tflite`` files (recognised by the ``TFL3`` flatbuffer identifier, whatever the suffix)
are read as written; ONNX files are imported, normalized and lowered, i.e. the float
TFLite-level graph the quantizer starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph

TFLITE_IDENTIFIER = b"TFL3"


@dataclass
class ModelFile:
    path: Path
    kind: str  # "onnx" | "tflite"
    data: bytes


def open_model(path: str | Path) -> ModelFile:
    """Read ``path`` and decide its format; missing or empty files are user errors."""
    p = Path(path)
    if not p.is_file():
        raise MicroquantError(f"model file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MicroquantError(f"cannot read {p}: {e.strerror}") from None
    if not data:
        raise MicroquantError(f"model file is empty: {p}")
    if data[4:8] == TFLITE_IDENTIFIER:
        return ModelFile(p, "tflite", data)
    if p.suffix.lower() == ".tflite":
        raise MicroquantError(f"{p} is not a .tflite model (no TFL3 identifier)")
    return ModelFile(p, "onnx", data)


def load_onnx_lowered(path: str | Path) -> tuple[Graph, Graph]:
    """``(normalized ONNX-level graph, lowered float TFLite-level graph)`` of an ONNX file."""
    from microquant.ir.onnx_io import load_onnx
    from microquant.passes import lower, normalize

    normalized = _graph(normalize(load_onnx(path)))
    lowered = _graph(lower(normalized.copy()))
    return normalized, lowered


def _graph(result: Graph | tuple[Graph, bool]) -> Graph:
    # Passes may return ``(graph, modified)``; the public wrappers return the graph.
    return result[0] if isinstance(result, tuple) else result


def load_graph(path: str | Path) -> tuple[ModelFile, Graph]:
    """The model file plus its TFLite-level graph (read or lowered)."""
    mf = open_model(path)
    if mf.kind == "tflite":
        from microquant.ir.tflite_read import read_tflite

        return mf, read_tflite(mf.data)
    return mf, load_onnx_lowered(mf.path)[1]
