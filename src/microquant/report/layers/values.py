"""Real values in and out of an int8 graph, and running a data set through it.

Graph inputs that are int8 get the float sample quantized with the tensor's parameters;
int outputs are dequantized (``real = scale * (q - zero_point)``), float values pass
through, so any graph (float, int8 or mixed) is compared in real numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Tensor
from microquant.quant.primitives import dequantize, quantize
from microquant.runtime.evaluator import Evaluator


def sample_count(graph: Graph, samples: Mapping[str, np.ndarray]) -> int:
    """Number of samples ``N`` in ``samples`` (``{input name: (N, *shape)}``); every graph
    input needs the same nonzero ``N``."""
    missing = [k for k in graph.inputs if k not in samples]
    if missing:
        raise MicroquantError(f"no samples for model input {missing[0]!r}")
    counts = {len(samples[k]) for k in graph.inputs}
    if len(counts) != 1 or 0 in counts:
        raise MicroquantError("every model input needs the same, nonzero number of samples")
    return counts.pop()


def quantize_to(x: np.ndarray, t: Tensor) -> np.ndarray:
    """``x`` quantized with ``t``'s parameters (per-tensor or along ``t.quant.axis``)."""
    q = t.quant
    return quantize(x, q.scale, q.zero_point, t.dtype, q.axis if q.scale.size > 1 else None)


def real(t: Tensor, value: np.ndarray) -> np.ndarray:
    """Real values of a tensor's value (float passes through, ints are dequantized)."""
    value = np.asarray(value)
    if value.dtype.kind == "f" or t.quant is None:
        return value.astype(np.float32)
    q = t.quant
    return dequantize(value, q.scale, q.zero_point, q.axis if q.scale.size > 1 else None)


def quantize_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float feeds reshaped to the graph inputs, quantized where the input is an int type."""
    out = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        x = np.asarray(feeds[name], np.float32).reshape(t.shape)
        out[name] = x if t.dtype == "float32" else quantize_to(x, t)
    return out


def run_dataset(
    graph: Graph, samples: Mapping[str, np.ndarray], n: int | None = None
) -> list[list[np.ndarray]]:
    """Real-valued outputs of ``graph`` (int8 inputs quantized, outputs dequantized) for
    the first ``n`` samples: a list per sample of one array per graph output."""
    ev = Evaluator(graph)
    n = sample_count(graph, samples) if n is None else n
    out = []
    for s in range(n):
        feeds = {k: np.asarray(samples[k][s], np.float32) for k in graph.inputs}
        values = ev.run(quantize_feeds(graph, feeds))
        out.append([real(graph.tensor(o), v) for o, v in zip(graph.outputs, values, strict=True)])
    return out
