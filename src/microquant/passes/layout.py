"""Lower a normalized ONNX-level graph to TFLite-level ops in NHWC, absorbing layout Transposes.

Every ONNX activation ``t`` gets a lowered tensor plus a permutation ``p`` with
``physical = logical.transpose(p)``. Graph inputs start with the identity; NHWC ops
(convolutions, pools) need ``p = (0, 2, 3, 1)`` on their 4-D input; element-wise ops, PAD,
CONCATENATION and MEAN work in whatever layout they get (axes and broadcast constants are
permuted); everything else (RESHAPE, FULLY_CONNECTED, graph outputs) needs the identity.
An ONNX ``Transpose`` only changes ``p`` - no op is emitted. When a consumer needs a
different ``p`` a TRANSPOSE is materialized (cleanup turns one that moves only size-1
axes into a RESHAPE and merges RESHAPE chains), so tf2onnx's NHWC<->NCHW pairs vanish.

The per-op rules (weights layouts, padding, attributes) live in
:mod:`microquant.passes.lower_ops`; this module keeps the layout bookkeeping.

``meta["calib_source"]`` maps each lowered activation to the ONNX tensor holding the same
values up to a permutation/reshape (explicit-PAD outputs of convolutions have none).

Example: ``Transpose<perm=[0,3,1,2]>(x_nhwc) -> Conv -> Relu`` lowers to one
``CONV_2D(activation=RELU)`` reading ``x_nhwc`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.passes._util import rename_tensor

Perm = tuple[int, ...]
NHWC: Perm = (0, 2, 3, 1)


def ident(rank: int) -> Perm:
    return tuple(range(rank))


def ints(v: Any, default: list[int]) -> list[int]:
    return [int(x) for x in (default if v is None else v)]


class Lowerer:
    """Layout bookkeeping while one ONNX-level graph is lowered (see module docstring)."""

    def __init__(self, src: Graph) -> None:
        self.src = src
        self.g = Graph(name=src.name)
        self.calib: dict[str, str] = {}
        self.g.meta["calib_source"] = self.calib
        self.loc: dict[str, str] = {}  # ONNX activation -> lowered tensor
        self.perm: dict[str, Perm] = {}
        self.cache: dict[tuple[str, Perm], str] = {}
        # ONNX activation names are kept for the lowered tensors that carry them;
        # constants are always rebuilt, so their ONNX names are free to reuse.
        self.reserved = {n for n, t in src.tensors.items() if not t.is_const}

    # -- naming and tensors ---------------------------------------------------
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.reserved or name in self.g.tensors:
            name = f"{base}_{i}"
            i += 1
        self.reserved.add(name)
        return name

    def const(self, base: str, data: np.ndarray) -> str:
        data = np.array(data, order="C")  # a copy: never alias the ONNX graph's arrays
        name = self.fresh(base)
        self.g.add_tensor(Tensor(name, data.shape, str(data.dtype), data))
        return name

    def shape(self, t: str) -> tuple[int, ...]:
        return self.src.tensor(t).shape

    def activation(self, t: str, node: Node) -> str:
        if self.src.const(t) is not None or t not in self.loc:
            raise MicroquantError(
                f"{node.op} node {node.name!r}: input {t!r} must be an activation, "
                "not a constant (constant sub-graphs should have been folded)"
            )
        return t

    def get(self, t: str, want: Perm) -> str:
        """Lowered tensor holding ``t`` in layout ``want``, transposing if needed."""
        p = self.perm[t]
        if p == want:
            return self.loc[t]
        key = (t, want)
        if key not in self.cache:
            q = [p.index(a) for a in want]
            src = self.loc[t]
            in_shape = self.g.tensor(src).shape
            name = self.fresh(f"{t}_{'nhwc' if want == NHWC else 'perm'}")
            self.g.add_tensor(Tensor(name, tuple(in_shape[i] for i in q), self.g.tensor(src).dtype))
            perm_c = self.const(name + "_perm", np.array(q, np.int32))
            self.g.nodes.append(Node("TRANSPOSE", [src, perm_c], [name], {}, name))
            if src in self.calib:
                self.calib[name] = self.calib[src]
            self.cache[key] = name
        return self.cache[key]

    def define(self, t: str, perm: Perm, name: str | None = None) -> str:
        """Create the lowered tensor for ONNX activation ``t`` stored in layout ``perm``."""
        logical = self.shape(t)
        name = name or t
        self.g.add_tensor(Tensor(name, tuple(logical[i] for i in perm), self.src.tensor(t).dtype))
        self.loc[t], self.perm[t] = name, perm
        self.calib[name] = t
        return name

    def emit(self, op: str, inputs: list[str], t: str, perm: Perm, attrs: dict, node: Node) -> None:
        out = self.define(t, perm)
        self.g.nodes.append(Node(op, inputs, [out], attrs, node.name))

    def weight(self, node: Node, k: int) -> np.ndarray:
        v = self.src.const(node.inputs[k]) if len(node.inputs) > k else None
        if v is None:
            raise MicroquantError(
                f"{node.op} node {node.name!r}: input {k} must be a constant (weights)"
            )
        return np.asarray(v, np.float32)

    # -- driver ---------------------------------------------------------------
    def run(self, handlers: dict[str, Callable[[Lowerer, Node], None]]) -> Graph:
        """Inputs, every node through ``handlers[op]``, then the graph outputs."""
        src, g = self.src, self.g
        for x in src.inputs:
            t = src.tensor(x)
            g.add_tensor(Tensor(x, t.shape, t.dtype))
            g.inputs.append(x)
            self.loc[x], self.perm[x] = x, ident(len(t.shape))
            self.calib[x] = x
        for node in src.nodes:
            handler = handlers.get(node.op)
            if handler is None:
                raise MicroquantError(
                    f"cannot lower ONNX op {node.op} (node {node.name!r}); supported: "
                    + ", ".join(sorted(handlers))
                )
            handler(self, node)
        for o in src.outputs:
            self.finish_output(o)
        return g

    def finish_output(self, o: str) -> None:
        g = self.g
        if o not in self.loc:
            raise MicroquantError(f"graph output {o!r} is a constant; nothing to compute")
        rank = len(self.shape(o))
        if self.perm[o] != ident(rank) and self.loc[o] == o:
            # The producer wrote ``o`` in another layout: rename it and transpose back.
            moved = self.fresh(o + "_nhwc")
            rename_tensor(g, o, moved)
            self.loc = {k: (moved if v == o else v) for k, v in self.loc.items()}
            self.cache = {k: (moved if v == o else v) for k, v in self.cache.items()}
        name = self.get(o, ident(rank))
        if name != o:
            if name in g.inputs or name in g.outputs or o in g.tensors:
                shape = self.const(o + "_shape", np.array(self.shape(o), np.int32))
                g.add_tensor(Tensor(o, self.shape(o), self.src.tensor(o).dtype))
                g.nodes.append(Node("RESHAPE", [name, shape], [o], {}, o + "_copy"))
                self.calib[o] = o
            else:
                rename_tensor(g, name, o)
                self.loc = {k: (o if v == name else v) for k, v in self.loc.items()}
        g.outputs.append(o)


def const_in_layout(c: np.ndarray, rank: int, perm: Perm) -> np.ndarray:
    """Broadcast constant ``c`` (ONNX right-aligned) stored in the physical layout ``perm``."""
    c = np.asarray(c, np.float32)
    if c.ndim > rank:
        raise MicroquantError(f"constant of rank {c.ndim} broadcast to rank {rank}")
    return c.reshape((1,) * (rank - c.ndim) + c.shape).transpose(perm)
