"""The layer analysis: run float and int8 graphs over the samples, one row per layer.

Two passes over the samples: the first (float only) records every activation's largest
|value| (the ``int16`` simulation's range); the second runs both graphs with ``run_all``
and feeds :class:`~microquant.report.layers.measure.LayerMeasurements` and
:class:`~microquant.report.layers.statistics.ActivationStats`. Rows get suggestions
(:func:`~microquant.report.layers.suggest.suggest_fix`); all ``float`` suggestions are then
applied together (:func:`~microquant.report.layers.fallback.float_fallback`) and that model
is *measured* too (``summary["float_fallback"]``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.quant.quantize import WEIGHT_AXIS
from microquant.report.layers.fallback import float_fallback
from microquant.report.layers.measure import LayerMeasurements
from microquant.report.layers.pairing import (
    align_lowered,
    is_weighted,
    layer_labels,
    node_pairs,
)
from microquant.report.layers.sqnr import compare_outputs
from microquant.report.layers.statistics import ActivationStats, weight_stats
from microquant.report.layers.suggest import suggest_fix
from microquant.report.layers.values import quantize_feeds, real, run_dataset, sample_count
from microquant.runtime.evaluator import Evaluator

N_WORST = 3


@dataclass
class LayerReport:
    """Result of :func:`analyze_layers`: one row per layer, the worst layers' names, the
    suggested fixes and model-level numbers (``summary``: top-1 agreement and output SQNR
    of the int8 model, and of the model with the ``float`` suggestions applied)."""

    model: str
    method: str
    samples: int
    rows: list[dict[str, Any]]
    worst: list[str]
    suggestions: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "samples": self.samples,
            "rows": self.rows,
            "worst": self.worst,
            "suggestions": self.suggestions,
            "summary": self.summary,
        }

    def row(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if name in (r["name"], r["label"]):
                return r
        raise MicroquantError(f"no layer named {name!r}")


def analyze_layers(
    onnx_path: str | Path,
    calib_path: str | Path,
    method: str = "minmax",
    n_samples: int | None = None,
    progress: bool = False,
) -> LayerReport:
    """Quantize ``onnx_path`` with ranges calibrated on ``calib_path`` (``method``) and
    analyze every layer on the first ``n_samples`` calibration samples (all when None)."""
    from microquant.quant.calib_data import load_calibration
    from microquant.quant.calibrate import calibrate
    from microquant.quant.quantize import quantize_graph
    from microquant.report.models import load_onnx_lowered

    if n_samples is not None and n_samples < 1:
        raise MicroquantError(f"n_samples must be at least 1, got {n_samples}")
    normalized, lowered = load_onnx_lowered(onnx_path)
    shapes = [normalized.tensor(n).shape for n in normalized.inputs]
    calib = load_calibration(calib_path, list(normalized.inputs), shapes)
    ranges = calibrate(normalized, lowered, calib, method, progress)
    quantized = quantize_graph(lowered, ranges)
    if n_samples is not None:
        calib = {k: v[:n_samples] for k, v in calib.items()}
    return analyze_graphs(
        lowered, quantized, calib, model=Path(onnx_path).name, method=method, progress=progress
    )


def analyze_graphs(
    lowered: Graph,
    quantized: Graph,
    samples: Mapping[str, np.ndarray],
    model: str = "",
    method: str = "",
    progress: bool = False,
) -> LayerReport:
    """The analysis of :func:`analyze_layers` for any int8 graph ``quantized`` made from
    the float ``lowered`` graph node for node (e.g. another quantization scheme).
    ``samples`` maps each graph input to ``(N, *input shape)`` float data."""
    lowered = align_lowered(lowered, quantized)  # inserted requantize nodes, if any
    pairs = node_pairs(lowered, quantized)
    n = sample_count(lowered, samples)
    fev = Evaluator(lowered, mode="float")
    qev = Evaluator(quantized, mode="int")
    observed = _observed_ranges(lowered, fev, samples, n)
    measured = LayerMeasurements(lowered, quantized, pairs, observed)
    acts = ActivationStats(len(pairs))
    float_outputs: list[list[np.ndarray]] = []
    int_outputs: list[list[np.ndarray]] = []
    for s in _progress(n, progress):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in lowered.inputs}
        fvals = fev.run_all(feeds)
        qvals = qev.run_all(quantize_feeds(quantized, feeds))
        measured.update(fvals, qvals, qev)
        for i, (ln, _) in enumerate(pairs):
            acts.observe(i, fvals[ln.outputs[0]])
        float_outputs.append([fvals[o] for o in lowered.outputs])
        int_outputs.append([real(quantized.tensor(o), qvals[o]) for o in quantized.outputs])

    rows = _rows(lowered, quantized, pairs, measured, acts)
    worst = [r["label"] for r in sorted(rows, key=lambda r: r["sqnr_isolated_db"])[:N_WORST]]
    suggestions = [s for r in rows if (s := suggest_fix(r)) is not None]
    summary = {"int8": compare_outputs(float_outputs, int_outputs)}
    float_layers = [s["name"] for s in suggestions if s["fix"] == "float"]
    if float_layers:
        fixed = float_fallback(quantized, lowered, float_layers)
        summary["float_fallback"] = {
            "layers": [s["layer"] for s in suggestions if s["fix"] == "float"],
            **compare_outputs(float_outputs, run_dataset(fixed, samples, n)),
        }
    return LayerReport(model, method, n, rows, worst, suggestions, summary)


def _observed_ranges(
    lowered: Graph, fev: Evaluator, samples: Mapping[str, np.ndarray], n: int
) -> dict[str, float]:
    """Max |value| of every float activation over the first ``n`` samples."""
    observed: dict[str, float] = {}
    for s in range(n):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in lowered.inputs}
        for name, v in fev.run_all(feeds).items():
            t = lowered.tensors.get(name)
            if t is not None and not t.is_const and np.size(v):
                observed[name] = max(observed.get(name, 0.0), float(np.max(np.abs(v))))
    return observed


def _rows(
    lowered: Graph,
    quantized: Graph,
    pairs: list[tuple[Node, Node]],
    measured: LayerMeasurements,
    acts: ActivationStats,
) -> list[dict[str, Any]]:
    """One report row per layer: identity, SQNRs, weight and activation statistics."""
    labels = layer_labels(quantized)
    out = []
    for i, (ln, qn) in enumerate(pairs):
        qt = quantized.tensor(qn.outputs[0])
        row: dict[str, Any] = {
            "index": i,
            "name": qn.name,
            "label": labels[i],
            "op": qn.op,
            "output_shape": list(qt.shape),
            **measured.fields(i),
        }
        if is_weighted(lowered, ln):
            w = lowered.tensor(ln.inputs[1]).data
            row.update(weight_stats(w, WEIGHT_AXIS[ln.op], quantized.tensor(qn.inputs[1]).quant))
        row.update(acts.fields(i, qt))
        out.append(row)
    return out


def _progress(n: int, enabled: bool) -> Iterable[int]:
    from microquant.report.evaluate import progress_range

    # A bar only on a terminal: redirected stderr (logs, CI) stays clean.
    return progress_range(n, enabled and sys.stderr.isatty(), "layer analysis")
