"""The one graph representation every stage of microquant reads and writes.

Two op vocabularies live in the same structures:

* **ONNX level** (right after import): ``Node.op`` is an ONNX op type (``"Conv"``,
  ``"Relu"`` …), attributes are ONNX attributes, layout is NCHW.
* **TFLite level** (after ``passes.lower``): ``Node.op`` is a TFLite builtin name
  (``"CONV_2D"`` …), attributes follow ``ARCHITECTURE.md``'s op table, layout is NHWC.
  Quantization annotates tensors with :class:`QuantParams`; the reference runtime and
  the ``.tflite`` writer both read exactly this.

Example:
    >>> g = Graph()
    >>> _ = g.add_tensor(Tensor("x", (1, 4), "float32"))
    >>> g.inputs.append("x")
    >>> g.tensor("x").shape
    (1, 4)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microquant.errors import MicroquantError


@dataclass
class QuantParams:
    """Affine quantization ``real = scale * (q - zero_point)``.

    ``scale``/``zero_point`` are 1-D arrays: length 1 for per-tensor, length
    ``shape[axis]`` for per-channel along ``axis``.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1 or self.axis is not None

    def same_as(self, other: QuantParams | None) -> bool:
        return (
            other is not None
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )


@dataclass
class Tensor:
    """A named value: an activation (``data is None``) or a constant."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        self.dtype = str(np.dtype(self.dtype))

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Node:
    """One operation; ``inputs``/``outputs`` are tensor names, ``""`` an absent optional input."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Graph:
    """Tensors by name plus nodes in execution (topological) order."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str = "graph"
    # Free-form annotations passes leave for later stages, e.g. ``calib_source``:
    # lowered tensor name -> ONNX tensor name carrying the same values (up to layout).
    meta: dict[str, Any] = field(default_factory=dict)

    # -- tensors -----------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise MicroquantError(f"graph has no tensor named {name!r}") from None

    def add_tensor(self, t: Tensor) -> Tensor:
        self.tensors[t.name] = t
        return t

    def add_const(self, name: str, data: np.ndarray) -> Tensor:
        """Add a constant under a fresh name derived from ``name``."""
        data = np.asarray(data)
        return self.add_tensor(Tensor(self.unique_name(name), data.shape, str(data.dtype), data))

    def unique_name(self, base: str) -> str:
        if base not in self.tensors:
            return base
        i = 1
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` or ``None`` for activations / absent inputs."""
        if not name:
            return None
        t = self.tensors.get(name)
        return None if t is None else t.data

    # -- topology ------------------------------------------------------------
    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def replace_uses(self, old: str, new: str) -> None:
        """Rewire every consumer (and graph output) of ``old`` to read ``new``."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove_unused(self) -> None:
        """Drop nodes whose outputs nobody reads and tensors nobody references."""
        changed = True
        while changed:
            changed = False
            used = set(self.outputs)
            for n in self.nodes:
                used.update(n.inputs)
            keep = [n for n in self.nodes if any(o in used for o in n.outputs)]
            changed = len(keep) != len(self.nodes)
            self.nodes = keep
        referenced = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            referenced.update(n.inputs)
            referenced.update(n.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in referenced}

    def toposort(self) -> None:
        """Reorder nodes so every node comes after the producers of its inputs."""
        ready = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const} | {""}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            progress = False
            for n in list(pending):
                if all(i in ready for i in n.inputs):
                    ordered.append(n)
                    ready.update(n.outputs)
                    pending.remove(n)
                    progress = True
            if not progress:
                names = ", ".join(n.name or n.op for n in pending[:5])
                raise MicroquantError(f"graph has a cycle or a dangling input near: {names}")
        self.nodes = ordered

    def copy(self) -> Graph:
        """A structural copy: new Graph/Node/Tensor objects, constant arrays shared.

        Constant data is treated as immutable by every pass (they assign new arrays),
        so sharing it keeps copies cheap on megabyte-sized models.
        """
        tensors = {
            k: Tensor(t.name, t.shape, t.dtype, t.data, copy.deepcopy(t.quant))
            for k, t in self.tensors.items()
        }
        nodes = [
            Node(n.op, list(n.inputs), list(n.outputs), copy.deepcopy(n.attrs), n.name)
            for n in self.nodes
        ]
        return Graph(tensors, nodes, list(self.inputs), list(self.outputs), self.name,
                     copy.deepcopy(self.meta))

    def ops(self) -> list[str]:
        return [n.op for n in self.nodes]
