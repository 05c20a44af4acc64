"""Run a model over a data set in one runtime and summarise the outputs.

Runtimes: ``tflm`` and ``litert`` (``.tflite`` files), ``ort`` (ONNX files, ONNX Runtime),
``reference`` (our NumPy runtime: the integer oracle for ``.tflite``, the lowered float
graph for ONNX). Data is an ``.npz`` with one array per model input (key = input name, or
``x`` for a single-input model) holding ``N`` samples, plus optional integer labels ``y``.

Int8 model inputs take float data quantized with the input's own parameters,
``q = clamp(round(x / scale) + zero_point, -128, 127)``; int8 outputs are dequantized,
``scale * (q - zero_point)``, so statistics and top-1 accuracy are in real units.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, QuantParams
from microquant.quant.primitives import quantize as quantize_values
from microquant.report.models import ModelFile, load_graph, open_model

RUNTIMES = ("tflm", "litert", "ort", "reference")


def quantize_input(x: np.ndarray, dtype: str, quant: QuantParams | None) -> np.ndarray:
    """Float data -> the model input's dtype (integer inputs use the input's qparams)."""
    if np.dtype(dtype).kind == "f":
        return np.asarray(x, dtype=dtype)
    if quant is None:
        raise MicroquantError(f"model input of type {dtype} has no quantization parameters")
    if np.asarray(x).dtype.kind in "iu":
        return np.asarray(x).astype(dtype)  # already integer data: take it as is
    return quantize_values(np.asarray(x, np.float32), quant.scale, quant.zero_point, dtype)


def dequantize_output(y: np.ndarray, quant: QuantParams | None) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind == "f" or quant is None:
        return y.astype(np.float32)
    return ((y.astype(np.float64) - quant.zero_point[0]) * quant.scale[0]).astype(np.float32)


class ModelRunner:
    """One model in one runtime: ``run(float inputs) -> float outputs`` for one sample."""

    def __init__(self, path: str | Path, runtime: str) -> None:
        if runtime not in RUNTIMES:
            raise MicroquantError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.graph: Graph | None = None
        if runtime == "ort":
            # ONNX Runtime needs no import or lowering, so any model it can run is evaluated.
            self.model = open_model(path)
            if self.model.kind != "onnx":
                raise MicroquantError(
                    "runtime 'ort' runs ONNX models; use tflm or litert for .tflite"
                )
            self._run, self.input_names, self.input_shapes, self.output_names = (
                _ort_session(self.model)
            )
            self._in = [("float32", None)] * len(self.input_names)
            return
        self.model, self.graph = load_graph(path)
        g = self.graph
        self.input_names = list(g.inputs)
        self.input_shapes = [g.tensor(n).shape for n in g.inputs]
        self.output_names = list(g.outputs)
        self._in = [(g.tensor(n).dtype, g.tensor(n).quant) for n in g.inputs]
        self._out = [g.tensor(n).quant for n in g.outputs]
        self._run = self._make(runtime, self.model)

    def _make(self, runtime: str, mf: ModelFile) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        if runtime == "reference":
            from microquant.runtime.evaluator import Evaluator

            return Evaluator(self.graph).run
        if mf.kind != "tflite":
            raise MicroquantError(
                f"runtime {runtime!r} runs .tflite models; quantize first or use --runtime ort"
            )
        if runtime == "tflm":
            from microquant.backends.tflm import TflmRunner

            return TflmRunner(mf.data).run
        from microquant.backends.litert import LiteRTRunner

        return LiteRTRunner(mf.data).run

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = [
            quantize_input(np.asarray(x).reshape(shape), dtype, q)
            for x, shape, (dtype, q) in zip(inputs, self.input_shapes, self._in, strict=True)
        ]
        outs = self._run(feeds)
        if self.runtime == "ort":
            return [np.asarray(o, np.float32) for o in outs]
        return [dequantize_output(o, q) for o, q in zip(outs, self._out, strict=True)]

    def run_dataset(self, data: dict[str, np.ndarray], progress: bool = False) -> list[np.ndarray]:
        """Every sample through the model; returns per output an array ``[N, ...]``."""
        arrays = [data[n] for n in self.input_names]
        n = arrays[0].shape[0]
        per_sample = [self.run([a[i] for a in arrays])
                      for i in progress_range(n, progress, f"eval ({self.runtime})")]
        return [np.stack([s[k] for s in per_sample]) for k in range(len(per_sample[0]))]


def _ort_session(mf: ModelFile) -> tuple[Callable[[list[np.ndarray]], list[np.ndarray]],
                                         list[str], list[tuple[int, ...]], list[str]]:
    """``(run, input names, input shapes with batch 1, output names)`` of an ONNX file."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(mf.data, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for bad models
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MicroquantError(f"onnxruntime cannot load {mf.path}: {first}") from None
    names, shapes = [], []
    for i in sess.get_inputs():
        dims = list(i.shape)
        if dims and not isinstance(dims[0], int):
            dims[0] = 1  # symbolic batch: run one sample at a time
        if not all(isinstance(d, int) for d in dims):
            raise MicroquantError(f"input {i.name!r} has symbolic dimensions {i.shape}; "
                                  "only the batch dimension may be dynamic")
        names.append(i.name)
        shapes.append(tuple(dims))
    outputs = [o.name for o in sess.get_outputs()]
    return (lambda feeds: sess.run(outputs, dict(zip(names, feeds, strict=True))),
            names, shapes, outputs)


