"""Per-layer quantization error analysis: which layer hurts, why, and what would fix it.

For every node of the int8 graph (one per node of the float lowered graph, same order)
and every sample, the float lowered graph and the int8 graph both run with ``run_all``.
Signal-to-quantization-noise ratios compare a dequantized int8 tensor ``q`` with the float
tensor ``f`` of the same name, accumulated over all samples::

    SQNR = 10 * log10(sum f**2 / sum (f - q)**2)   [dB]   (exact match -> MAX_SQNR_DB)

* **isolated** - only this layer quantized: its activation inputs are the float values
  quantized with the int8 graph's parameters, the integer kernel runs, the output is
  dequantized. Everything before it is float, so this is the layer's own error.
* **cumulative** - every layer up to and including this one quantized (the int8 graph's
  own tensor), i.e. the error a deployed model carries at this point.

Diagnostic SQNRs simulate the layer with its float kernel and fake quantization
(``dequantize(quantize(x))``) to tell the causes apart: ``weights`` (the int8 graph's
weights, float activations), ``weights_per_channel`` (symmetric per-channel int8 weights),
``act8`` (float weights, int8 input/output activations) and ``int16`` (per-channel int8
weights, symmetric int16 activations over the int8 range widened to the largest observed
value: a 16x8 model calibrated without clipping).

Layers whose isolated SQNR is below ``POOR_SQNR_DB`` get one suggestion:

1. ``per-channel`` - weights are per-tensor and per-channel weights gain >= ``GAIN_DB``;
2. ``int16-activations`` - the error is activation-range bound: int16 activations gain
   >= ``GAIN_DB`` and reach ``POOR_SQNR_DB``;
3. ``float`` - otherwise: even the best settings stay poor, leave the layer in float
   (:func:`float_fallback` builds that graph: DEQUANTIZE -> float op -> QUANTIZE). The
   analysis applies all ``float`` suggestions and *measures* the model again.

Statistics per layer: weight min/max, ``weight_channel_spread`` (largest / median
per-output-channel max |w|, over live channels), ``weight_dead_channels`` (max |w| below
``DEAD_CHANNEL_RATIO`` x the layer's), ``weight_outliers`` (weights farther than 6 robust
sigmas, ``1.4826 * MAD``, from their live output channel's median), observed output activation
min/max, the int8 representable range, ``act_p9999`` (99.99th percentile of |x|) and
``act_outlier_frac`` (fraction of values farther than 6 sigma from the tensor's mean).

Example (sketch):
    >>> rep = analyze_layers("model.onnx", "calib.npz")            # doctest: +SKIP
    >>> rep.worst[0], rep.suggestions[0]["fix"]                     # doctest: +SKIP
    ('conv2', 'float')
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.quant.primitives import QMAX, QMIN, dequantize, quantize
from microquant.quant.quantize import WEIGHT_AXIS
from microquant.runtime.evaluator import Evaluator

MAX_SQNR_DB = 120.0  # reported for an exact match (no noise at all)
POOR_SQNR_DB = 25.0  # isolated SQNR below this: the layer gets a suggestion
GAIN_DB = 6.0  # a fix must win at least this much (one bit) to be suggested
N_WORST = 3
OUTLIER_SIGMAS = 6.0
DEAD_CHANNEL_RATIO = 1e-6  # channel max |w| below this x the layer max: a dead channel
ACT_VALUES_CAP = 1 << 20  # activation values kept per tensor for percentiles
SIM_MODES = ("weights", "weights_per_channel", "act8", "int16")


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


# -- entry points ------------------------------------------------------------------
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
    pairs = _node_pairs(lowered, quantized)
    n = _sample_count(lowered, samples)
    fev = Evaluator(lowered, mode="float")
    qev = Evaluator(quantized, mode="int")
    # First pass (float only): every activation's observed range, for the int16 simulation.
    observed: dict[str, float] = {}
    for s in range(n):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in lowered.inputs}
        for name, v in fev.run_all(feeds).items():
            t = lowered.tensors.get(name)
            if t is not None and not t.is_const and np.size(v):
                observed[name] = max(observed.get(name, 0.0), float(np.max(np.abs(v))))
    stats = _LayerStats(lowered, quantized, pairs, observed)
    float_outputs: list[list[np.ndarray]] = []
    int_outputs: list[list[np.ndarray]] = []
    for s in _progress(n, progress):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in lowered.inputs}
        fvals = fev.run_all(feeds)
        qvals = qev.run_all(_quantize_feeds(quantized, feeds))
        stats.update(fvals, qvals, qev)
        float_outputs.append([fvals[o] for o in lowered.outputs])
        int_outputs.append([_real(quantized.tensor(o), qvals[o]) for o in quantized.outputs])

    rows = stats.rows()
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


def suggest_fix(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The suggestion for one analysis row (``None`` when its isolated SQNR is fine).
    The rules are listed in the module docstring."""
    iso = row["sqnr_isolated_db"]
    if iso >= POOR_SQNR_DB:
        return None
    sim = row["sim_sqnr_db"]
    base = {
        "layer": row["label"],
        "name": row["name"],
        "index": row["index"],
        "sqnr_isolated_db": iso,
    }
    w_cur, w_pc, int16 = sim.get("weights"), sim.get("weights_per_channel"), sim.get("int16")
    if row.get("weight_scheme") == "per-tensor" and w_pc is not None and w_pc - w_cur >= GAIN_DB:
        return {
            **base,
            "fix": "per-channel",
            "reason": f"per-tensor weights: {w_cur:.1f} dB, per-channel {w_pc:.1f} dB",
        }
    if int16 is not None and int16 - iso >= GAIN_DB and int16 >= POOR_SQNR_DB:
        clips = "act_quant_max" in row and (
            row["act_max"] > row["act_quant_max"] * 1.001
            or row["act_min"] < row["act_quant_min"] * 1.001
        )
        return {
            **base,
            "fix": "int16-activations",
            "reason": f"activation-range bound: int8 activations {sim['act8']:.1f} dB, "
            f"int16 {int16:.1f} dB"
            + ("; the int8 output range clips observed values" if clips else ""),
        }
    best = max(v for v in (iso, int16) if v is not None)
    return {
        **base,
        "fix": "float",
        "reason": f"poor even at best settings ({best:.1f} dB); weights "
        f"{_fmt_db(w_pc)}, int8 activations {_fmt_db(sim.get('act8'))}",
    }


