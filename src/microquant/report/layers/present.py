"""Presentation of a layer analysis: short table cells and the terminal text.

The tables are lists of flat dicts (one per layer or model variant) that
:func:`microquant.report.table.format_table` and the HTML report render as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from microquant.report.layers.analysis import LayerReport
from microquant.report.layers.simulate import SIM_MODES
from microquant.report.layers.suggest import POOR_SQNR_DB


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
    """Isolated SQNR next to the simulated ones (:data:`SIM_MODES`), one row per layer."""
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
