"""Bit-exactness check of a ``.tflite`` model: our reference runtime vs TensorFlow Lite Micro.

Every sample runs through our integer runtime (:class:`~microquant.runtime.Evaluator`) and
TFLM; a sample is bit-exact when every output is identical. LiteRT's reference kernels
give a third opinion (``litert_agree`` counts samples where LiteRT equals TFLM) - useful
to tell a bug in our runtime from a TFLM/LiteRT arithmetic difference.

Inputs come from a data ``.npz`` (float data is quantized with the model's input
parameters) or are random: uniform over the full int8 range for int8 inputs, uniform over
the representable real range of the first QUANTIZE for float inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.report.evaluate import load_dataset, progress_range, quantize_input
from microquant.report.models import open_model

DEFAULT_RANDOM = 32


def random_inputs(graph: Graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` samples of random model inputs (see module docstring)."""
    rng = np.random.default_rng(seed)
    samples: list[list[np.ndarray]] = [[] for _ in range(count)]
    for name in graph.inputs:
        t = graph.tensor(name)
        if np.dtype(t.dtype).kind in "iu":
            info = np.iinfo(t.dtype)
            arr = rng.integers(info.min, info.max + 1, size=(count, *t.shape)).astype(t.dtype)
        else:
            lo, hi = _float_range(graph, name)
            arr = rng.uniform(lo, hi, size=(count, *t.shape)).astype(t.dtype)
        for i in range(count):
            samples[i].append(arr[i])
    return samples


def _float_range(graph: Graph, name: str) -> tuple[float, float]:
    for node in graph.consumers(name):
        q = graph.tensor(node.outputs[0]).quant
        if node.op == "QUANTIZE" and q is not None:
            s, z = float(q.scale[0]), int(q.zero_point[0])
            return s * (-128 - z), s * (127 - z)
    return -1.0, 1.0


def _data_inputs(graph: Graph, data_path: str | Path) -> list[list[np.ndarray]]:
    data, _ = load_dataset(data_path, graph.inputs, [graph.tensor(n).shape for n in graph.inputs])
    arrays = []
    for name in graph.inputs:
        t = graph.tensor(name)
        arrays.append(quantize_input(data[name].reshape(-1, *t.shape), t.dtype, t.quant))
    return [[a[i] for a in arrays] for i in range(arrays[0].shape[0])]


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a)
    b = np.asarray(b).reshape(a.shape)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)), initial=0))


def verify(tflite_path: str | Path, data_path: str | Path | None = None,
           random: int | None = None, seed: int = 0, litert: bool = True,
           progress: bool = False) -> dict[str, Any]:
    """Compare our runtime with TFLM (and LiteRT) on every sample; see module docstring."""
    from microquant.backends.tflm import TflmRunner
    from microquant.ir.tflite_read import read_tflite
    from microquant.runtime.evaluator import Evaluator

    mf = open_model(tflite_path)
    if mf.kind != "tflite":
        raise MicroquantError(f"verify needs a .tflite model, got {mf.kind.upper()}: {mf.path}")
    if data_path is not None and random is not None:
        raise MicroquantError("give either a data file or a random sample count, not both")
    if random is not None and random < 1:
        raise MicroquantError(f"random sample count must be at least 1, got {random}")
    graph = read_tflite(mf.data)
    if data_path is not None:
        samples = _data_inputs(graph, data_path)
    else:
        samples = random_inputs(graph, random or DEFAULT_RANDOM, seed)
    ours_rt, tflm_rt = Evaluator(graph, mode="int"), TflmRunner(mf.data)
    lite_rt = None
    if litert:
        from microquant.backends.litert import LiteRTRunner

        lite_rt = LiteRTRunner(mf.data)

    n_out = len(graph.outputs)
    per_out = [{"name": name, "dtype": graph.tensor(name).dtype, "mismatched_samples": 0,
                "max_abs_diff": 0, "litert_mismatched_samples": 0, "litert_max_abs_diff": 0}
               for name in graph.outputs]
    exact = litert_agree = ours_litert = 0
    for i in progress_range(len(samples), progress, "verify"):
        sample = samples[i]
        ours, ref = ours_rt.run(sample), tflm_rt.run(sample)
        lite = lite_rt.run(sample) if lite_rt is not None else None
        sample_exact, sample_lite, sample_ours_lite = True, True, True
        for k in range(n_out):
            d = _diff(ours[k], ref[k])
            per_out[k]["max_abs_diff"] = max(per_out[k]["max_abs_diff"], d)
            if d:
                per_out[k]["mismatched_samples"] += 1
                sample_exact = False
            if lite is not None:
                dl = _diff(lite[k], ref[k])
                per_out[k]["litert_max_abs_diff"] = max(per_out[k]["litert_max_abs_diff"], dl)
                if dl:
                    per_out[k]["litert_mismatched_samples"] += 1
                    sample_lite = False
                if _diff(ours[k], lite[k]):
                    sample_ours_lite = False
        exact += sample_exact
        litert_agree += sample_lite
        ours_litert += sample_ours_lite
    result: dict[str, Any] = {
        "model": str(tflite_path),
        "source": str(data_path) if data_path is not None else f"random (seed {seed})",
        "total": len(samples),
        "bit_exact": exact,
        "max_abs_diff": max(o["max_abs_diff"] for o in per_out),
        "outputs": per_out,
    }
    if lite_rt is not None:
        result["litert_agree_with_tflm"] = litert_agree
        result["litert_agree_with_reference"] = ours_litert
    return result