# -- applying the float fix --------------------------------------------------------------
def float_fallback(quantized: Graph, lowered: Graph, layers: Iterable[str]) -> Graph:
    """A copy of ``quantized`` where each named layer (node name or report label) runs in
    float: ``DEQUANTIZE`` of its int8 inputs -> the float op with the float weights of
    ``lowered`` -> ``QUANTIZE`` back to the original int8 output tensor. A float layer
    reading another float layer's output takes the float value directly (the int8 copy
    stays only for other consumers). Runs in the reference :class:`Evaluator` (mixed
    graphs run float nodes with ``run_float``)."""
    pairs = _node_pairs(lowered, quantized)
    labels = _labels(quantized)
    wanted = set(layers)
    g = quantized.copy()
    targets = {i for i, n in enumerate(g.nodes) if n.name in wanted or labels[i] in wanted}
    found = {g.nodes[i].name for i in targets} | {labels[i] for i in targets}
    missing = sorted(wanted - found)
    if missing:
        raise MicroquantError(f"no layer named {missing[0]!r} in the quantized graph")
    nodes: list[Node] = []
    float_of: dict[str, str] = {}  # int8 output of a float layer -> its float value
    for i, node in enumerate(g.nodes):
        if i not in targets:
            nodes.append(node)
            continue
        lnode = pairs[i][0]
        new_inputs: list[str] = []
        for k, name in enumerate(node.inputs):
            t = g.tensors.get(name) if name else None
            if t is None:
                new_inputs.append("")
            elif t.is_const:
                src = lnode.inputs[k] if k < len(lnode.inputs) else ""
                if not src:  # e.g. the zero bias quantize_graph creates
                    new_inputs.append("")
                    continue
                c = g.add_const(f"{src}_float", np.array(lowered.tensor(src).data, copy=True))
                new_inputs.append(c.name)
            elif t.dtype == "float32":
                new_inputs.append(name)
            elif name in float_of:  # adjacent float layers: no int8 round trip between
                new_inputs.append(float_of[name])
            else:
                f = g.add_tensor(Tensor(g.unique_name(f"{name}_dequantized"), t.shape))
                nodes.append(Node("DEQUANTIZE", [name], [f.name], {}, f"{node.name}_dequantize"))
                new_inputs.append(f.name)
        outs, requant = [], []
        for name in node.outputs:
            t = g.tensor(name)
            f = g.add_tensor(Tensor(g.unique_name(f"{name}_float"), t.shape))
            outs.append(f.name)
            float_of[name] = f.name
            requant.append(Node("QUANTIZE", [f.name], [name], {}, f"{node.name}_quantize"))
        node.inputs, node.outputs = new_inputs, outs
        nodes += [node, *requant]
    g.nodes = nodes
    g.remove_unused()
    g.meta = dict(g.meta)
    g.meta["float_layers"] = sorted(wanted)
    return g


