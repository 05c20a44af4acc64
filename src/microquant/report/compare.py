"""Compare quantization schemes of one float ONNX model: size, accuracy, error, latency, fit.

For the float model and each scheme, the model is quantized (into a temporary directory),
then every sample of the data set runs through it in the scheme's natural runtime:

=======================  ======================================================
``int8 int16x8 w4a8``    ``.tflite`` in TensorFlow Lite Micro (the MCU runtime)
``fp16 dynamic w4 w2 w1`` ``.onnx`` in ONNX Runtime (CPU)
``float``                the input ``.onnx`` in ONNX Runtime
=======================  ======================================================

One row per model (float first):

* ``bytes`` - file size; ``compression`` = float file bytes / this file's bytes (x smaller);
* ``accuracy`` - top-1 accuracy against the labels ``y`` of the data (None without labels);
* ``agreement`` - fraction of samples whose top-1 equals the float model's;
* ``sqnr_db`` - output signal-to-quantization-noise ratio against the float outputs over all
  samples and outputs, ``10 log10(sum f^2 / sum (f - q)^2)`` (capped at 120 dB);
* ``latency_ms`` - median host wall time of one inference (one sample, including the
  quantization of float inputs and dequantization of outputs around the runtime call); a
  relative figure for this machine, not an MCU timing;
* ``fits`` - ``{target: bool}``: the model file fits the target's flash (file bytes <= flash
  size; the runtime's code is not counted). Flash sizes come from the target profiles
  (:mod:`microquant.targets`) or, without them, :data:`FALLBACK_FLASH`.

A scheme that is not installed yet is a row with ``status`` ``"not available"``; one that
fails on this model (e.g. an op without an int16 kernel) a row with ``status``
``"failed: <reason>"``; neither stops the comparison.

Example (sketch):
    >>> r = compare_schemes("m.onnx", "calib.npz", "data.npz", ["int8", "w4"])  # doctest: +SKIP
    >>> [(row["scheme"], row["status"]) for row in r["rows"]]                    # doctest: +SKIP
    [('float', 'ok'), ('int8', 'ok'), ('w4', 'ok')]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError

FLOAT = "float"
NATURAL_FORMAT = {
    "int8": "tflite", "int16x8": "tflite", "w4a8": "tflite",
    "fp16": "onnx", "dynamic": "onnx", "w4": "onnx", "w2": "onnx", "w1": "onnx",
}
DEFAULT_SCHEMES = tuple(NATURAL_FORMAT)
RUNTIME = {"tflite": "tflm", "onnx": "ort"}
# Flash sizes (bytes) of common MCUs, used only when the target profiles are not installed.
FALLBACK_FLASH = {
    "stm32g0b1": 512 * 1024, "nrf52840": 1024 * 1024, "stm32f746": 1024 * 1024,
    "rp2040": 2 * 1024 * 1024, "stm32l4r5": 2 * 1024 * 1024, "esp32": 4 * 1024 * 1024,
}


def parse_schemes(text: str | Sequence[str] | None) -> list[str]:
    """``"int8,w4"`` (or a list) -> validated names in order, duplicates and ``float``
    dropped; ``None`` -> every scheme. Unknown names raise :class:`MicroquantError`."""
    if text is None:
        return list(DEFAULT_SCHEMES)
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip() for item in items for s in item.split(",") if s.strip()]
    unknown = [s for s in names if s not in NATURAL_FORMAT and s != FLOAT]
    if unknown:
        raise MicroquantError(f"unknown scheme {unknown[0]!r}; choose from "
                              + ", ".join(DEFAULT_SCHEMES))
    out = list(dict.fromkeys(s for s in names if s != FLOAT))
    if not out:
        raise MicroquantError("no scheme to compare (the float model is always included)")
    return out


def flash_sizes() -> dict[str, int]:
    """``{target name: flash bytes}`` of the built-in target profiles (fallback table)."""
    try:
        from microquant.targets.profiles import builtin_targets
    except ImportError:
        return dict(FALLBACK_FLASH)
    return {name: t.flash for name, t in sorted(builtin_targets().items(), key=lambda kv:
                                                 (kv[1].flash, kv[0]))}


def output_sqnr_db(reference: Sequence[Sequence[np.ndarray]],
                   test: Sequence[Sequence[np.ndarray]]) -> float:
    from microquant.report.layers import compare_outputs

    return float(compare_outputs(reference, test)["output_sqnr_db"])


def _top1(outputs: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    return np.array([int(np.argmax(np.asarray(o[0]).reshape(-1))) for o in outputs])


def run_timed(runner: Any, data: Mapping[str, np.ndarray], n: int
              ) -> tuple[list[list[np.ndarray]], float]:
    """Every sample through ``runner`` (:class:`~microquant.report.evaluate.ModelRunner`):
    per-sample outputs and the median seconds per inference."""
    arrays = [data[name] for name in runner.input_names]
    outputs, times = [], []
    for i in range(n):
        sample = [a[i] for a in arrays]
        t0 = time.perf_counter()
        outputs.append(runner.run(sample))
        times.append(time.perf_counter() - t0)
    return outputs, statistics.median(times)


def _available(fmt: str) -> tuple[str, ...]:
    from microquant.api import available_schemes

    return available_schemes(fmt)


class _Quantizer:
    """Quantizes the model per scheme into ``work``; TFLite schemes share one calibration."""

    def __init__(self, model: Path, calib: Path | None, calibration: str, work: Path) -> None:
        self.model, self.calib, self.calibration, self.work = model, calib, calibration, work
        self._lowered: Any = None
        self._ranges: dict[str, tuple[float, float]] | None = None

    def _calibrated(self) -> tuple[Any, dict[str, tuple[float, float]]]:
        if self._ranges is None:
            from microquant.quant.calib_data import load_calibration
            from microquant.quant.calibrate import calibrate
            from microquant.report.models import load_onnx_lowered

            normalized, lowered = load_onnx_lowered(self.model)
            shapes = [normalized.tensor(n).shape for n in normalized.inputs]
            calib = load_calibration(self.calib, list(normalized.inputs), shapes)
            self._ranges = calibrate(normalized, lowered, calib, self.calibration, False)
            self._lowered = lowered
        return self._lowered, self._ranges

    def __call__(self, scheme: str) -> Path:
        fmt = NATURAL_FORMAT[scheme]
        out = self.work / f"{self.model.stem}.{scheme}.{fmt}"
        if fmt == "tflite":
            from microquant.api import to_tflite_bytes, write_file_atomic
            from microquant.quant.schemes import SCHEMES

            lowered, ranges = self._calibrated()
            write_file_atomic(to_tflite_bytes(SCHEMES[scheme](lowered, ranges)), out)
        else:
            from microquant.export.onnx_qdq import quantize_to_onnx
            from microquant.quant.schemes_onnx import needs_calibration

            calib = self.calib if needs_calibration(scheme) else None
            quantize_to_onnx(self.model, calib, scheme, out, calibration=self.calibration)
        return out


def compare_schemes(model_path: str | Path, calib_path: str | Path, data_path: str | Path,
                    schemes: str | Sequence[str] | None = None,
                    calibration: str | None = None, n_samples: int | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """The comparison (see the module docstring): ``{"model", "data", "samples",
    "labels", "float_bytes", "flash", "rows"}``; ``flash`` is ``{target: bytes}``."""
    from microquant.api import DEFAULT_CALIBRATION
    from microquant.report.evaluate import ModelRunner, load_dataset
    from microquant.report.models import open_model

    names = parse_schemes(schemes)
    model = Path(model_path)
    if open_model(model).kind != "onnx":
        raise MicroquantError("compare starts from the float ONNX model (it quantizes it "
                              "with every scheme)")
    if not Path(calib_path).is_file():
        raise MicroquantError(f"calibration file not found: {calib_path}")
    if n_samples is not None and n_samples < 1:
        raise MicroquantError(f"the number of samples must be at least 1, got {n_samples}")
    float_runner = ModelRunner(model, "ort")
    data, y = load_dataset(data_path, float_runner.input_names, float_runner.input_shapes)
    n = next(iter(data.values())).shape[0]
    n = n if n_samples is None else min(n, n_samples)
    y = None if y is None else y[:n]
    ref, ref_latency = run_timed(float_runner, data, n)
    float_bytes = model.stat().st_size
    flash = flash_sizes()
    ref_top1 = _top1(ref)

    def row(scheme: str, fmt: str, status: str, path: Path | None = None,
            outputs: list[list[np.ndarray]] | None = None, latency: float | None = None
            ) -> dict[str, Any]:
        r: dict[str, Any] = {"scheme": scheme, "format": fmt, "runtime": RUNTIME[fmt],
                             "status": status, "bytes": None, "compression": None,
                             "accuracy": None, "agreement": None, "sqnr_db": None,
                             "latency_ms": None, "fits": {}}
        if path is not None and outputs is not None and latency is not None:
            size = path.stat().st_size
            top1 = _top1(outputs)
            r.update(
                bytes=size, compression=float_bytes / size,
                accuracy=None if y is None else float(np.mean(top1 == y)),
                agreement=float(np.mean(top1 == ref_top1)),
                sqnr_db=None if scheme == FLOAT else output_sqnr_db(ref, outputs),
                latency_ms=1e3 * latency,
                fits={t: size <= f for t, f in flash.items()},
            )
        return r

    rows = [row(FLOAT, "onnx", "ok", model, ref, ref_latency)]
    method = calibration or DEFAULT_CALIBRATION
    with tempfile.TemporaryDirectory(prefix="mq_compare_") as tmp:
        quantize = _Quantizer(model, Path(calib_path), method, Path(tmp))
        for scheme in _progress(names, progress):
            fmt = NATURAL_FORMAT[scheme]
            if scheme not in _available(fmt):
                rows.append(row(scheme, fmt, "not available"))
                continue
            try:
                path = quantize(scheme)
                outputs, latency = run_timed(ModelRunner(path, RUNTIME[fmt]), data, n)
            except MicroquantError as e:
                rows.append(row(scheme, fmt, "failed: " + " ".join(str(e).split())))
                continue
            rows.append(row(scheme, fmt, "ok", path, outputs, latency))
    return {"model": str(model), "data": str(data_path), "samples": int(n),
            "labels": y is not None, "calibration": method, "float_bytes": float_bytes,
            "flash": flash, "rows": rows}


def _progress(names: list[str], enabled: bool):
    if not enabled:
        return names
    from tqdm import tqdm

    return tqdm(names, desc="compare", unit="scheme", leave=False)


# -- presentation --------------------------------------------------------------------------
def _fits_text(fits: Mapping[str, bool]) -> str | None:
    if not fits:
        return None
    ok = [t for t, v in fits.items() if v]
    if len(ok) == len(fits):
        return "all"
    return ", ".join(ok) if ok else "none"


def display_rows(result: Mapping[str, Any], per_target: bool = False) -> list[dict[str, Any]]:
    """Rows as short cells for text/HTML tables (``per_target``: one yes/no column per
    target instead of the single ``fits flash`` column)."""
    out = []
    for r in result["rows"]:
        d: dict[str, Any] = {
            "scheme": r["scheme"],
            "runtime": r["runtime"] if r["status"] == "ok" else r["status"],
            "KB": None if r["bytes"] is None else round(r["bytes"] / 1024, 1),
            "x smaller": None if r["compression"] is None else round(r["compression"], 2),
        }
        if result["labels"]:
            d["accuracy %"] = None if r["accuracy"] is None else round(100 * r["accuracy"], 2)
        d["agreement %"] = None if r["agreement"] is None else round(100 * r["agreement"], 2)
        d["SQNR dB"] = None if r["sqnr_db"] is None else round(r["sqnr_db"], 1)
        d["ms/inference"] = None if r["latency_ms"] is None else round(r["latency_ms"], 3)
        if per_target:
            for t in result["flash"]:
                d[t] = r["fits"].get(t)
        else:
            d["fits flash"] = _fits_text(r["fits"])
        out.append(d)
    return out


def format_compare_text(result: Mapping[str, Any]) -> str:
    from microquant.report.table import format_table

    flash = ", ".join(f"{t} {v // 1024} KB" for t, v in result["flash"].items())
    lines = [
        format_table(display_rows(result)),
        "",
        f"{result['samples']} samples of {result['data']}; agreement = top-1 agreement with "
        "the float model; SQNR of the outputs vs float; ms/inference on this host (TFLite "
        "Micro for .tflite, ONNX Runtime for .onnx)",
        f"fits flash = model file <= flash size: {flash}",
    ]
    for key in ("plot", "html"):
        if result.get(key):
            lines.append(f"{key}: {result[key]}")
    return "\n".join(lines)


def plot_accuracy_vs_size(result: Mapping[str, Any], path: str | Path) -> Path:
    """Scatter of accuracy (or agreement with float, without labels) against file size
    (log scale), one labelled point per measured row; written atomically as PNG."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from microquant.api import write_file_atomic

    key = "accuracy" if result["labels"] else "agreement"
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    points = [(r["bytes"] / 1024, 100 * r[key]) for r in rows]
    xs, vs = [p[0] for p in points] or [1.0], [p[1] for p in points] or [0.0]
    # "Near" = within ~a label's width / height at this figure size.
    x_near = 0.12 * max(float(np.log10(max(xs) / min(xs))), 0.3)
    y_near = 0.05 * max(max(vs) - min(vs), 1.0)
    placed: list[tuple[float, float, int]] = []  # (x, value, label level) of earlier labels
    for r, (x, v) in zip(rows, points, strict=True):
        color = "#b33" if r["scheme"] == FLOAT else (
            "#3b6ea8" if r["format"] == "tflite" else "#e08a3c")
        ax.scatter([x], [v], color=color, s=36, zorder=3)
        # Stack the labels of points that (nearly) coincide instead of overprinting them.
        level = 0
        while any(abs(np.log10(x / px)) < x_near and abs(v - pv) < y_near and pl == level
                  for px, pv, pl in placed):
            level += 1
        placed.append((x, v, level))
        ax.annotate(r["scheme"], (x, v), textcoords="offset points", xytext=(5, 4 + 10 * level),
                    fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.25)  # room for the labels
    ax.set_xlabel("model file size (KB, log scale)")
    ax.set_ylabel("top-1 accuracy (%)" if key == "accuracy" else
                  "top-1 agreement with float (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{Path(result['model']).name}: {key} vs size", fontsize=9)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=lab) for c, lab in (
        ("#3b6ea8", ".tflite in TFLite Micro"), ("#e08a3c", ".onnx in ONNX Runtime"),
        ("#b33", "float (ONNX Runtime)"))], fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_file_atomic(buf.getvalue(), path)


def write_compare_report(result: Mapping[str, Any], out_dir: str | Path,
                         plot: str | Path | None = None) -> Path:
    """``out_dir/report.html``: the table (per-target fit columns), the plot, the notes."""
    from microquant.report.html import Section, write_html_report

    sections = [
        Section("Schemes", table=display_rows(result, per_target=True),
                text=f"{result['samples']} samples of {result['data']}. Agreement: top-1 "
                     "agreement with the float model. SQNR: outputs vs float. ms/inference: "
                     "median host time (TFLite Micro for .tflite, ONNX Runtime for .onnx). "
                     "Target columns: the model file fits the target's flash."),
        Section("Flash sizes", table=[{"target": t, "flash KB": v // 1024}
                                      for t, v in result["flash"].items()]),
    ]
    if plot is not None:
        sections.insert(1, Section("Accuracy vs size", image=plot))
    return write_html_report(out_dir, f"microquant compare: {Path(result['model']).name}",
                             sections)
