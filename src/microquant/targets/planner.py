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
  needs before writing that element. For such an op with a data input ``x`` that dies at
  that op (no later reader, not a graph output, not aliased to anything that lives on),
  let ``first(e)`` be the lowest flat index of ``x`` read by output element ``e`` and
  ``m(e) = min(first(e'), e' >= e)``. Writing element ``e`` touches output bytes
  ``[out + e*os, out + (e+1)*os)``; every later element reads ``x`` bytes at or above
  ``x_off + m(e+1)*is``. So the write can never clobber a byte still to be read iff::

      x_off - out_off >= min_shift = max_e ((e+1)*os - m(e+1)*is),  e = 0 .. n_out-2

  (``os``/``is`` are the item sizes). Either the two buffers are disjoint, or this holds.
  ``first(e)`` per op:

  - RELU, RELU6, LOGISTIC, TANH, QUANTIZE, DEQUANTIZE: ``e`` (one element in, one out);
    with equal item sizes ``min_shift = 0``, i.e. the output may sit exactly on the input.
  - ADD, MUL: the broadcast source index of ``e`` in that input (``e`` for same shape).
  - CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D: the first in-bounds input
    pixel of the output pixel's window (rows/cols clipped to the image, padding reads
    nothing), channel 0 for CONV_2D, ``oc // depth_multiplier`` for DEPTHWISE_CONV_2D,
    ``oc`` for pools. Output pixels ``(b, y, x)`` and channels are written in that order -
    TFLM's reference loops (``b, out_y, out_x, out_c``).

  Other ops (FULLY_CONNECTED, SOFTMAX, MEAN, PAD, CONCATENATION, TRANSPOSE, ...) never
  overlap: their kernels read far ahead or write in another order.
* **operator reordering**: besides the given order, a memory-aware topological order
  (always run the ready node that leaves the fewest live bytes) is tried; the order with the
  smallest arena wins and is returned in ``MemoryPlan.order`` - a code generator must run
  the nodes in that order.
* several placement orders (by size, by first use, by lifetime length; from the bottom or
  mirrored from the top of the arena) - the smallest arena wins.

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

import numpy as np

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node

ALIGN = 16
STRATEGIES = ("greedy", "optimized")

ELEMENTWISE_UNARY = ("RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE")
ELEMENTWISE_BINARY = ("ADD", "MUL")
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def tensor_bytes(graph: Graph, name: str) -> int:
    t = graph.tensor(name)
    return t.size * np.dtype(t.dtype).itemsize


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


# -- lifetimes -------------------------------------------------------------------------


def activation_names(graph: Graph) -> list[str]:
    """Non-constant tensors the arena must hold, in tensor-table order."""
    used: set[str] = set(graph.inputs) | set(graph.outputs)
    for n in graph.nodes:
        used.update(i for i in n.inputs if i)
        used.update(n.outputs)
    return [k for k, t in graph.tensors.items() if k in used and not t.is_const]


def lifetimes(graph: Graph, order: Sequence[int]) -> dict[str, tuple[int, int]]:
    """``name -> (first, last)`` step, TFLM's rules (inputs from 0, outputs to the end)."""
    names = set(activation_names(graph))
    last_step = max(len(order) - 1, 0)
    first: dict[str, int] = {n: 0 for n in graph.inputs if n in names}
    last: dict[str, int] = dict(first)
    for step, idx in enumerate(order):
        node = graph.nodes[idx]
        for o in node.outputs:
            if o in names and o not in first:
                first[o] = step
                last[o] = step
        for i in node.inputs:
            if i in names:
                if i not in first:
                    raise MicroquantError(f"tensor {i!r} is read before it is produced")
                last[i] = max(last[i], step)
    for o in graph.outputs:
        if o in first:
            last[o] = last_step
    return {n: (first[n], last[n]) for n in first}


def live_bytes(plan_offsets: dict[str, int], sizes: dict[str, int],
               life: dict[str, tuple[int, int]], steps: int) -> list[int]:
    """Distinct arena bytes occupied at each step (overlapping aliases count once)."""
    out = []
    for t in range(max(steps, 1)):
        ivs = sorted((plan_offsets[n], plan_offsets[n] + sizes[n])
                     for n, (a, b) in life.items() if a <= t <= b and sizes[n])
        total, end = 0, -1
        for lo, hi in ivs:
            if hi <= end:
                continue
            total += hi - max(lo, end)
            end = hi
        out.append(total)
    return out