def load_dataset(path: str | Path, names: Sequence[str], shapes: Sequence[tuple[int, ...]]
                 ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Inputs by model input name (``[N, ...]`` each) and the labels ``y`` if present."""
    from microquant.quant.calib_data import load_calibration

    data = load_calibration(path, list(names), list(shapes))
    n = next(iter(data.values())).shape[0]
    with np.load(path, allow_pickle=False) as z:
        y = np.asarray(z["y"]) if "y" in z.files else None
    if y is not None and (y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu"):
        raise MicroquantError(f"labels 'y' in {path} must be {n} integers, got {y.dtype} {y.shape}")
    return data, y


def output_stats(outputs: list[np.ndarray], names: list[str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "shape": list(o.shape[1:]), "mean": float(o.mean()), "std": float(o.std()),
         "min": float(o.min()), "max": float(o.max())}
        for name, o in zip(names, outputs, strict=True)
    ]


def evaluate(model_path: str | Path, data_path: str | Path, runtime: str,
             progress: bool = False) -> dict[str, Any]:
    """Accuracy (when labels exist) and output statistics of one model in one runtime."""
    runner = ModelRunner(model_path, runtime)
    data, y = load_dataset(data_path, runner.input_names, runner.input_shapes)
    t0 = time.perf_counter()
    outputs = runner.run_dataset(data, progress)
    seconds = time.perf_counter() - t0
    n = outputs[0].shape[0]
    result: dict[str, Any] = {
        "model": str(model_path),
        "format": runner.model.kind,
        "runtime": runtime,
        "samples": int(n),
        "seconds": round(seconds, 3),
        "outputs": output_stats(outputs, runner.output_names),
    }
    if y is not None:
        result["accuracy"] = float(np.mean(top1(outputs[0]) == y))
    first_in = data[runner.input_names[0]]
    if y is None and outputs[0][0].size == first_in[0].size:
        # Autoencoder-style models: mean squared reconstruction error per sample.
        err = (outputs[0].reshape(n, -1) - first_in.reshape(n, -1).astype(np.float32)) ** 2
        result["reconstruction_mse"] = float(err.mean())
    return result


def progress_range(n: int, enabled: bool, desc: str) -> Iterable[int]:
    """``range(n)``, with a tqdm bar on stderr when ``enabled``."""
    if not enabled:
        return range(n)
    from tqdm import tqdm

    return tqdm(range(n), desc=desc, unit="sample", leave=False)


def top1(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(scores.shape[0], -1).argmax(axis=1)
