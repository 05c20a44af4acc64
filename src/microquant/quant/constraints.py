"""TFLite Micro's constraints on activation quantization parameters.

Three rules decide an int8 activation's ``(scale, zero_point)``:

1. **Fixed output parameters** - kernels that assume a fixed output encoding:
   SOFTMAX and LOGISTIC output ``1/256, zp -128`` (``[0, 1)``), TANH ``1/128, zp 0``;
   with int16 activations (16x8) all three output ``1/32768, zp 0``.
2. **Shared parameters** - kernels that move or select int8 values without rescaling
   (RESHAPE, TRANSPOSE, PAD, MAX_POOL_2D, AVERAGE_POOL_2D) need the data input and
   the output to share one encoding; CONCATENATION needs it across all inputs and the
   output (TFLM's Prepare checks equality). Tensors tied this way form groups
   (union-find) whose range is the union of the members' ranges. One exception, as the
   TFLite converter does it: a CONCATENATION input whose group has fixed parameters
   (rule 1) while the other inputs do not (or have other fixed ones) is not tied to the
   concat; a requantizing QUANTIZE is put in between (:func:`requantize_inputs`), so
   neither the fixed producer nor the other inputs lose their range.
3. **Fused activations** - a node's output range is the post-activation range: RELU
   clamps to ``[0, inf)``, RELU6 to ``[0, 6]``, RELU_N1_TO_1 to ``[-1, 1]``.

Example:
    >>> uf = UnionFind()
    >>> uf.union("a", "b"); uf.union("c", "b")
    >>> uf.find("a") == uf.find("c")
    True
"""

from __future__ import annotations

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph

FIXED_OUTPUT_QPARAMS: dict[str, tuple[float, int]] = {
    "SOFTMAX": (1.0 / 256.0, -128),
    "LOGISTIC": (1.0 / 256.0, -128),
    "TANH": (1.0 / 128.0, 0),
}
# The 16x8 scheme (int16 activations): TFLite's int16 kernels want symmetric Q0.15 outputs.
FIXED_OUTPUT_QPARAMS_INT16: dict[str, tuple[float, int]] = {
    "SOFTMAX": (1.0 / 32768.0, 0),
    "LOGISTIC": (1.0 / 32768.0, 0),
    "TANH": (1.0 / 32768.0, 0),
}
# op -> which inputs share the output's encoding ("first" or "all").
SHARED_QPARAM_OPS: dict[str, str] = {
    "RESHAPE": "first",
    "TRANSPOSE": "first",
    "PAD": "first",
    "MAX_POOL_2D": "first",
    "AVERAGE_POOL_2D": "first",
    "CONCATENATION": "all",
}
ACTIVATION_CLAMP: dict[str, tuple[float, float]] = {
    "NONE": (-np.inf, np.inf),
    "RELU": (0.0, np.inf),
    "RELU6": (0.0, 6.0),
    "RELU_N1_TO_1": (-1.0, 1.0),
}


