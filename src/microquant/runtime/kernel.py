"""Kernel base class and the explicit op registry of the reference runtime.

A kernel is one TFLite-level op (one file in ``runtime/ops``):

* ``prepare(node, graph)`` - runs once; reads shapes, attributes and quantization
  parameters and precomputes fixed-point multipliers/shifts. The only step where float
  is allowed. Returns any object (the kernel's "op data").
* ``run(params, inputs)`` - integer-only arithmetic on int8/int16/int32 arrays that
  matches TFLite Micro's reference kernel bit for bit. Returns the output arrays.
* ``run_float(node, graph, inputs)`` - the same op on float32 (used to check lowering
  and for per-layer error analysis).

Subclasses register themselves by declaring ``op``:

    >>> class Identity(Kernel, op="_DOCTEST_IDENTITY"):
    ...     def run(self, params, inputs):
    ...         return [inputs[0]]
    >>> get_kernel("_DOCTEST_IDENTITY").op
    '_DOCTEST_IDENTITY'
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node

_REGISTRY: dict[str, type[Kernel]] = {}


class Kernel:
    op: ClassVar[str]

    def __init_subclass__(cls, op: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if op is not None:
            cls.op = op
            _REGISTRY[op] = cls

    def prepare(self, node: Node, graph: Graph) -> Any:
        return None

    def run(self, params: Any, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError(f"{self.op}: integer run step not implemented")

    def run_float(
        self, node: Node, graph: Graph, inputs: list[np.ndarray | None]
    ) -> list[np.ndarray]:
        raise NotImplementedError(f"{self.op}: float run step not implemented")


def supported_ops() -> list[str]:
    import microquant.runtime.ops  # noqa: F401  (registers every kernel)

    return sorted(k for k in _REGISTRY if not k.startswith("_"))


def get_kernel(op: str) -> Kernel:
    import microquant.runtime.ops  # noqa: F401

    try:
        return _REGISTRY[op]()
    except KeyError:
        raise MicroquantError(
            f"the reference runtime has no kernel for op {op}; supported: "
            + ", ".join(supported_ops())
        ) from None
