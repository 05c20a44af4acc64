"""Per-layer quantization error analysis: which layer hurts, why, and what would fix it.

For every node of the int8 graph (one per node of the float lowered graph, same order)
and every sample, the float lowered graph and the int8 graph both run with ``run_all``;
each layer's dequantized int8 output is compared with the float one by its SQNR
(``10 log10(sum f**2 / sum (f - q)**2)`` dB over all samples). The modules, one concept each:

==============  ===========================================================================
``analysis``    :func:`analyze_layers` / :func:`analyze_graphs`, :class:`LayerReport`
``measure``     isolated and cumulative SQNR per layer (the measurement)
``simulate``    diagnostic fake-quantization runs (``weights``, ``weights_per_channel``,
                ``act8``, ``int16``) that tell the error sources apart
``statistics``  weight / activation ranges, channel spread, dead channels, outliers
``suggest``     the suggestion rules (:func:`suggest_fix`: per-channel, int16, float)
``fallback``    :func:`float_fallback`: the ``float`` fix as a graph transform
``sqnr``        :func:`sqnr_db`, :func:`compare_outputs` (model-level agreement + SQNR)
``values``      real values in / out of an int8 graph, :func:`run_dataset`
``pairing``     float / int8 node pairing and short layer labels
``present``     table rows and terminal text; ``cli``: :func:`layers_cli` (+ HTML report)
==============  ===========================================================================

Example (sketch):
    >>> rep = analyze_layers("model.onnx", "calib.npz")            # doctest: +SKIP
    >>> rep.worst[0], rep.suggestions[0]["fix"]                     # doctest: +SKIP
    ('conv2', 'float')
"""

from microquant.report.layers.analysis import (
    N_WORST,
    LayerReport,
    analyze_graphs,
    analyze_layers,
)
from microquant.report.layers.cli import layers_cli
from microquant.report.layers.fallback import float_fallback
from microquant.report.layers.present import (
    diagnosis_rows,
    display_rows,
    format_layers_text,
    summary_rows,
)
from microquant.report.layers.simulate import SIM_MODES
from microquant.report.layers.sqnr import MAX_SQNR_DB, compare_outputs, sqnr_db
from microquant.report.layers.statistics import (
    ACT_VALUES_CAP,
    DEAD_CHANNEL_RATIO,
    OUTLIER_SIGMAS,
    weight_values,
)
from microquant.report.layers.suggest import GAIN_DB, POOR_SQNR_DB, suggest_fix
from microquant.report.layers.values import run_dataset

__all__ = [
    "ACT_VALUES_CAP",
    "DEAD_CHANNEL_RATIO",
    "GAIN_DB",
    "MAX_SQNR_DB",
    "N_WORST",
    "OUTLIER_SIGMAS",
    "POOR_SQNR_DB",
    "SIM_MODES",
    "LayerReport",
    "analyze_graphs",
    "analyze_layers",
    "compare_outputs",
    "diagnosis_rows",
    "display_rows",
    "float_fallback",
    "format_layers_text",
    "layers_cli",
    "run_dataset",
    "sqnr_db",
    "suggest_fix",
    "summary_rows",
    "weight_values",
]