# -- aliasing rules ---------------------------------------------------------------------


def _first_read_elementwise(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    rank = len(out_shape)
    shp = (1,) * (rank - len(in_shape)) + tuple(in_shape)
    idx = np.arange(int(np.prod(shp, dtype=np.int64)), dtype=np.int64).reshape(shp)
    return np.broadcast_to(idx, out_shape).ravel()


def _window_first(out_n: int, in_n: int, filt: int, stride: int, dil: int, pad: int) -> np.ndarray:
    """Per output coordinate: the first in-bounds input coordinate of its window (-1: none)."""
    res = np.full(out_n, -1, dtype=np.int64)
    for o in range(out_n):
        for k in range(filt):
            i = o * stride - pad + k * dil
            if 0 <= i < in_n:
                res[o] = i
                break
    return res


def _pad_before(padding: str, size: int, filt: int, stride: int, dilation: int) -> int:
    # TFLite's leading SAME padding (ComputePaddingWithOffset); kept local so planning
    # does not import the kernels.
    if padding != "SAME":
        return 0
    out = (size + stride - 1) // stride
    return max(((out - 1) * stride + (filt - 1) * dilation + 1 - size) // 2, 0)


def _first_read_windowed(node: Node, graph: Graph) -> np.ndarray | None:
    x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4:
        return None
    nb, h, w, ci = x.shape
    _, oh, ow, oc = y.shape
    a = node.attrs
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        wshape = graph.tensor(node.inputs[1]).shape
        kh, kw = wshape[1], wshape[2]
        dh, dw = a.get("dilation_h", 1), a.get("dilation_w", 1)
    else:
        kh, kw, dh, dw = a["filter_h"], a["filter_w"], 1, 1
    sh, sw, padding = a.get("stride_h", 1), a.get("stride_w", 1), a.get("padding", "VALID")
    rows = _window_first(oh, h, kh, sh, dh, _pad_before(padding, h, kh, sh, dh))
    cols = _window_first(ow, w, kw, sw, dw, _pad_before(padding, w, kw, sw, dw))
    if node.op == "CONV_2D":
        chan = np.zeros(oc, dtype=np.int64)
    elif node.op == "DEPTHWISE_CONV_2D":
        dm = max(oc // max(ci, 1), 1)
        chan = np.arange(oc, dtype=np.int64) // dm
    else:
        chan = np.arange(oc, dtype=np.int64)
    b = np.arange(nb, dtype=np.int64)[:, None, None, None]
    r, c = rows[None, :, None, None], cols[None, None, :, None]
    first = ((b * h + r) * w + c) * ci + chan[None, None, None, :]
    none = (r < 0) | (c < 0)
    # An output pixel whose window is all padding reads nothing of x.
    first = np.where(none, np.iinfo(np.int64).max // 4, first)
    return np.broadcast_to(first, (nb, oh, ow, oc)).ravel()


def first_read(node: Node, graph: Graph, slot: int) -> np.ndarray | None:
    """``first(e)`` for input ``slot`` of ``node`` (see module doc); None: no rule."""
    if node.op in ELEMENTWISE_UNARY and slot == 0:
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        if x.size != y.size:
            return None
        return np.arange(y.size, dtype=np.int64)
    if node.op in ELEMENTWISE_BINARY and slot in (0, 1):
        x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
        try:
            return _first_read_elementwise(x.shape, y.shape)
        except ValueError:
            return None
    if node.op in WINDOWED and slot == 0:
        return _first_read_windowed(node, graph)
    return None


def min_shift(node: Node, graph: Graph, slot: int) -> int | None:
    """Smallest ``offset[input] - offset[output]`` that keeps an overlapping write safe."""
    first = first_read(node, graph, slot)
    if first is None:
        return None
    x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
    isz, osz = np.dtype(x.dtype).itemsize, np.dtype(y.dtype).itemsize
    n = first.size
    x_bytes = x.size * isz
    if n <= 1:
        return -x_bytes  # nothing is read after the only write
    suffix = np.minimum.accumulate(first[::-1])[::-1]  # m(e) = min over e' >= e
    e1 = np.arange(1, n, dtype=np.int64)  # e + 1 for e = 0 .. n-2
    need = e1 * osz - np.minimum(suffix[1:], x.size) * isz
    return max(int(need.max()), -x_bytes)


# -- buffers (view classes) and placement ----------------------------------------------


class _Buffers:
    """Union-find of tensors that share one buffer (RESHAPE views)."""

    def __init__(self, names: list[str]) -> None:
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(b)] = self.find(a)


@dataclass
class _Problem:
    names: list[str]  # buffer roots
    size: dict[str, int]  # aligned bytes
    life: dict[str, tuple[int, int]]
    # (out_root, in_root) -> min_shift: allowed relation when they overlap
    pairs: dict[tuple[str, str], int]


def _forbidden(x: str, y: str, yoff: int, p: _Problem) -> tuple[int, int] | None:
    """Open interval of offsets for ``x`` that conflict with placed ``y`` (None: none)."""
    xs, ys = p.size[x], p.size[y]
    lo, hi = yoff - xs, yoff + ys  # any offset in (lo, hi) overlaps
    if (x, y) in p.pairs:  # x is the output, y the input: need yoff - xoff >= d
        lo = max(lo, yoff - p.pairs[(x, y)])
    elif (y, x) in p.pairs:  # x is the input: need xoff - yoff >= d
        hi = min(hi, yoff + p.pairs[(y, x)])
    return (lo, hi) if lo < hi else None


def _overlap_time(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return not (a[0] > b[1] or b[0] > a[1])


def _first_fit(p: _Problem, place_order: list[str]) -> dict[str, int]:
    offsets: dict[str, int] = {}
    for x in place_order:
        ivs = []
        for y, yoff in offsets.items():
            if _overlap_time(p.life[x], p.life[y]):
                iv = _forbidden(x, y, yoff, p)
                if iv is not None:
                    ivs.append(iv)
        cands = sorted({0} | {align_up(max(hi, 0)) for _, hi in ivs})
        for c in cands:
            if all(not (lo < c < hi) for lo, hi in ivs):
                offsets[x] = c
                break
    return offsets


def _mirror(p: _Problem) -> _Problem:
    # Offsets x' measured down from the top (x = top - x' - size): the relation
    # in - out >= d becomes out' - in' >= d + size_in - size_out, i.e. roles swap.
    pairs = {(i, o): d + p.size[i] - p.size[o] for (o, i), d in p.pairs.items()}
    return _Problem(p.names, p.size, p.life, pairs)


def _place(p: _Problem, place_order: list[str], mirrored: bool) -> dict[str, int]:
    if not mirrored:
        return _first_fit(p, place_order)
    q = _mirror(p)
    off = _first_fit(q, place_order)
    top = max((off[n] + p.size[n] for n in off), default=0)
    return {n: top - off[n] - p.size[n] for n in off}


def _extent(p: _Problem, off: dict[str, int]) -> int:
    return max((off[n] + p.size[n] for n in off), default=0)


# -- schedule ---------------------------------------------------------------------------


def _memory_aware_order(graph: Graph) -> list[int]:
    """Topological order that always runs the ready node leaving the fewest live bytes."""
    names = set(activation_names(graph))
    size = {n: tensor_bytes(graph, n) for n in names}
    readers: dict[str, set[int]] = {n: set() for n in names}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            if t in names:
                readers[t].add(i)
    available = set(graph.inputs)
    done: list[int] = []
    remaining = set(range(len(graph.nodes)))
    keep = set(graph.outputs)
    while remaining:
        ready = [i for i in sorted(remaining)
                 if all(t in available or t not in names for t in graph.nodes[i].inputs if t)]
        if not ready:
            raise MicroquantError("graph has a cycle or a tensor nobody produces")

        def delta(i: int) -> tuple[int, int]:
            node = graph.nodes[i]
            grow = sum(size[o] for o in node.outputs if o in names)
            free = sum(size[t] for t in set(node.inputs) if t in names and t not in keep
                       and readers[t] - set(done) == {i})
            return (grow - free, i)

        best = min(ready, key=delta)
        done.append(best)
        remaining.discard(best)
        available.update(graph.nodes[best].outputs)
    return done


# -- public API -------------------------------------------------------------------------


def _problem(graph: Graph, order: list[int], optimized: bool
             ) -> tuple[_Problem, _Buffers, dict[str, tuple[int, int]], list[Alias]]:
    names = activation_names(graph)
    life = lifetimes(graph, order)
    names = [n for n in names if n in life]
    bufs = _Buffers(names)
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
    return _Problem(roots, bsize, blife, pairs), bufs, life, aliases


def _place_orders(p: _Problem, index: dict[str, int]) -> list[list[str]]:
    n = p.names
    # TFLM fills its list from the tail, then bubble-sorts: equal sizes end up in reverse
    # tensor-table order.
    by_size = sorted(n, key=lambda r: (-p.size[r], -index[r]))
    by_first = sorted(n, key=lambda r: (p.life[r][0], -p.size[r], index[r]))
    by_len = sorted(n, key=lambda r: (-(p.life[r][1] - p.life[r][0]), -p.size[r], index[r]))
    by_area = sorted(n, key=lambda r: (-p.size[r] * (1 + p.life[r][1] - p.life[r][0]), index[r]))
    by_last = sorted(n, key=lambda r: (-p.life[r][1], -p.size[r], index[r]))
    return [by_size, by_first, by_len, by_area, by_last]


def lower_bound(p: _Problem, steps: int) -> int:
    """No placement of ``p`` can use fewer bytes (alignment aside): at each step, the live
    sizes minus the most each output can overlap its dying inputs."""
    best = 0
    for t in range(max(steps, 1)):
        live = [r for r in p.names if p.life[r][0] <= t <= p.life[r][1]]
        total = sum(p.size[r] for r in live)
        saved: dict[str, int] = {}
        for (o, i), d in p.pairs.items():
            if p.life[o][0] == t and p.life[i][1] == t:
                so, si = p.size[o], p.size[i]
                saved[o] = saved.get(o, 0) + max(0, min(so - max(d, 0), si))
        total -= sum(min(v, p.size[o]) for o, v in saved.items())
        best = max(best, total)
    return best


def _search(p: _Problem, index: dict[str, int], floor: int) -> dict[str, int]:
    """Best first-fit over heuristic and (seeded) random placement orders, both directions."""
    import random

    orders = _place_orders(p, index)
    n = max(len(p.names), 1)
    rng = random.Random(0)
    for _ in range(max(4, min(64, 2_000_000 // (n * n)))):
        shuffled = list(p.names)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    best: dict[str, int] | None = None
    for po in orders:
        for mirrored in (False, True):
            cand = _place(p, po, mirrored)
            if best is None or _extent(p, cand) < _extent(p, best):
                best = cand
            if _extent(p, best) <= floor:
                return best
    return best or {}


def _plan_for_order(graph: Graph, order: list[int], optimized: bool) -> MemoryPlan:
    p, bufs, life, aliases = _problem(graph, order, optimized)
    index = {r: i for i, r in enumerate(activation_names(graph))}
    floor = align_up(lower_bound(p, len(order)))
    if not optimized:
        off = _first_fit(p, _place_orders(p, index)[0])
    else:
        off = _search(p, index, floor)
    offsets = {n: off[bufs.find(n)] for n in life}
    sizes = {n: tensor_bytes(graph, n) for n in life}
    done = []
    for a in aliases:
        shift = offsets[a.input] - offsets[a.output]
        o0, i0 = offsets[a.output], offsets[a.input]
        active = o0 < i0 + sizes[a.input] and i0 < o0 + sizes[a.output]
        done.append(Alias(a.node, a.op, a.output, a.input, a.kind, a.min_shift, shift,
                          active or a.kind == "view"))
    arena = align_up(_extent(p, off))
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
        alt = _memory_aware_order(graph)
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
    views: _Buffers = _Buffers(list(life))
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
            if not _overlap_time(life[a], life[b]):
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
