"""CLI glue of ``inspect MODEL --calib CALIB --layers [--report DIR]``: analysis + report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microquant.errors import MicroquantError
from microquant.report.layers.analysis import analyze_layers
from microquant.report.layers.present import diagnosis_rows, display_rows, summary_rows
from microquant.report.layers.statistics import weight_values


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
