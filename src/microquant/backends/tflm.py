"""Run ``.tflite`` bytes in TensorFlow Lite Micro (the ``tflite_micro`` Python package).

TFLM is the integer oracle: its reference kernels define the arithmetic our runtime
must match bit for bit. One :class:`TflmRunner` keeps one interpreter (model parsed and
arena planned once) for many invocations.

Example:
    >>> runner = TflmRunner(model_bytes)              # doctest: +SKIP
    >>> [y] = runner.run([x])                          # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from microquant.backends._stderr import capture_stderr
from microquant.errors import MicroquantError
from microquant.ir.tflite_read import io_counts

# Start with room for model-independent activations, grow x4 while TFLM reports the
# arena is too small.
_MIN_ARENA = 1 << 20
_MAX_ARENA = 1 << 30
_ARENA_TOO_SMALL = re.compile(r"too small|Failed to allocate (tail |head )?memory|missing:", re.I)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(dict.fromkeys(lines[-n:]))


def _interpreter_module():
    try:
        from tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise MicroquantError(f"tflite-micro is not installed: {e}") from None
    return runtime


def _check_inputs(
    inputs: Sequence[np.ndarray], details: list[dict], backend: str
) -> list[np.ndarray]:
    if len(inputs) != len(details):
        raise MicroquantError(f"{backend}: model has {len(details)} inputs, got {len(inputs)}")
    out = []
    for i, (x, d) in enumerate(zip(inputs, details, strict=True)):
        x = np.asarray(x)
        want_dtype, want_shape = np.dtype(d["dtype"]), tuple(int(s) for s in d["shape"])
        if x.dtype != want_dtype:
            raise MicroquantError(f"{backend}: input {i} must be {want_dtype}, got {x.dtype}")
        if x.size != int(np.prod(want_shape, dtype=np.int64)):
            raise MicroquantError(
                f"{backend}: input {i} must have shape {want_shape}, got {x.shape}"
            )
        out.append(np.ascontiguousarray(x.reshape(want_shape)))
    return out


class TflmRunner:
    """One TFLM interpreter for repeated ``run`` calls.

    ``arena_size`` (bytes) defaults to ``max(1 MiB, 4 x model size)`` and is grown x4
    (up to 1 GiB) until TFLM's allocation succeeds.
    """

    def __init__(self, model: bytes, arena_size: int | None = None) -> None:
        runtime = _interpreter_module()
        self._model = bytes(model)  # TFLM keeps a pointer into this buffer
        n_in, n_out = io_counts(self._model)  # also rejects non-.tflite bytes before C++ sees them
        size = arena_size or max(_MIN_ARENA, 4 * len(self._model))
        while True:
            with capture_stderr() as log:
                try:
                    self._interp = runtime.Interpreter.from_bytes(self._model, arena_size=size)
                    break
                except (RuntimeError, ValueError) as e:
                    err = e
            text = log.text()
            if _ARENA_TOO_SMALL.search(text) and size < _MAX_ARENA:
                size *= 4
                continue
            detail = _last_lines(text) or str(err)
            raise MicroquantError(f"TFLM cannot load the model: {detail}")
        self.arena_size = size
        self._inputs = [self._interp.get_input_details(i) for i in range(n_in)]
        self._n_outputs = n_out

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Invoke once; returns copies of all outputs in model order."""
        for i, x in enumerate(_check_inputs(inputs, self._inputs, "TFLM")):
            self._interp.set_input(x, i)
        try:
            self._interp.invoke()
        except RuntimeError as e:
            # Invoke is deterministic: repeat it with stderr captured to get TFLM's reason
            # (capturing on every call would cost more than the invoke itself).
            with capture_stderr() as log:
                try:
                    self._interp.invoke()
                except RuntimeError:
                    pass
            raise MicroquantError(f"TFLM invoke failed: {_last_lines(log.text()) or e}") from None
        return [np.array(self._interp.get_output(i), copy=True) for i in range(self._n_outputs)]


def run_tflm(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` once in TFLM on ``inputs`` (one array per model input)."""
    return TflmRunner(model).run(inputs)
