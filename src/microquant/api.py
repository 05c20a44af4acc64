"""The library API: what the CLI calls, usable from Python directly.

Example:
    >>> import microquant.api as mq                                       # doctest: +SKIP
    >>> graph = mq.quantize_onnx("model.onnx", "calib.npz")              # doctest: +SKIP
    >>> mq.save_tflite(graph, "model.tflite")                            # doctest: +SKIP
    >>> mq.verify("model.tflite", random=16)["bit_exact"]                # doctest: +SKIP
    16
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph

CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")
DEFAULT_CALIBRATION = "percentile"
RUNTIMES = ("tflm", "litert", "ort", "reference")


def quantize_onnx(model_path: str | Path, calib_path: str | Path,
                  calibration: str = DEFAULT_CALIBRATION, float_io: bool = False,
                  progress: bool = True) -> Graph:
    """Float ONNX + calibration ``.npz`` -> full-integer int8 TFLite-level graph.

    Pipeline: import -> normalize -> lower (NHWC, fused activations) -> calibrate
    activation ranges with ONNX Runtime on the normalized graph -> quantize.
    ``float_io`` keeps float32 model inputs/outputs (QUANTIZE/DEQUANTIZE inside).
    """
    from microquant.quant.calib_data import load_calibration
    from microquant.quant.calibrate import calibrate
    from microquant.quant.quantize import quantize_graph
    from microquant.report.models import load_onnx_lowered

    if calibration not in CALIBRATION_METHODS:
        raise MicroquantError(
            f"unknown calibration {calibration!r}; choose from {', '.join(CALIBRATION_METHODS)}"
        )
    normalized, lowered = load_onnx_lowered(model_path)
    shapes = [normalized.tensor(n).shape for n in normalized.inputs]
    calib = load_calibration(calib_path, list(normalized.inputs), shapes)
    ranges = calibrate(normalized, lowered, calib, calibration, progress)
    return quantize_graph(lowered, ranges, float_io=float_io)


def to_tflite_bytes(graph: Graph) -> bytes:
    from microquant.ir.tflite_io import write_tflite

    return write_tflite(graph)


def write_file_atomic(data: bytes, out_path: str | Path) -> Path:
    """Write via a temp file in the target directory + ``os.replace``: readers never see
    a half-written file and a failure leaves nothing behind."""
    out = Path(out_path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise MicroquantError(f"output directory does not exist: {parent}")
    if out.is_dir():
        raise MicroquantError(f"output path is a directory: {out}")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise MicroquantError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tflite(graph: Graph, out_path: str | Path) -> int:
    """Serialize ``graph`` to ``out_path`` atomically; returns the file size in bytes."""
    data = to_tflite_bytes(graph)
    write_file_atomic(data, out_path)
    return len(data)


def evaluate(model_path: str | Path, data_path: str | Path,
             runtime: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Run a data set through a model (see :mod:`microquant.report.evaluate`):
    ``{"samples", "accuracy" (labels ``y`` present), "outputs": [stats...], ...}``.
    ``runtime`` defaults to ``tflm`` for ``.tflite`` files and ``ort`` for ONNX."""
    from microquant.report.evaluate import evaluate as _evaluate
    from microquant.report.models import open_model

    if runtime is None:
        runtime = "tflm" if open_model(model_path).kind == "tflite" else "ort"
    return _evaluate(model_path, data_path, runtime, progress)


def verify(tflite_path: str | Path, data_path: str | Path | None = None,
           random: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Our reference runtime vs TFLM (and LiteRT) sample by sample:
    ``{"bit_exact", "total", "max_abs_diff", "outputs": [...], "litert_agree_with_tflm"}``."""
    from microquant.report.verify import verify as _verify

    return _verify(tflite_path, data_path, random=random, seed=seed, progress=progress)


def inspect(model_path: str | Path) -> list[dict[str, Any]]:
    """Per-layer rows of a ``.tflite`` or (normalized + lowered) ``.onnx`` model."""
    from microquant.report.inspect import layer_rows
    from microquant.report.models import load_graph

    return layer_rows(load_graph(model_path)[1])
