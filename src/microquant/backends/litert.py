"""Run ``.tflite`` bytes in LiteRT (``ai_edge_litert``) with its reference kernels.

``BUILTIN_REF`` selects the portable reference kernels (no XNNPACK delegate, no
optimized kernels), which is the closest LiteRT gets to TFLM's arithmetic. LiteRT also
runs float32 graphs, so it serves as a float oracle for the written model.

Example:
    >>> runner = LiteRTRunner(model_bytes)           # doctest: +SKIP
    >>> [y] = runner.run([x])                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microquant.backends.tflm import _check_inputs
from microquant.errors import MicroquantError
from microquant.ir.tflite_read import parse_model


class LiteRTRunner:
    """One LiteRT interpreter (reference kernels, tensors allocated once) for many runs."""

    def __init__(self, model: bytes, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise MicroquantError(f"ai-edge-litert is not installed: {e}") from None
        self._model = bytes(model)
        parse_model(self._model)  # reject non-.tflite bytes before the C++ loader sees them
        try:
            self._interp = Interpreter(
                model_content=self._model,
                experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                num_threads=num_threads,
            )
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise MicroquantError(f"LiteRT cannot load the model: {e}") from None
        self._inputs = self._interp.get_input_details()
        self._outputs = self._interp.get_output_details()

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Invoke once; returns copies of all outputs in model order."""
        for d, x in zip(self._inputs, _check_inputs(inputs, self._inputs, "LiteRT"), strict=True):
            self._interp.set_tensor(d["index"], x)
        try:
            self._interp.invoke()
        except RuntimeError as e:
            raise MicroquantError(f"LiteRT invoke failed: {e}") from None
        return [np.array(self._interp.get_tensor(d["index"]), copy=True) for d in self._outputs]


def run_litert(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` once in LiteRT's reference kernels on ``inputs``."""
    return LiteRTRunner(model).run(inputs)
