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


def _session(model_bytes: bytes, full_optimization: bool = False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Basic optimizations by default: constant folding and node elimination keep every
    # requested output, without the layout-changing rewrites of the higher levels. The tail
    # graph only exposes small reductions, so there every fusion is welcome (~1.5x faster).
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if full_optimization
        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
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

    for n in fed:  # already in memory: one update with every sample
        observers[n].update(np.asarray(calib[n], dtype=np.float32))
    samples = _Samples(onnx_graph, calib, n_samples)
    tails = {n: observers[n].tail_count(onnx_graph.tensor(n).size, n_samples) for n in fetch}
    full = [n for n in fetch if tails[n] is None]
    if len(full) < len(fetch):
        _observe_tails(onnx_graph, samples, {n: k for n, k in tails.items() if k is not None},
                       observers, progress)
        # Tails too short to be exact for some tensor (one sample held most of the pooled
        # tail): observe those again from every value.
        for n in fetch:
            if tails[n] is not None and not observers[n].tails_exact():
                observers[n] = get_observer(method)
                full.append(n)
    if full:
        _observe_full(onnx_graph, samples, full, observers, progress)

    ranges = {n: obs.range() for n, obs in observers.items()}
    return {low: ranges[src] for low, src in source.items()}


class _Samples:
    """Calibration samples as ONNX Runtime feeds (batch 1, the input's dtype and shape)."""

    def __init__(self, graph: Graph, calib: Mapping[str, np.ndarray], count: int) -> None:
        self.calib = calib
        self.count = count
        self.spec = {n: (graph.tensor(n).shape, np.dtype(graph.tensor(n).dtype))
                     for n in graph.inputs}

    def feeds(self, i: int) -> dict[str, np.ndarray]:
        return {n: np.asarray(self.calib[n][i], dtype=dt).reshape(shape)
                for n, (shape, dt) in self.spec.items()}


def _observe_tails(graph: Graph, samples: _Samples, tails: Mapping[str, int],
                   observers: Mapping[str, Observer], progress: bool) -> None:
    """Fast route: the extremes each observer needs are computed inside ONNX Runtime
    (ReduceMax/ReduceMin/TopK) and concatenated into one small output per sample, so a
    few values per tensor leave the session instead of whole activations."""
    from microquant.ir.onnx_io import to_onnx

    model = _with_tail_outputs(to_onnx(graph, outputs=list(tails)), tails)
    session = _session(model.SerializeToString(), full_optimization=True)
    width = 2 * sum(tails.values())
    rows = np.empty((samples.count, width), np.float32)
    for i in _progress(samples.count, progress):
        rows[i] = _run(session, ["__mq_tails"], samples.feeds(i), i)[0]
    at = 0
    for n, k in tails.items():
        observers[n].update_tails(rows[:, at : at + k], rows[:, at + k : at + 2 * k],
                                  graph.tensor(n).size)
        at += 2 * k


def _observe_full(graph: Graph, samples: _Samples, fetch: list[str],
                  observers: Mapping[str, Observer], progress: bool) -> None:
    """General route: every value of every fetched tensor goes through its observer."""
    from microquant.ir.onnx_io import to_onnx

    session = _session(to_onnx(graph, outputs=fetch).SerializeToString())
    for i in _progress(samples.count, progress):
        outs = _run(session, fetch, samples.feeds(i), i)
        for n, value in zip(fetch, outs, strict=True):
            observers[n].update(value)


def _run(session, names: list[str], feeds: dict, i: int) -> list[np.ndarray]:
    try:
        return session.run(names, feeds)
    except Exception as e:
        raise MicroquantError(
            f"ONNX Runtime failed on calibration sample {i}: {_first_line(e)}"
        ) from None


def _with_tail_outputs(model, tails: Mapping[str, int]):
    """Replace the model outputs by one vector ``__mq_tails``: per tensor, its ``k`` largest
    then its ``k`` smallest values (ReduceMax/ReduceMin for ``k == 1``, TopK otherwise)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    del g.output[:]
    g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "__mq_flat"))
    parts: list[str] = []
    for j, (name, k) in enumerate(tails.items()):
        flat, top, bot = f"__mq{j}_flat", f"__mq{j}_top", f"__mq{j}_bot"
        g.node.append(helper.make_node("Reshape", [name, "__mq_flat"], [flat]))
        if k == 1:
            g.node.append(helper.make_node("ReduceMax", [flat], [top], keepdims=1))
            g.node.append(helper.make_node("ReduceMin", [flat], [bot], keepdims=1))
        else:
            kname = f"__mq{j}_k"
            g.initializer.append(numpy_helper.from_array(np.array([k], np.int64), kname))
            g.node.append(helper.make_node("TopK", [flat, kname], [top, top + "_i"],
                                           largest=1, sorted=0))
            g.node.append(helper.make_node("TopK", [flat, kname], [bot, bot + "_i"],
                                           largest=0, sorted=0))
        parts += [top, bot]
    g.node.append(helper.make_node("Concat", parts, ["__mq_tails"], axis=0))
    g.output.append(helper.make_tensor_value_info("__mq_tails", TensorProto.FLOAT, None))
    return model


def _progress(n: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return range(n)
    from tqdm import tqdm

    return tqdm(range(n), desc="calibrating", unit="sample", leave=False)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