class UnionFind:
    """Disjoint sets of tensor names (path halving)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return out


def shared_groups(graph: Graph, quantizable: set[str]) -> UnionFind:
    """Union-find over the ``quantizable`` tensors (float activations and the float
    constants that feed shared-encoding ops), joined by rule 2."""
    uf = UnionFind()
    for name in quantizable:
        uf.find(name)
    for node in graph.nodes:
        mode = SHARED_QPARAM_OPS.get(node.op)
        if mode is None:
            continue
        data_inputs = node.inputs[:1] if mode == "first" else node.inputs
        for i in data_inputs:
            if i in quantizable:
                uf.union(node.outputs[0], i)
    return uf


def requantize_inputs(
    graph: Graph,
    quantizable: set[str],
    fixed: dict[str, tuple[float, int]],
    dtype: str = "int8",
) -> list[tuple[int, int]]:
    """``(node index, input index)`` of the CONCATENATION inputs that need a requantizing
    QUANTIZE in front of them instead of sharing the concat's encoding.

    An input needs one when its group (the tensors tied to it by the single-input ops of
    rule 2, e.g. ``LOGISTIC -> RESHAPE``) has fixed output parameters and another
    activation input of the same concat does not have the very same fixed encoding: forcing
    the fixed encoding on the concat would clip the other inputs (and two different fixed
    encodings cannot be shared at all). Constant inputs count as agreeing with a fixed
    encoding when their values fit in it. Concats whose inputs all agree are left alone, so
    graphs without such a case quantize exactly as before.

    Example (``sigmoid(x)`` concatenated with ``x``):
        >>> from microquant.ir.graph import Node, Tensor
        >>> g = Graph(inputs=["x"], outputs=["y"])
        >>> for n in ("x", "s", "y"): _ = g.add_tensor(Tensor(n, (1, 4)))
        >>> g.nodes = [Node("LOGISTIC", ["x"], ["s"]),
        ...            Node("CONCATENATION", ["s", "x"], ["y"], {"axis": 1})]
        >>> requantize_inputs(g, {"x", "s", "y"}, {"s": (1 / 256, -128)})
        [(1, 0)]
    """
    uf = UnionFind()
    for name in quantizable:
        uf.find(name)
    for node in graph.nodes:
        if SHARED_QPARAM_OPS.get(node.op) == "first" and node.inputs[0] in quantizable:
            uf.union(node.outputs[0], node.inputs[0])
    info = np.iinfo(dtype)
    points: list[tuple[int, int]] = []
    for k, node in enumerate(graph.nodes):
        if SHARED_QPARAM_OPS.get(node.op) != "all":
            continue
        ins = [i for i in node.inputs if i in quantizable]
        roots_fixed = {r: fixed[m] for r, ms in uf.groups().items() for m in ms if m in fixed}
        enc = {i: roots_fixed.get(uf.find(i)) for i in ins}
        encodings = {e for e in enc.values() if e is not None}
        # Sharing is safe when all inputs have one fixed encoding (constants that fit
        # it may join); with no fixed input at all this is the plain rule 2.
        agree = len(encodings) <= 1 and all(
            enc[i] is not None
            or (graph.tensors[i].is_const and _fits(graph.tensors[i].data, e, info))
            for e in encodings
            for i in ins
        )
        for j, i in enumerate(node.inputs):
            if i not in quantizable:
                continue
            if enc[i] is not None and not agree:
                points.append((k, j))
            else:
                uf.union(node.outputs[0], i)
    return points


def _fits(data: np.ndarray, enc: tuple[float, int], info: np.iinfo) -> bool:
    """Whether every value of ``data`` lies inside the real range of encoding ``enc``."""
    scale, zp = enc
    return bool(
        np.min(data) >= scale * (info.min - zp) and np.max(data) <= scale * (info.max - zp)
    )


def clamp_range(lo: float, hi: float, activation: str | None) -> tuple[float, float]:
    """``[lo, hi]`` seen through a fused activation (rule 3)."""
    act = activation or "NONE"
    if act not in ACTIVATION_CLAMP:
        raise MicroquantError(f"unsupported fused activation {act!r}")
    a, b = ACTIVATION_CLAMP[act]
    return float(np.clip(lo, a, b)), float(np.clip(hi, a, b))


def group_encoding(
    graph: Graph,
    members: list[str],
    ranges: dict[str, tuple[float, float]],
    fixed: dict[str, tuple[float, int]],
) -> tuple[float, float] | tuple[str, tuple[float, int]]:
    """The union range of a group, or ``("fixed", (scale, zp))`` when a member has fixed
    output parameters. Raises if no member has a range."""
    fixed_members = {m: fixed[m] for m in members if m in fixed}
    if fixed_members:
        encodings = set(fixed_members.values())
        if len(encodings) > 1:
            names = ", ".join(sorted(fixed_members))
            raise MicroquantError(
                f"tensors {names} need different fixed int8 encodings but must share one"
            )
        return "fixed", encodings.pop()
    los, his = [], []
    for m in members:
        t = graph.tensors[m]
        if t.is_const:
            los.append(float(np.min(t.data)))
            his.append(float(np.max(t.data)))
        elif m in ranges:
            los.append(ranges[m][0])
            his.append(ranges[m][1])
    activations = [m for m in members if not graph.tensors[m].is_const]
    if activations and not any(m in ranges for m in activations):
        raise MicroquantError(f"no calibration range for tensor {sorted(activations)[0]!r}")
    return min(los), max(his)
