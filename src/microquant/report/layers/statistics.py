"""Per-layer weight and activation statistics: ranges, channel spread, outliers.

Weights (constant input 1 of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, float):
min/max, per-output-channel max |w| range, ``weight_channel_spread`` (largest / median
channel max |w|, over live channels), ``weight_dead_channels`` (channel max |w| below
``DEAD_CHANNEL_RATIO`` x the layer's) and ``weight_outliers`` (weights farther than
``OUTLIER_SIGMAS`` robust sigmas, ``1.4826 * MAD``, from their live channel's median).

Activations (each layer's float output over the samples): observed min/max, the int8
representable range, ``act_p9999`` (99.99th percentile of |x|) and ``act_outlier_frac``
(fraction of values farther than ``OUTLIER_SIGMAS`` sigma from the tensor's mean).

    >>> w = np.tile(np.linspace(-1.0, 1.0, 50), (2, 1)); w[0, 3] = 40.0
    >>> robust_outliers(w, 0, np.array([True, True]))
    1
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from microquant.ir.graph import Graph, QuantParams, Tensor
from microquant.quant.primitives import QMAX, QMIN
from microquant.report.layers.pairing import is_weighted, layer_labels

OUTLIER_SIGMAS = 6.0
DEAD_CHANNEL_RATIO = 1e-6  # channel max |w| below this x the layer max: a dead channel
ACT_VALUES_CAP = 1 << 20  # activation values kept per tensor for percentiles


def robust_outliers(w: np.ndarray, axis: int, live: np.ndarray) -> int:
    """Weights farther than OUTLIER_SIGMAS robust sigmas (1.4826 MAD) from their output
    channel's median, over the ``live`` (not all-near-zero) channels."""
    wc = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)[live]
    med = np.median(wc, axis=1, keepdims=True)
    sigma = 1.4826 * np.median(np.abs(wc - med), axis=1, keepdims=True)
    sigma = np.where(sigma > 0, sigma, np.inf)  # constant channel: no outliers
    return int(np.sum(np.abs(wc - med) > OUTLIER_SIGMAS * sigma))


def weight_stats(w: np.ndarray, axis: int, quant: QuantParams | None) -> dict[str, Any]:
    """The ``weight_*`` report fields of float weights ``w`` (output channels along
    ``axis``); ``quant`` is the int8 graph's weight quantization (for the scheme)."""
    w = np.asarray(w, np.float64)
    red = tuple(a for a in range(w.ndim) if a != axis)
    ch = np.max(np.abs(w), axis=red)
    live = ch > DEAD_CHANNEL_RATIO * ch.max()  # all-(near-)zero channels aside
    med = float(np.median(ch[live])) if live.any() else 0.0
    return {
        "weight_shape": list(w.shape),
        "weight_scheme": None
        if quant is None
        else ("per-channel" if quant.scale.size > 1 else "per-tensor"),
        "weight_min": float(w.min()),
        "weight_max": float(w.max()),
        "weight_channel_absmax_min": float(ch.min()),
        "weight_channel_absmax_max": float(ch.max()),
        "weight_channel_spread": float(ch.max() / med) if med > 0 else None,
        "weight_dead_channels": int(np.sum(~live)),
        "weight_outliers": robust_outliers(w, axis, live),
        "weight_count": int(w.size),
    }


class ActivationStats:
    """Observed output values of ``n_layers`` layers; keeps at most about
    ``ACT_VALUES_CAP`` values per layer (a strided subsample past the cap)."""

    def __init__(self, n_layers: int) -> None:
        self.lo = [math.inf] * n_layers
        self.hi = [-math.inf] * n_layers
        self.values: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
        self.kept = [0] * n_layers

    def observe(self, i: int, ref: np.ndarray) -> None:
        """Add one sample's float output of layer ``i``."""
        v = np.asarray(ref, np.float32).reshape(-1)
        if not v.size:
            return
        self.lo[i] = min(self.lo[i], float(v.min()))
        self.hi[i] = max(self.hi[i], float(v.max()))
        if self.kept[i] + v.size > ACT_VALUES_CAP:
            v = v[:: max(2, v.size // 1024)]  # past the cap: a strided subsample
        self.values[i].append(v)
        self.kept[i] += v.size

    def fields(self, i: int, qt: Tensor) -> dict[str, Any]:
        """Layer ``i``'s ``act_*`` report fields; ``qt`` is its int8 output tensor."""
        vals = np.concatenate(self.values[i]) if self.values[i] else np.zeros(1)
        mean, std = float(vals.mean()), float(vals.std())
        frac = float(np.mean(np.abs(vals - mean) > OUTLIER_SIGMAS * std)) if std > 0 else 0.0
        row = {
            "act_min": self.lo[i] if self.values[i] else 0.0,
            "act_max": self.hi[i] if self.values[i] else 0.0,
            "act_p9999": float(np.percentile(np.abs(vals), 99.99)),
            "act_outlier_frac": frac,
        }
        if qt.quant is not None and qt.dtype in QMIN:
            s, zp = float(qt.quant.scale[0]), int(qt.quant.zero_point[0])
            row["act_quant_min"] = s * (QMIN[qt.dtype] - zp)
            row["act_quant_max"] = s * (QMAX[qt.dtype] - zp)
            row["act_scale"] = s
        return row


def weight_values(lowered: Graph) -> dict[str, np.ndarray]:
    """Float weights of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED by layer label."""
    labels = layer_labels(lowered)
    return {
        labels[i]: np.asarray(lowered.tensor(n.inputs[1]).data, np.float32)
        for i, n in enumerate(lowered.nodes)
        if is_weighted(lowered, n)
    }
