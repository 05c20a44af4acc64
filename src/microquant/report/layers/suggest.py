"""The suggestion rules: what would fix a layer whose isolated SQNR is poor.

A layer whose isolated SQNR is below ``POOR_SQNR_DB`` gets one suggestion, the first rule
that applies (simulated SQNRs from :mod:`~microquant.report.layers.simulate`):

1. ``per-channel`` - weights are per-tensor and per-channel weights gain >= ``GAIN_DB``;
2. ``int16-activations`` - the error is activation-range bound: int16 activations gain
   >= ``GAIN_DB`` and reach ``POOR_SQNR_DB``;
3. ``float`` - otherwise: even the best settings stay poor, leave the layer in float
   (:func:`~microquant.report.layers.fallback.float_fallback` builds that graph).

    >>> suggest_fix({"sqnr_isolated_db": 40.0, "sim_sqnr_db": {}}) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POOR_SQNR_DB = 25.0  # isolated SQNR below this: the layer gets a suggestion
GAIN_DB = 6.0  # a fix must win at least this much (one bit) to be suggested


def suggest_fix(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The suggestion for one analysis row (``None`` when its isolated SQNR is fine):
    ``{layer, name, index, sqnr_isolated_db, fix, reason}``. Rules: module docstring."""
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


def _fmt_db(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} dB"
