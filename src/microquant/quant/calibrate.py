"""Calibration: run ONNX Runtime on the float model and collect activation ranges.

The ONNX-level graph (the one :func:`microquant.passes.lower` started from) is exported
with every tensor named in ``lowered.meta["calib_source"]`` exposed as an extra model
output. ONNX Runtime (CPU, batch 1) runs each sample once; one observer per ONNX tensor
sees the values (layout does not matter: every method only looks at the values). The
ranges come back keyed by the *lowered* tensor names, ready for
:func:`microquant.quant.quantize.quantize_graph`.

Example (sketch):
    >>> ranges = calibrate(onnx_graph, lowered, {"x": samples}, method="minmax")  # doctest: +SKIP
    >>> ranges["conv1_out"]                                                      # doctest: +SKIP
    (0.0, 5.73)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.quant.observers import Observer, get_observer


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Basic optimizations only: constant folding and node elimination keep every requested
    # output, without the layout-changing rewrites of the higher levels.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for invalid models
        raise MicroquantError(
            f"ONNX Runtime cannot load the model for calibration: {_first_line(e)}"
        ) from None


def calibrate(
    onnx_graph: Graph,
    lowered: Graph,
    calib: Mapping[str, np.ndarray],
    method: str = "minmax",
    progress: bool = True,
) -> dict[str, tuple[float, float]]:
    """Ranges ``{lowered tensor: (lo, hi)}`` observed with ``method`` over all samples.

    ``calib`` maps each ONNX graph input to an array whose first axis indexes samples
    (as returned by :func:`microquant.quant.calib_data.load_calibration`); each sample
    is reshaped to the input's static shape (batch 1).
    """
    from microquant.ir.onnx_io import to_onnx

    source: dict[str, str] = dict(lowered.meta.get("calib_source") or {})
    if not source:
        raise MicroquantError("the lowered graph has no calib_source annotation to calibrate")
    get_observer(method)  # validate the name before any work
    inputs = list(onnx_graph.inputs)
    missing = [n for n in inputs if n not in calib]
    if missing:
        raise MicroquantError(f"no calibration data for model input {missing[0]!r}")
    counts = {len(calib[n]) for n in inputs}
    if len(counts) != 1 or 0 in counts:
        raise MicroquantError("calibration inputs must have the same, nonzero number of samples")
    n_samples = counts.pop()
    for n in inputs:
        t, got = onnx_graph.tensor(n), np.shape(calib[n])[1:]
        if int(np.prod(got, dtype=np.int64)) != t.size:
            raise MicroquantError(
                f"calibration samples for input {n!r} have shape {got}, expected {t.shape}"
            )

    observers: dict[str, Observer] = {}
    for name in source.values():
        if name not in observers:
            observers[name] = get_observer(method)
    for name in observers:
        if name not in onnx_graph.tensors:
            raise MicroquantError(f"calib_source names {name!r}, absent from the ONNX graph")
    consts = [n for n in observers if onnx_graph.tensors[n].is_const]
    fetch = [n for n in observers if n not in consts and n not in inputs]
    fed = [n for n in observers if n in inputs]
    for n in consts:
        observers[n].update(np.asarray(onnx_graph.tensors[n].data, dtype=np.float32))

    shapes = {n: onnx_graph.tensor(n).shape for n in inputs}
    dtypes = {n: np.dtype(onnx_graph.tensor(n).dtype) for n in inputs}
    session = _session(to_onnx(onnx_graph, outputs=fetch).SerializeToString()) if fetch else None
    for i in _progress(n_samples, progress):
        feeds = {n: np.asarray(calib[n][i], dtype=dtypes[n]).reshape(shapes[n]) for n in inputs}
        for n in fed:
            observers[n].update(feeds[n])
        if session is None:
            continue
        try:
            outs = session.run(fetch, feeds)
        except Exception as e:
            raise MicroquantError(
                f"ONNX Runtime failed on calibration sample {i}: {_first_line(e)}"
            ) from None
        for n, value in zip(fetch, outs, strict=True):
            observers[n].update(value)

    ranges = {n: obs.range() for n, obs in observers.items()}
    return {low: ranges[src] for low, src in source.items()}


def _progress(n: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return range(n)
    from tqdm import tqdm

    return tqdm(range(n), desc="calibrating", unit="sample", leave=False)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
