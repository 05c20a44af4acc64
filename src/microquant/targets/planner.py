"""Activation-arena memory planner: where every non-constant tensor lives in one buffer.

Lifetimes are over the node execution order (step ``i`` = the ``i``-th node run):
graph inputs are live from step 0, a tensor produced at step ``i`` is live from ``i``
to its last consumer (graph outputs to the last step). Two tensors whose lifetimes share a
step may not share arena bytes - except for the aliasing pairs listed below. Constants
(weights, biases, shape operands) live in flash, never in the arena.

Strategies
==========

``"greedy"`` - TensorFlow Lite Micro's ``GreedyMemoryPlanner``: tensor sizes rounded up to
16 bytes, tensors sorted by size (descending, ties in reverse tensor-table order), each placed at
the lowest offset (multiple of 16) where it overlaps no already-placed tensor that is live
at the same time. Node order unchanged. On the MLPerf Tiny models this reproduces TFLM's
non-persistent ("head") arena to the byte.

``"optimized"`` - the same first-fit search plus:

* **view aliasing**: a RESHAPE output *is* its input buffer (same offset, the kernel
  becomes a no-op; a generated kernel must skip the copy or use ``memmove``).
* **in-place / overlapping outputs** for ops whose straightforward kernel writes output
  elements in flat (row-major, NHWC) order and reads every input element an output element
  needs before writing that element (element-wise ops, ADD/MUL, convolutions and pools):
  when such an op's data input dies at that op (no later reader, not a graph output, not
  aliased to anything that lives on), its output may overlap it provided
  ``offset[input] - offset[output] >= min_shift`` - the rules and the derivation are in
  :mod:`microquant.targets.inplace`. Other ops (FULLY_CONNECTED, SOFTMAX, MEAN, PAD,
  CONCATENATION, TRANSPOSE, ...) never overlap.
* **operator reordering**: besides the given order, a memory-aware topological order
  (always run the ready node that leaves the fewest live bytes) is tried; the order with the
  smallest arena wins and is returned in ``MemoryPlan.order`` - a code generator must run
  the nodes in that order (:mod:`microquant.targets.reorder`).
* several placement orders (by size, by first use, by lifetime length; from the bottom or
  mirrored from the top of the arena) - the smallest arena wins
  (:mod:`microquant.targets.placement`).

Lifetimes and live bytes come from :mod:`microquant.targets.lifetimes`; this module builds
the placement problem for one order, picks the best plan and checks it.

Every plan is checked by :func:`check_plan` before it is returned.

For a code generator
====================

Run the nodes in ``plan.order``; tensor ``t`` lives at ``arena + plan.offsets[t]``
(16-byte aligned, ``plan.arena_size`` bytes in total; constants stay in flash). For every
``a in plan.active_aliases()``:

* ``a.kind == "view"`` (RESHAPE): input and output share the bytes - emit no copy (or a
  ``memmove``, which is then a no-op).
* ``a.kind in ("inplace", "overlap")``: the output overlaps its input ``a.input`` with
  ``offset[input] - offset[output] = a.shift >= a.min_shift``. The kernel must write
  output elements in ascending flat (NHWC) order, each only after reading every input
  element it needs.
  TFLM's reference loops do; a kernel that reads ahead (e.g. an im2col kernel reading the
  patches of the next pixels before writing them) is also fine, one that writes ahead of
  its reads is not - check each optimized kernel. Scratch buffers (im2col) must live
  outside this arena. After the node, ``a.input`` is garbage (it was dead anyway).

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["z"])
    >>> for n in "xyz":
    ...     _ = g.add_tensor(Tensor(n, (1, 64), "int8"))
    >>> g.nodes += [Node("RELU", ["x"], ["y"]), Node("RELU", ["y"], ["z"])]
    >>> plan_memory(g, "greedy").arena_size, plan_memory(g, "optimized").arena_size
    (128, 64)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node
from microquant.targets.inplace import (
    ELEMENTWISE_BINARY,
    ELEMENTWISE_UNARY,
    WINDOWED,
    first_read,
    min_shift,
)
from microquant.targets.lifetimes import (
    ALIGN,
    activation_names,
    align_up,
    lifetimes,
    live_bytes,
    overlap_time,
    tensor_bytes,
)
from microquant.targets.placement import (
    Buffers,
    Problem,
    extent,
    first_fit,
    lower_bound,
    place_orders,
    search,
)
from microquant.targets.reorder import memory_aware_order

__all__ = [
    "ALIGN", "ELEMENTWISE_BINARY", "ELEMENTWISE_UNARY", "STRATEGIES", "WINDOWED", "Alias",
    "MemoryPlan", "activation_names", "align_up", "check_plan", "first_read", "lifetimes",
    "live_bytes", "lower_bound", "min_shift", "plan_memory", "tensor_bytes",
]

STRATEGIES = ("greedy", "optimized")


@dataclass(frozen=True)
class Alias:
    """An allowed overlap between a node's output and one of its (dying) inputs.

    ``kind``: ``"view"`` (RESHAPE: same buffer, offsets equal), ``"inplace"`` (element-wise,
    ``min_shift <= 0``: the output may start exactly at the input) or ``"overlap"`` (output
    must start at least ``min_shift`` bytes below the input when they overlap).
    ``shift`` is the realised ``offset[input] - offset[output]``; ``active`` says whether
    the two buffers actually overlap in the plan (a C generator need only care then).
    """

    node: int  # index into graph.nodes
    op: str
    output: str
    input: str
    kind: str
    min_shift: int
    shift: int = 0
    active: bool = False


@dataclass
class MemoryPlan:
    """Offsets (bytes from the arena start) of every activation tensor."""

    strategy: str
    offsets: dict[str, int]
    sizes: dict[str, int]  # bytes per tensor (unaligned)
    arena_size: int  # bytes, multiple of 16
    lifetimes: dict[str, tuple[int, int]]  # first, last step (inclusive) in ``order``
    order: list[int]  # node indices into graph.nodes, in execution order
    live_bytes: list[int]  # per step: arena bytes occupied by tensors live at that step
    aliases: list[Alias] = field(default_factory=list)
    # No placement of this order and these aliasing rules needs less (16-byte aligned).
    lower_bound: int = 0

    @property
    def peak_live_bytes(self) -> int:
        return max(self.live_bytes, default=0)

    def active_aliases(self) -> list[Alias]:
        return [a for a in self.aliases if a.active]

    def ordered_nodes(self, graph: Graph) -> list[Node]:
        return [graph.nodes[i] for i in self.order]

    def as_dict(self) -> dict:
        """JSON-ready summary (what a code generator or a report needs)."""
        return {
            "strategy": self.strategy, "arena_size": self.arena_size,
            "lower_bound": self.lower_bound, "order": list(self.order),
            "tensors": {n: {"offset": self.offsets[n], "bytes": self.sizes[n],
                            "first": self.lifetimes[n][0], "last": self.lifetimes[n][1]}
                        for n in self.offsets},
            "aliases": [asdict(a) for a in self.aliases],
            "live_bytes": list(self.live_bytes),
        }


# -- planning ----------------------------------------------------------------------------


def _problem(graph: Graph, order: list[int], optimized: bool
             ) -> tuple[Problem, Buffers, dict[str, tuple[int, int]], list[Alias]]:
    names = activation_names(graph)
    life = lifetimes(graph, order)
    names = [n for n in names if n in life]
    bufs = Buffers(names)
    aliases: list[Alias] = []
    step_of = {idx: s for s, idx in enumerate(order)}
    if optimized:
        for idx in order:
            node = graph.nodes[idx]
            if node.op == "RESHAPE" and node.inputs and node.inputs[0] in life \
                    and tensor_bytes(graph, node.inputs[0]) == tensor_bytes(graph, node.outputs[0]):
                bufs.union(node.inputs[0], node.outputs[0])
                aliases.append(Alias(idx, node.op, node.outputs[0], node.inputs[0], "view", 0))
    roots = list(dict.fromkeys(bufs.find(n) for n in names))
    blife: dict[str, tuple[int, int]] = {}
    bsize: dict[str, int] = {}
    for n in names:
        r = bufs.find(n)
        a, b = life[n]
        pa, pb = blife.get(r, (a, b))
        blife[r] = (min(a, pa), max(b, pb))
        bsize[r] = max(bsize.get(r, 0), align_up(tensor_bytes(graph, n)))
    pairs: dict[tuple[str, str], int] = {}
    if optimized:
        for idx in order:
            node = graph.nodes[idx]
            s = step_of[idx]
            if len(node.outputs) != 1 or node.outputs[0] not in life:
                continue
            out = node.outputs[0]
            roots_in = [bufs.find(i) if i in life else None for i in node.inputs]
            for slot, inp in enumerate(node.inputs):
                r_in = roots_in[slot]
                if r_in is None or roots_in.count(r_in) > 1 or r_in == bufs.find(out):
                    continue
                if blife[r_in][1] != s or any(bufs.find(o) == r_in for o in graph.outputs):
                    continue  # the input (or a view of it) is still needed later
                d = min_shift(node, graph, slot)
                if d is None:
                    continue
                pairs[(bufs.find(out), r_in)] = d
                kind = "inplace" if d <= 0 else "overlap"
                aliases.append(Alias(idx, node.op, out, inp, kind, d))
    return Problem(roots, bsize, blife, pairs), bufs, life, aliases


def _plan_for_order(graph: Graph, order: list[int], optimized: bool) -> MemoryPlan:
    p, bufs, life, aliases = _problem(graph, order, optimized)
    index = {r: i for i, r in enumerate(activation_names(graph))}
    floor = align_up(lower_bound(p, len(order)))
    if not optimized:
        off = first_fit(p, place_orders(p, index)[0])
    else:
        off = search(p, index, floor)
    offsets = {n: off[bufs.find(n)] for n in life}
    sizes = {n: tensor_bytes(graph, n) for n in life}
    done = []
    for a in aliases:
        shift = offsets[a.input] - offsets[a.output]
        o0, i0 = offsets[a.output], offsets[a.input]
        active = o0 < i0 + sizes[a.input] and i0 < o0 + sizes[a.output]
        done.append(Alias(a.node, a.op, a.output, a.input, a.kind, a.min_shift, shift,
                          active or a.kind == "view"))
    arena = align_up(extent(p, off))
    return MemoryPlan("optimized" if optimized else "greedy", offsets, sizes, arena, life,
                      list(order), live_bytes(offsets, sizes, life, len(order)), done,
                      lower_bound=floor)


def plan_memory(graph: Graph, strategy: str = "greedy",
                order: Sequence[int] | None = None) -> MemoryPlan:
    """Plan the activation arena of ``graph`` (see the module doc for both strategies).

    ``order`` pins the node execution order (indices into ``graph.nodes``); by default
    "greedy" keeps the graph's order and "optimized" may pick a better topological one.
    """
    if strategy not in STRATEGIES:
        raise MicroquantError(f"unknown memory strategy {strategy!r}; choose from "
                              + ", ".join(STRATEGIES))
    base = list(range(len(graph.nodes)))
    if order is not None:
        orders = [list(order)]
        if sorted(orders[0]) != base:
            raise MicroquantError("order must list every node index exactly once")
    elif strategy == "greedy":
        orders = [base]
    else:
        orders = [base]
        alt = memory_aware_order(graph)
        if alt != base:
            orders.append(alt)
    plans = [_plan_for_order(graph, o, optimized=strategy == "optimized") for o in orders]
    plan = min(plans, key=lambda pl: (pl.arena_size, pl.order != orders[0]))
    try:
        check_plan(graph, plan)
    except AssertionError as e:
        if order is not None:
            raise MicroquantError(f"invalid node order: {e}") from None
        raise
    return plan


def check_plan(graph: Graph, plan: MemoryPlan) -> None:
    """Raise ``AssertionError`` unless every pair of simultaneously live tensors is either
    disjoint in the arena or an allowed alias (view, or overlap satisfying ``min_shift``)."""
    if sorted(plan.order) != list(range(len(graph.nodes))):
        raise AssertionError("plan order is not a permutation of the nodes")
    seen = set(graph.inputs) | {k for k, t in graph.tensors.items() if t.is_const} | {""}
    for i in plan.order:
        node = graph.nodes[i]
        missing = [t for t in node.inputs if t not in seen]
        if missing:
            raise AssertionError(f"plan order runs {node.op} before {missing[0]!r} exists")
        seen.update(node.outputs)
    life = lifetimes(graph, plan.order)
    if life != plan.lifetimes:
        raise AssertionError("plan lifetimes do not match its order")
    views: Buffers = Buffers(list(life))
    allowed: dict[tuple[str, str], int] = {}
    for a in plan.aliases:
        if a.kind == "view":
            views.union(a.input, a.output)
        else:
            allowed[(a.output, a.input)] = a.min_shift
    for a in plan.aliases:
        if a.kind == "view" and plan.offsets[a.input] != plan.offsets[a.output]:
            raise AssertionError(f"view {a.output!r} is not at its input's offset")
    names = list(life)
    for n in names:
        if plan.offsets[n] % ALIGN or plan.offsets[n] < 0 \
                or plan.offsets[n] + plan.sizes[n] > plan.arena_size:
            raise AssertionError(f"tensor {n!r} is misaligned or outside the arena")
    for ai, a in enumerate(names):
        for b in names[ai + 1:]:
            if not overlap_time(life[a], life[b]):
                continue
            oa, ob = plan.offsets[a], plan.offsets[b]
            if not (oa < ob + plan.sizes[b] and ob < oa + plan.sizes[a]):
                continue
            if views.find(a) == views.find(b):
                continue
            for out, inp in ((a, b), (b, a)):
                ro, ri = views.find(out), views.find(inp)
                d = next((dd for (o, i), dd in allowed.items()
                          if views.find(o) == ro and views.find(i) == ri), None)
                if d is not None and plan.offsets[inp] - plan.offsets[out] >= d:
                    # the pair shares exactly one step: the op that consumes inp, makes out
                    lo = max(life[a][0], life[b][0])
                    hi = min(life[a][1], life[b][1])
                    if lo == hi:
                        break
            else:
                raise AssertionError(f"tensors {a!r} and {b!r} overlap in time and memory")
