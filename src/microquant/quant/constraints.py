"""TFLite Micro's constraints on activation quantization parameters.

Three rules decide an int8 activation's ``(scale, zero_point)``:

1. **Fixed output parameters** - kernels that assume a fixed output encoding:
   SOFTMAX and LOGISTIC output ``1/256, zp -128`` (``[0, 1)``), TANH ``1/128, zp 0``;
   with int16 activations (16x8) all three output ``1/32768, zp 0``.
2. **Shared parameters** - kernels that move or select int8 values without rescaling
   (RESHAPE, TRANSPOSE, PAD, MAX_POOL_2D, AVERAGE_POOL_2D) need the data input and
   the output to share one encoding; CONCATENATION needs it across all inputs and the
   output (TFLM's Prepare checks equality). Tensors tied this way form groups
   (union-find) whose range is the union of the members' ranges.
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