def run_dataset(
    graph: Graph, samples: Mapping[str, np.ndarray], n: int | None = None
) -> list[list[np.ndarray]]:
    """Real-valued outputs of ``graph`` (int8 inputs quantized, outputs dequantized) for
    the first ``n`` samples: a list per sample of one array per graph output."""
    ev = Evaluator(graph)
    n = _sample_count(graph, samples) if n is None else n
    out = []
    for s in range(n):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in graph.inputs}
        values = ev.run(_quantize_feeds(graph, feeds))
        out.append([_real(graph.tensor(o), v) for o, v in zip(graph.outputs, values, strict=True)])
    return out


def compare_outputs(
    reference: Sequence[Sequence[np.ndarray]], test: Sequence[Sequence[np.ndarray]]
) -> dict[str, Any]:
    """``top1_agreement`` (fraction of samples whose argmax over the first output's last
    axis matches; None for a single-value output) and ``output_sqnr_db`` (all outputs)."""
    sig = noise = 0.0
    agree = 0
    for ref, got in zip(reference, test, strict=True):
        for r, t in zip(ref, got, strict=True):
            r64, t64 = np.asarray(r, np.float64), np.asarray(t, np.float64).reshape(np.shape(r))
            sig += float(np.sum(r64 * r64))
            noise += float(np.sum((r64 - t64) ** 2))
        r0 = np.asarray(ref[0]).reshape(-1)
        agree += int(np.argmax(r0) == np.argmax(np.asarray(got[0]).reshape(-1)))
    single = np.asarray(reference[0][0]).size <= 1 if reference else True
    return {
        "top1_agreement": None if single else agree / max(len(reference), 1),
        "output_sqnr_db": sqnr_db(sig, noise),
    }


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` clamped to ``[-MAX_SQNR_DB, MAX_SQNR_DB]``.

    >>> sqnr_db(100.0, 1.0), sqnr_db(1.0, 0.0)
    (20.0, 120.0)
    """
    if noise_power <= 0.0:
        return MAX_SQNR_DB
    if signal_power <= 0.0:
        return -MAX_SQNR_DB
    return float(np.clip(10.0 * math.log10(signal_power / noise_power), -MAX_SQNR_DB, MAX_SQNR_DB))


def weight_values(lowered: Graph) -> dict[str, np.ndarray]:
    """Float weights of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED by layer label."""
    labels = _labels(lowered)
    return {
        labels[i]: np.asarray(lowered.tensor(n.inputs[1]).data, np.float32)
        for i, n in enumerate(lowered.nodes)
        if n.op in WEIGHT_AXIS and lowered.const(n.inputs[1]) is not None
    }


# -- CLI glue ---------------------------------------------------------------------------
def layers_cli(
    model_path: str | Path,
    calib_path: str | Path,
    method: str = "minmax",
    out_dir: str | Path | None = None,
    n_samples: int | None = None,
) -> dict[str, Any]:
    """``inspect MODEL --calib CALIB --layers [--report DIR]``: the analysis as a dict
    (:meth:`LayerReport.to_dict`) plus ``histograms`` (PNG paths) and ``html`` (the
    report page) - both written only when ``out_dir`` is given (created if needed)."""
    from microquant.report.html import Section, write_html_report
    from microquant.report.models import load_onnx_lowered, open_model

    if open_model(model_path).kind != "onnx":
        raise MicroquantError("--layers analyzes a float ONNX model (it quantizes it itself)")
    report = analyze_layers(model_path, calib_path, method, n_samples)
    result = report.to_dict()
    result["histograms"], result["html"] = [], None
    if out_dir is None:
        return result
    from microquant.report import plots

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroquantError(f"cannot create report directory {out}: {e.strerror}") from None
    weights = weight_values(load_onnx_lowered(model_path)[1])
    hist = plots.weight_histograms(weights, out / "weight_histograms.png")
    chart = plots.sqnr_chart(report.rows, out / "sqnr.png")
    result["histograms"] = [str(hist)]
    sections = [
        Section("Summary", table=summary_rows(report)),
        Section("Suggestions", table=report.suggestions or [{"suggestion": "none needed"}]),
        Section("SQNR per layer", image=chart),
        Section("Layers", table=display_rows(report.rows)),
        Section(
            "Error sources (simulated SQNR, dB)",
            table=diagnosis_rows(report.rows),
            text="Each layer alone with fake quantization: weights = the int8 model's "
            "weights with float activations; per-channel = symmetric per-channel "
            "int8 weights; act8 = float weights, int8 input/output; int16 = "
            "per-channel int8 weights with int16 activations.",
        ),
        Section("Weight histograms", image=hist),
    ]
    title = f"microquant layer analysis: {report.model}"
    result["html"] = str(write_html_report(out, title, sections))
    return result


def summary_rows(report: LayerReport) -> list[dict[str, Any]]:
    """One row per evaluated model variant (int8, float fallback) for tables."""
    rows = []
    for variant, s in report.summary.items():
        row = {
            "model": variant,
            "samples": report.samples,
            "top-1 agreement": s["top1_agreement"],
            "output SQNR dB": s["output_sqnr_db"],
        }
        if "layers" in s:
            row["float layers"] = ", ".join(s["layers"])
        rows.append(row)
    return rows


def display_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Analysis rows flattened to short cells for text/HTML tables."""
    out = []
    for r in rows:
        out.append(
            {
                "#": r["index"],
                "layer": r["label"],
                "op": r["op"],
                "isolated dB": round(r["sqnr_isolated_db"], 1),
                "cumulative dB": round(r["sqnr_cumulative_db"], 1),
                "weights": (
                    f"[{r['weight_min']:.3g}, {r['weight_max']:.3g}]" if "weight_min" in r else "-"
                ),
                "ch spread": (
                    round(r["weight_channel_spread"], 1) if "weight_channel_spread" in r else None
                ),
                "w outliers": r.get("weight_outliers"),
                "dead ch": r.get("weight_dead_channels"),
                "act range": f"[{r['act_min']:.3g}, {r['act_max']:.3g}]",
                "act p99.99": float(f"{r['act_p9999']:.3g}"),
            }
        )
    return out


def diagnosis_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Isolated SQNR next to the simulated ones (see module docstring), one row per layer."""
    out = []
    for r in rows:
        sim = r["sim_sqnr_db"]
        out.append(
            {
                "#": r["index"],
                "layer": r["label"],
                "isolated": round(r["sqnr_isolated_db"], 1),
                **{m: (round(sim[m], 1) if m in sim else None) for m in SIM_MODES},
                "weight scheme": r.get("weight_scheme"),
            }
        )
    return out


def format_layers_text(result: Mapping[str, Any]) -> str:
    """Terminal rendering of :func:`layers_cli`'s result: layer table, worst, suggestions."""
    from microquant.report.table import format_table

    lines = [format_table(display_rows(result["rows"])), ""]
    lines.append("worst layers (isolated SQNR): " + ", ".join(result["worst"]))
    for s in result["suggestions"]:
        lines.append(f"  {s['layer']}: {s['fix']} - {s['reason']}")
    if not result["suggestions"]:
        lines.append(f"no layer below {POOR_SQNR_DB:g} dB isolated SQNR: no fix suggested")
    for variant, s in result["summary"].items():
        agree = s["top1_agreement"]
        agree_txt = "-" if agree is None else f"{agree:.1%}"
        lines.append(
            f"{variant}: top-1 agreement with float {agree_txt}, "
            f"output SQNR {s['output_sqnr_db']:.1f} dB"
        )
    if result.get("html"):
        lines.append(f"report: {result['html']}")
    return "\n".join(lines)


# -- internals --------------------------------------------------------------------------
def _fmt_db(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} dB"


def _progress(n: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return range(n)
    from tqdm import tqdm

    return tqdm(range(n), desc="layer analysis", unit="sample", leave=False)


# Trailing name parts TF/ONNX converters append that say nothing about the layer.
_GENERIC_PARTS = {
    "ReadVariableOp",
    "resource",
    "resource1",
    "BiasAdd",
    "Conv2D",
    "Conv2D1",
    "depthwise",
    "MatMul",
    "FusedBatchNormV3",
}


def _short_name(name: str) -> str:
    """``a/b/conv2d_1/BiasAdd`` -> ``conv2d_1``; ``x/dense/Softmax`` -> ``dense/Softmax``.
    Fused TFLite names (``;``-joined) use their last part."""
    parts = [p for p in name.split(";")[-1].split("/") if p]
    kept = list(parts)
    while len(kept) > 1 and kept[-1] in _GENERIC_PARTS:
        kept.pop()
    return kept[-1] if len(kept) < len(parts) else "/".join(parts[-2:])


def _labels(graph: Graph) -> list[str]:
    """Short unique layer names (:func:`_short_name`, ``op_index`` for unnamed nodes;
    ``#index`` appended to duplicates)."""
    raw = [
        _short_name(n.name) if n.name else f"{n.op.lower()}_{i}" for i, n in enumerate(graph.nodes)
    ]
    seen: dict[str, int] = {}
    for s in raw:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{s}#{i}" for i, s in enumerate(raw)]


def _node_pairs(lowered: Graph, quantized: Graph) -> list[tuple[Node, Node]]:
    ln, qn = lowered.nodes, quantized.nodes
    if len(ln) != len(qn) or any(a.op != b.op for a, b in zip(ln, qn, strict=False)):
        raise MicroquantError(
            "the quantized graph does not match the float graph node for node "
            "(analyze a graph quantized without float I/O or fallbacks)"
        )
    return list(zip(ln, qn, strict=True))


def _sample_count(graph: Graph, samples: Mapping[str, np.ndarray]) -> int:
    missing = [k for k in graph.inputs if k not in samples]
    if missing:
        raise MicroquantError(f"no samples for model input {missing[0]!r}")
    counts = {len(samples[k]) for k in graph.inputs}
    if len(counts) != 1 or 0 in counts:
        raise MicroquantError("every model input needs the same, nonzero number of samples")
    return counts.pop()


def _quantize_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        x = np.asarray(feeds[name], np.float32).reshape(t.shape)
        out[name] = x if t.dtype == "float32" else _q(x, t)
    return out


def _q(x: np.ndarray, t: Tensor) -> np.ndarray:
    q = t.quant
    return quantize(x, q.scale, q.zero_point, t.dtype, q.axis if q.scale.size > 1 else None)


def _real(t: Tensor, value: np.ndarray) -> np.ndarray:
    """Real values of a tensor's value (float passes through, ints are dequantized)."""
    value = np.asarray(value)
    if value.dtype.kind == "f" or t.quant is None:
        return value.astype(np.float32)
    q = t.quant
    return dequantize(value, q.scale, q.zero_point, q.axis if q.scale.size > 1 else None)


def _fake_quant(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    q = quantize(np.asarray(x, np.float32), np.float32(scale), np.int64(zero_point), dtype)
    return dequantize(q, np.float32(scale), np.int64(zero_point))


def _int16_qparams(t: Tensor, observed: float = 0.0) -> tuple[float, int]:
    """Symmetric int16 parameters covering the int8 tensor's representable range and the
    largest |value| ``observed`` (with 16 bits there is no reason to clip)."""
    s, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    bound = max(abs(s * (QMIN["int8"] - zp)), abs(s * (QMAX["int8"] - zp)), observed)
    return (bound / QMAX["int16"] if bound > 0 else 1.0), 0


def _per_channel_fake(w: np.ndarray, axis: int) -> np.ndarray:
    w = np.asarray(w, np.float64)
    red = tuple(a for a in range(w.ndim) if a != axis)
    max_abs = np.max(np.abs(w), axis=red, keepdims=True)
    scale = np.where(max_abs > 0, max_abs / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _robust_outliers(w: np.ndarray, axis: int, live: np.ndarray) -> int:
    """Weights farther than OUTLIER_SIGMAS robust sigmas (1.4826 MAD) from their output
    channel's median, over the ``live`` (not all-near-zero) channels."""
    wc = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)[live]
    med = np.median(wc, axis=1, keepdims=True)
    sigma = 1.4826 * np.median(np.abs(wc - med), axis=1, keepdims=True)
    sigma = np.where(sigma > 0, sigma, np.inf)  # constant channel: no outliers
    return int(np.sum(np.abs(wc - med) > OUTLIER_SIGMAS * sigma))


class _Power:
    """Running signal / noise power sums for one SQNR."""

    __slots__ = ("noise", "signal")

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        r = np.asarray(ref, np.float64)
        t = np.asarray(test, np.float64).reshape(r.shape)
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum((r - t) ** 2))

    def db(self) -> float:
        return sqnr_db(self.signal, self.noise)


class _LayerStats:
    """Accumulates every per-layer number over samples; ``rows()`` reports them."""

    def __init__(
        self,
        lowered: Graph,
        quantized: Graph,
        pairs: list[tuple[Node, Node]],
        observed: dict[str, float],
    ):
        self.lowered, self.quantized, self.pairs = lowered, quantized, pairs
        self.observed = observed  # max |value| per activation over all samples
        self.labels = _labels(quantized)
        self.iso = [_Power() for _ in pairs]
        self.cum = [_Power() for _ in pairs]
        self.sim = [{m: _Power() for m in self._sim_modes(ln)} for ln, _ in pairs]
        self.act_lo = [math.inf] * len(pairs)
        self.act_hi = [-math.inf] * len(pairs)
        self.act_values: list[list[np.ndarray]] = [[] for _ in pairs]
        self.act_kept = [0] * len(pairs)
        self.pc_weights: dict[int, np.ndarray] = {
            i: _per_channel_fake(lowered.tensor(ln.inputs[1]).data, WEIGHT_AXIS[ln.op])
            for i, (ln, _) in enumerate(pairs)
            if self._weighted(ln)
        }

    def _weighted(self, node: Node) -> bool:
        return node.op in WEIGHT_AXIS and self.lowered.const(node.inputs[1]) is not None

    def _sim_modes(self, node: Node) -> tuple[str, ...]:
        return SIM_MODES if self._weighted(node) else ("act8", "int16")

    # -- per sample ---------------------------------------------------------------
    def update(self, fvals: dict, qvals: dict, qev: Evaluator) -> None:
        q = self.quantized
        for i, (ln, qn) in enumerate(self.pairs):
            ref = fvals[ln.outputs[0]]
            qt = q.tensor(qn.outputs[0])
            self.cum[i].add(ref, _real(qt, qvals[qn.outputs[0]]))
            ins = []
            for lname, qname in zip(ln.inputs, qn.inputs, strict=False):
                t = q.tensors.get(qname) if qname else None
                if t is None:
                    ins.append(None)
                elif t.is_const:
                    ins.append(t.data)
                else:
                    x = fvals[lname]
                    ins.append(x if t.dtype == "float32" else _q(x, t))
            if len(qn.inputs) > len(ln.inputs):  # a bias quantize_graph added
                ins += [q.tensor(n).data if n else None for n in qn.inputs[len(ln.inputs) :]]
            if qev.float_nodes[i]:
                out = qev.kernels[i].run_float(qn, q, ins)[0]
            else:
                out = qev.kernels[i].run(qev.params[i], ins)[0]
            out = np.asarray(out).reshape(qt.shape).astype(qt.dtype, copy=False)
            self.iso[i].add(ref, _real(qt, out))
            for mode, acc in self.sim[i].items():
                acc.add(ref, self._simulate(i, mode, fvals))
            self._observe(i, ref)

    def _simulate(self, i: int, mode: str, fvals: dict) -> np.ndarray:
        ln, qn = self.pairs[i]
        low, q = self.lowered, self.quantized
        weighted = self._weighted(ln)
        ins: list[np.ndarray | None] = []
        for k, (lname, qname) in enumerate(zip(ln.inputs, qn.inputs, strict=False)):
            lt = low.tensors.get(lname) if lname else None
            qt = q.tensors.get(qname) if qname else None
            if lt is None:
                ins.append(None)
            elif not lt.is_const:
                x = fvals[lname]
                if mode in ("act8", "int16") and qt is not None and qt.quant is not None:
                    x = self._fake_act(mode, qt, lname, x)
                ins.append(x)
            elif weighted and k == 1 and mode in ("weights_per_channel", "int16"):
                ins.append(self.pc_weights[i])
            elif weighted and k in (1, 2) and mode != "weights":
                ins.append(lt.data)  # float weights / bias
            elif np.asarray(lt.data).dtype.kind == "f" and qt is not None and qt.quant is not None:
                ins.append(_real(qt, qt.data))  # the int8 graph's constant, dequantized
            else:
                ins.append(lt.data)
        y = np.asarray(_kernel(ln.op).run_float(ln, low, ins)[0], np.float32)
        qt = q.tensor(qn.outputs[0])
        if mode in ("act8", "int16") and qt.quant is not None:
            y = self._fake_act(mode, qt, ln.outputs[0], y)
        return y

    def _fake_act(self, mode: str, qt: Tensor, name: str, x: np.ndarray) -> np.ndarray:
        """``x`` through int8 (the graph's parameters) or int16 (symmetric, no clipping)."""
        if mode == "act8":
            return _fake_quant(x, qt.quant.scale[0], qt.quant.zero_point[0], "int8")
        s, z = _int16_qparams(qt, self.observed.get(name, 0.0))
        return _fake_quant(x, s, z, "int16")

    def _observe(self, i: int, ref: np.ndarray) -> None:
        v = np.asarray(ref, np.float32).reshape(-1)
        if not v.size:
            return
        self.act_lo[i] = min(self.act_lo[i], float(v.min()))
        self.act_hi[i] = max(self.act_hi[i], float(v.max()))
        if self.act_kept[i] + v.size > ACT_VALUES_CAP:
            v = v[:: max(2, v.size // 1024)]  # past the cap: a strided subsample
        self.act_values[i].append(v)
        self.act_kept[i] += v.size

    # -- report -------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, (ln, qn) in enumerate(self.pairs):
            qt = self.quantized.tensor(qn.outputs[0])
            row: dict[str, Any] = {
                "index": i,
                "name": qn.name,
                "label": self.labels[i],
                "op": qn.op,
                "output_shape": list(qt.shape),
                "sqnr_isolated_db": self.iso[i].db(),
                "sqnr_cumulative_db": self.cum[i].db(),
                "sim_sqnr_db": {m: p.db() for m, p in self.sim[i].items()},
            }
            if self._weighted(ln):
                w = np.asarray(self.lowered.tensor(ln.inputs[1]).data, np.float64)
                axis = WEIGHT_AXIS[ln.op]
                red = tuple(a for a in range(w.ndim) if a != axis)
                ch = np.max(np.abs(w), axis=red)
                live = ch > DEAD_CHANNEL_RATIO * ch.max()  # all-(near-)zero channels aside
                med = float(np.median(ch[live])) if live.any() else 0.0
                wq = self.quantized.tensor(qn.inputs[1]).quant
                row.update(
                    {
                        "weight_shape": list(w.shape),
                        "weight_scheme": None
                        if wq is None
                        else ("per-channel" if wq.scale.size > 1 else "per-tensor"),
                        "weight_min": float(w.min()),
                        "weight_max": float(w.max()),
                        "weight_channel_absmax_min": float(ch.min()),
                        "weight_channel_absmax_max": float(ch.max()),
                        "weight_channel_spread": float(ch.max() / med) if med > 0 else None,
                        "weight_dead_channels": int(np.sum(~live)),
                        "weight_outliers": _robust_outliers(w, axis, live),
                        "weight_count": int(w.size),
                    }
                )
            row.update(self._act_row(i, qt))
            out.append(row)
        return out

    def _act_row(self, i: int, qt: Tensor) -> dict[str, Any]:
        vals = np.concatenate(self.act_values[i]) if self.act_values[i] else np.zeros(1)
        mean, std = float(vals.mean()), float(vals.std())
        frac = float(np.mean(np.abs(vals - mean) > OUTLIER_SIGMAS * std)) if std > 0 else 0.0
        row = {
            "act_min": self.act_lo[i] if self.act_values[i] else 0.0,
            "act_max": self.act_hi[i] if self.act_values[i] else 0.0,
            "act_p9999": float(np.percentile(np.abs(vals), 99.99)),
            "act_outlier_frac": frac,
        }
        if qt.quant is not None and qt.dtype in QMIN:
            s, zp = float(qt.quant.scale[0]), int(qt.quant.zero_point[0])
            row["act_quant_min"] = s * (QMIN[qt.dtype] - zp)
            row["act_quant_max"] = s * (QMAX[qt.dtype] - zp)
            row["act_scale"] = s
        return row


_KERNELS: dict[str, Any] = {}


def _kernel(op: str):
    from microquant.runtime.kernel import get_kernel

    if op not in _KERNELS:
        _KERNELS[op] = get_kernel(op)
    return _KERNELS[op]
