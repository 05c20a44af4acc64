"""Static arena planning for the C export: one byte offset per activation tensor.

A tensor lives from the node that produces it (graph inputs: before the first node) to
the last node that reads it (graph outputs: after the last node). Two tensors may share
bytes only when their lifetimes do not intersect.

:func:`plan_offsets` is a greedy first-fit planner (largest tensor first, each placed at
the lowest aligned offset that clashes with no already-placed, simultaneously-live
tensor) - the classic TFLite Micro strategy. When the project's planner
(``microquant.targets.planner.plan_memory``) is importable, :func:`plan_arena` uses it
and checks its answer with :func:`check_plan`, keeping ours as the fallback.

Example:
    >>> from microquant.ir.graph import Graph, Node, Tensor
    >>> g = Graph(inputs=["x"], outputs=["z"])
    >>> for n in "xyz":
    ...     _ = g.add_tensor(Tensor(n, (1, 8), "int8"))
    >>> g.nodes = [Node("RELU", ["x"], ["y"]), Node("RELU", ["y"], ["z"])]
    >>> plan_offsets(g)          # x and z never live together: they share offset 0
    ({'x': 0, 'y': 8, 'z': 0}, 16)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microquant.ir.graph import Graph

ALIGNMENT = 4  # bytes; keeps every tensor word-aligned for the kernels' int8 loads


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """``name -> (first, last)`` node index for every non-constant tensor the graph touches.

    Graph inputs start at -1, graph outputs end at ``len(nodes)``.
    """
    life: dict[str, list[int]] = {}

    def touch(name: str, i: int) -> None:
        if not name or graph.tensor(name).is_const:
            return
        if name in life:
            life[name][0] = min(life[name][0], i)
            life[name][1] = max(life[name][1], i)
        else:
            life[name] = [i, i]

    for name in graph.inputs:
        touch(name, -1)
    for i, node in enumerate(graph.nodes):
        for name in node.inputs + node.outputs:
            touch(name, i)
    for name in graph.outputs:
        touch(name, len(graph.nodes))
    return {k: (v[0], v[1]) for k, v in life.items()}


def _nbytes(graph: Graph, name: str) -> int:
    t = graph.tensor(name)
    return t.size * int(np.dtype(t.dtype).itemsize)


def plan_offsets(graph: Graph) -> tuple[dict[str, int], int]:
    """Greedy first-fit arena plan: ``(offsets by tensor name, arena size in bytes)``."""
    life = lifetimes(graph)
    order = sorted(life, key=lambda n: (-_nbytes(graph, n), life[n][0], n))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets: dict[str, int] = {}
    for name in order:
        size = _align(_nbytes(graph, name))
        first, last = life[name]
        clashes = sorted(
            (o, e) for o, e, f, la in placed if not (la < first or last < f)
        )
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, _align(e))
        offsets[name] = offset
        placed.append((offset, offset + size, first, last))
    arena = max((e for _, e, _, _ in placed), default=0)
    return dict(sorted(offsets.items(), key=lambda kv: list(life).index(kv[0]))), arena


def check_plan(graph: Graph, offsets: dict[str, int], arena_size: int,
               allowed: set[tuple[str, str]] | frozenset = frozenset()) -> str | None:
    """``None`` when the plan is usable with the graph's node order, else the first problem.

    Usable: every live tensor has an offset, fits in the arena, and no two simultaneously
    live tensors overlap - except a RESHAPE output placed exactly on its input (a view,
    which the C kernel treats as a no-op copy) and ``(input, output)`` pairs in
    ``allowed`` (overlaps a planner proved safe for the kernels' write order).
    """
    life = lifetimes(graph)
    views = {(n.inputs[0], n.outputs[0]) for n in graph.nodes if n.op == "RESHAPE"}
    ok_pairs = set(allowed) | {(b, a) for a, b in allowed}
    spans = {}
    for name in life:
        if name not in offsets:
            return f"tensor {name!r} has no offset"
        off, size = int(offsets[name]), _nbytes(graph, name)
        if off < 0 or off + size > arena_size:
            return f"tensor {name!r} [{off}, {off + size}) is outside the {arena_size}-byte arena"
        spans[name] = (off, off + size)
    names = list(life)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (fa, la), (fb, lb) = life[a], life[b]
            if la < fb or lb < fa:
                continue
            (oa, ea), (ob, eb) = spans[a], spans[b]
            if ea <= ob or eb <= oa:
                continue
            if ((a, b) in views or (b, a) in views) and oa == ob:
                continue
            if (a, b) in ok_pairs:
                continue
            return f"tensors {a!r} and {b!r} are live together but overlap"
    return None


@dataclass
class ArenaPlan:
    """Where activations live and in which order the nodes run."""

    offsets: dict[str, int]
    arena_size: int
    planner: str
    order: list[int]  # indices into graph.nodes, execution order


def plan_arena(graph: Graph) -> ArenaPlan:
    """The smallest checked plan available.

    Tries the project planner (``microquant.targets.planner.plan_memory``, "optimized": it
    may reorder nodes, alias RESHAPE views and overlap an op's output with a dying input
    when the kernel's ascending write order makes that safe - true for every kernel in the
    C library, which reads each output element's inputs before writing it and writes in
    NHWC order). Its plan is re-checked here with its node order and declared aliases;
    any failure falls back to :func:`plan_offsets` in graph order.
    """
    offsets, size = plan_offsets(graph)
    best = ArenaPlan(offsets, size, "greedy-first-fit", list(range(len(graph.nodes))))
    try:
        from microquant.targets.planner import plan_memory
    except ImportError:
        return best
    try:
        plan = plan_memory(graph, strategy="optimized")
        order = [int(i) for i in plan.order]
        ordered = graph.copy()
        ordered.nodes = [ordered.nodes[i] for i in order]
        allowed = {(a.input, a.output) for a in getattr(plan, "aliases", [])}
        ext = {k: int(v) for k, v in plan.offsets.items()}
        problem = (
            "order is not a permutation" if sorted(order) != list(range(len(graph.nodes)))
            else check_plan(ordered, ext, int(plan.arena_size), allowed)
        )
    except Exception:  # noqa: BLE001 - an optional planner must never break the export
        return best
    if problem is None and int(plan.arena_size) <= size:
        return ArenaPlan(ext, int(plan.arena_size), "targets.planner (optimized)", order)
    return best
