"""Shared test helpers: build single-op quantized graphs, run them in our reference
runtime (with an integer-only tracer on every kernel ``run``) and in TFLite Micro.

Conformance test modules (``tests/test_ops_*.py``) each define
``CASES: list[tuple[str, Callable[[], tuple[Graph, list[np.ndarray]]]]]`` - an id and a
builder returning a quantized single-op graph plus its inputs. ``test_integer_only.py``
collects all CASES and checks every registered op is covered.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import numpy as np

from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import Kernel

RNG_SEED = 1234

# Ops whose run step legitimately touches float: the float<->int boundary.
FLOAT_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def qtensor(
    name: str,
    shape: tuple[int, ...],
    scale: float | list[float] = 0.05,
    zero_point: int | list[int] = 0,
    dtype: str = "int8",
    axis: int | None = None,
    data: np.ndarray | None = None,
) -> Tensor:
    """A quantized tensor (activation when ``data`` is None)."""
    return Tensor(name, shape, dtype, data, QuantParams(scale, zero_point, axis))


def single_op_graph(
    op: str, inputs: list[Tensor], outputs: list[Tensor], attrs: dict[str, Any] | None = None
) -> Graph:
    """Graph with one node; non-constant inputs become graph inputs."""
    g = Graph(name=op.lower())
    for t in inputs + outputs:
        g.add_tensor(t)
    g.nodes.append(
        Node(
            op,
            [t.name for t in inputs],
            [t.name for t in outputs],
            dict(attrs or {}),
            name=op.lower(),
        )
    )
    g.inputs = [t.name for t in inputs if not t.is_const]
    g.outputs = [t.name for t in outputs]
    return g


def random_int(
    shape: tuple[int, ...],
    dtype: str = "int8",
    seed: int = RNG_SEED,
    low: int | None = None,
    high: int | None = None,
) -> np.ndarray:
    info = np.iinfo(dtype)
    lo = info.min if low is None else low
    hi = info.max if high is None else high
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(dtype)


class IntegerOnlyViolation(AssertionError):
    pass


def _check_frame(frame: FrameType, op: str) -> None:
    for name, value in frame.f_locals.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            raise IntegerOnlyViolation(
                f"{op}: local {name!r} in {frame.f_code.co_name} is {value.dtype}"
            )
        if isinstance(value, float | np.floating):
            raise IntegerOnlyViolation(f"{op}: local {name!r} in {frame.f_code.co_name} is a float")


def traced_run(kernel: Kernel, params: Any, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    """Call ``kernel.run`` while checking every local of every microquant frame it enters
    (the run step itself and helpers it calls) holds only integer values."""
    root = "microquant"
    run_code = type(kernel).run.__code__

    def local_trace(frame: FrameType, event: str, arg: Any):
        if event in ("line", "return"):
            _check_frame(frame, kernel.op)
            if event == "return":
                if isinstance(arg, np.ndarray) and arg.dtype.kind in "fc":
                    raise IntegerOnlyViolation(
                        f"{kernel.op}: {frame.f_code.co_name} returned {arg.dtype}"
                    )
        return local_trace

    def global_trace(frame: FrameType, event: str, arg: Any):
        mod = frame.f_globals.get("__name__", "")
        if event == "call" and (mod.startswith(root) or frame.f_code is run_code):
            return local_trace
        return None

    old = sys.gettrace()
    sys.settrace(global_trace)
    try:
        return kernel.run(params, inputs)
    finally:
        sys.settrace(old)


def run_reference(
    graph: Graph, inputs: list[np.ndarray], check_integer: bool = True
) -> list[np.ndarray]:
    """Run our reference runtime; when ``check_integer`` every kernel run is traced."""
    ev = Evaluator(graph, mode="int")
    if check_integer:
        ev_kernels = ev.kernels

        class _Traced:
            def __init__(self, k: Kernel) -> None:
                self.k = k
                self.op = k.op

            def run(self, params, ins):
                if self.op in FLOAT_BOUNDARY_OPS and any(
                    a is not None and a.dtype.kind == "f" for a in ins
                ):
                    return self.k.run(params, ins)
                if self.op == "DEQUANTIZE":
                    return self.k.run(params, ins)
                return traced_run(self.k, params, ins)

        ev.kernels = [_Traced(k) for k in ev_kernels]  # type: ignore[misc]
    return ev.run(inputs)


def run_tflm(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from microquant.backends.tflm import run_tflm as _run
    from microquant.ir.tflite_io import write_tflite

    return _run(write_tflite(graph), inputs)


def check_against_tflm(graph: Graph, inputs: list[np.ndarray]) -> None:
    """Assert our reference runtime and TFLite Micro agree bit for bit."""
    ours = run_reference(graph, inputs)
    theirs = run_tflm(graph, inputs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        b = np.asarray(b).reshape(a.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        if not np.array_equal(a, b):
            diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
            n_diff = int((diff > 0).sum())
            raise AssertionError(
                f"{graph.name}: {n_diff}/{diff.size} values differ, max {int(diff.max())}"
            )


def real_inputs(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray | None]:
    """Dequantized (float64) values of the first node's inputs: constants from the graph,
    activations from ``inputs``; per-channel scales broadcast along their axis."""
    reals: list[np.ndarray | None] = []
    for name in graph.nodes[0].inputs:
        if not name:
            reals.append(None)
            continue
        t = graph.tensor(name)
        q = t.data if t.is_const else inputs[graph.inputs.index(name)]
        scale = t.quant.scale
        if t.quant.axis is not None and scale.size > 1:
            shape = [1] * q.ndim
            shape[t.quant.axis] = -1
            scale = scale.reshape(shape)
        reals.append((q.astype(np.float64) - t.quant.zero_point[0]) * scale)
    return reals
