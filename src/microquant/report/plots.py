"""PNG figures for the layer report (matplotlib, Agg canvas - no display, no pyplot state).

* :func:`weight_histograms` - small multiples, one panel per weighted layer: the
  distribution of its float weights (log counts) with the int8 per-tensor grid's extent
  ``+-max|w|`` marked, the classic picture of weights clustered in a narrow band while one
  outlier stretches the range.
* :func:`sqnr_chart` - isolated and cumulative SQNR per layer, with the "poor" threshold.

Both write atomically and return the path.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.png"
    >>> weight_histograms({"fc": np.linspace(-1, 1, 50)}, p).read_bytes()[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError

N_COLS = 4
BINS = 101


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    from microquant.api import write_file_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_file_atomic(buf.getvalue(), path)


def weight_histograms(weights: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """One PNG with a histogram panel per ``{layer label: float weights}`` entry."""
    if not weights:
        raise MicroquantError("the model has no weighted layers to plot")
    n = len(weights)
    cols = min(N_COLS, n)
    rows = math.ceil(n / cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    for k, (label, w) in enumerate(weights.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        v = np.asarray(w, np.float64).reshape(-1)
        bound = float(np.max(np.abs(v))) if v.size else 1.0
        bound = bound if bound > 0 else 1.0
        ax.hist(v, bins=BINS, range=(-bound, bound), color="#3b6ea8", log=True)
        # Where 99% of the weights live, against the int8 grid's full extent.
        p99 = float(np.percentile(np.abs(v), 99)) if v.size else 0.0
        ax.axvspan(-p99, p99, color="#f2c14e", alpha=0.25, lw=0)
        for x in (-bound, bound):
            ax.axvline(x, color="#b33", lw=1)
        from matplotlib.ticker import NullFormatter

        ax.yaxis.set_minor_formatter(NullFormatter())  # log axis: label decades only
        ax.set_title(_short(label), fontsize=8)
        ax.tick_params(labelsize=6)
        ax.text(
            0.02,
            0.95,
            f"99%: |w|<{p99:.2g}\nmax {bound:.2g}",
            transform=ax.transAxes,
            fontsize=6,
            va="top",
        )
    fig.suptitle(
        "float weights per layer (log counts); red: int8 range, yellow: 99% of weights", fontsize=9
    )
    fig.tight_layout()
    return _save(fig, path)


def sqnr_chart(
    rows: Sequence[Mapping[str, Any]], path: str | Path, poor_db: float | None = None
) -> Path:
    """Grouped bars: isolated and cumulative SQNR (dB) per analysis row."""
    if poor_db is None:
        from microquant.report.layers import POOR_SQNR_DB

        poor_db = POOR_SQNR_DB
    if not rows:
        raise MicroquantError("no layers to plot")
    labels = [_short(str(r["label"])) for r in rows]
    iso = [r["sqnr_isolated_db"] for r in rows]
    cum = [r["sqnr_cumulative_db"] for r in rows]
    x = np.arange(len(rows))
    fig = _figure(max(6.0, 0.5 * len(rows) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x - 0.2, iso, 0.4, label="isolated", color="#3b6ea8")
    ax.bar(x + 0.2, cum, 0.4, label="cumulative", color="#e08a3c")
    ax.axhline(poor_db, color="#b33", lw=1, ls="--", label=f"poor < {poor_db:g} dB")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("SQNR (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else "..." + label[-(n - 3) :]
