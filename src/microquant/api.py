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
                  progress: bool = True, scheme: str = "int8",
                  per_channel: bool = True) -> Graph:
    """Float ONNX + calibration ``.npz`` -> full-integer TFLite-level graph.

    Pipeline: import -> normalize -> lower (NHWC, fused activations) -> calibrate
    activation ranges with ONNX Runtime on the normalized graph -> quantize with
    ``scheme`` (a TFLite scheme of :data:`microquant.quant.schemes.SCHEMES`: ``int8``,
    ``int16x8``, ``w4a8``). ``float_io`` keeps float32 model inputs/outputs
    (QUANTIZE/DEQUANTIZE inside). ``per_channel=False`` (``int8`` only) gives every weight one
    scale per tensor, as the TFLite converter does for FULLY_CONNECTED: slightly less accurate,
    but no per-channel parameters in the file (on FC-heavy models they cost ~12 bytes per
    output channel).
    """
    from microquant.quant.calib_data import load_calibration
    from microquant.quant.calibrate import calibrate
    from microquant.quant.schemes import SCHEMES
    from microquant.report.models import load_onnx_lowered

    if calibration not in CALIBRATION_METHODS:
        raise MicroquantError(
            f"unknown calibration {calibration!r}; choose from {', '.join(CALIBRATION_METHODS)}"
        )
    check_scheme(scheme, "tflite")
    opts: dict[str, Any] = {"float_io": float_io}
    if not per_channel:
        opts["per_channel"] = False
    normalized, lowered = load_onnx_lowered(model_path)
    shapes = [normalized.tensor(n).shape for n in normalized.inputs]
    calib = load_calibration(calib_path, list(normalized.inputs), shapes)
    ranges = calibrate(normalized, lowered, calib, calibration, progress)
    return SCHEMES[scheme](lowered, ranges, **opts)


# Every scheme name the toolkit knows, by the format that runs it: TFLite Micro runs the
# full-integer .tflite schemes, ONNX Runtime the ONNX ones (``int8``/``int16x8`` exist in
# both; their natural home is the .tflite).
TFLITE_SCHEME_NAMES = ("int8", "int16x8", "w4a8")
ONNX_SCHEME_NAMES = ("int8", "int16x8", "fp16", "dynamic", "w4", "w2", "w1")
SCHEME_NAMES = ("int8", "int16x8", "w4a8", "fp16", "dynamic", "w4", "w2", "w1")
OUTPUT_FORMATS = {".tflite": "tflite", ".onnx": "onnx"}


def available_schemes(fmt: str) -> tuple[str, ...]:
    """Scheme names whose exporter for ``fmt`` (``"tflite"`` or ``"onnx"``) is installed."""
    if fmt == "tflite":
        try:
            from microquant.quant.schemes import SCHEMES
        except ImportError:
            return ("int8",)
        return tuple(s for s in SCHEME_NAMES if s in SCHEMES)
    try:
        from microquant.export.onnx_qdq import quantize_to_onnx  # noqa: F401
        from microquant.quant.schemes_onnx import ALIASES, ONNX_SCHEMES
    except ImportError:
        return ()
    return tuple(s for s in SCHEME_NAMES if ALIASES.get(s, s) in ONNX_SCHEMES)


def output_format(out_path: str | Path) -> str:
    """``"tflite"`` or ``"onnx"`` from the output file's suffix."""
    suffix = Path(out_path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise MicroquantError(f"output must end in .tflite (TFLite Micro) or .onnx (ONNX "
                              f"Runtime), got {Path(out_path).name!r}")
    return OUTPUT_FORMATS[suffix]


def check_scheme(scheme: str, fmt: str) -> None:
    """Raise a one-line :class:`MicroquantError` when ``scheme`` is unknown, not installed
    or cannot be expressed in ``fmt``."""
    if scheme not in SCHEME_NAMES:
        raise MicroquantError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEME_NAMES)}")
    home = TFLITE_SCHEME_NAMES if fmt == "tflite" else ONNX_SCHEME_NAMES
    if scheme not in home:
        other = "an .onnx" if fmt == "tflite" else "a .tflite"
        raise MicroquantError(f"scheme {scheme!r} cannot be written as .{fmt} "
                              f"({', '.join(home)} can); use {other} output")
    if scheme not in available_schemes(fmt):
        raise MicroquantError(f"scheme {scheme!r} for .{fmt} output is not available in this "
                              "installation yet")


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
