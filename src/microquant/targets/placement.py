"""Offset placement of arena buffers: TFLM-style greedy first-fit and a small search.

A :class:`Problem` lists buffers (view classes already merged) with their aligned sizes,
lifetimes and allowed overlaps ``pairs[(out, in)] = min_shift`` (see
:mod:`microquant.targets.inplace`): when ``out`` and ``in`` overlap in memory,
``offset[in] - offset[out] >= min_shift`` must hold. :func:`first_fit` places buffers one
by one, in the given order, at the lowest 16-byte multiple where none of the already-placed
buffers live at the same time forbids it - TensorFlow Lite Micro's ``GreedyMemoryPlanner``
when the order is :func:`place_orders`\\ ``[0]`` (size descending, ties in reverse
tensor-table order) and there are no pairs. :func:`search` tries several placement orders
(heuristic and seeded random), from the bottom and mirrored from the top of the arena,
and stops early at :func:`lower_bound`.

Example:
    >>> p = Problem(["a", "b"], {"a": 32, "b": 16}, {"a": (0, 1), "b": (1, 2)}, {})
    >>> first_fit(p, ["a", "b"])
    {'a': 0, 'b': 32}
    >>> first_fit(Problem(p.names, p.size, p.life, {("b", "a"): 0}), ["a", "b"])
    {'a': 0, 'b': 0}
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from microquant.targets.lifetimes import align_up, overlap_time


class Buffers:
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
class Problem:
    """Buffers to place: ``names`` (roots), aligned ``size``, ``life`` and allowed ``pairs``."""

    names: list[str]  # buffer roots
    size: dict[str, int]  # aligned bytes
    life: dict[str, tuple[int, int]]
    # (out_root, in_root) -> min_shift: allowed relation when they overlap
    pairs: dict[tuple[str, str], int]


def _forbidden(x: str, y: str, yoff: int, p: Problem) -> tuple[int, int] | None:
    """Open interval of offsets for ``x`` that conflict with placed ``y`` (None: none)."""
    xs, ys = p.size[x], p.size[y]
    lo, hi = yoff - xs, yoff + ys  # any offset in (lo, hi) overlaps
    if (x, y) in p.pairs:  # x is the output, y the input: need yoff - xoff >= d
        lo = max(lo, yoff - p.pairs[(x, y)])
    elif (y, x) in p.pairs:  # x is the input: need xoff - yoff >= d
        hi = min(hi, yoff + p.pairs[(y, x)])
    return (lo, hi) if lo < hi else None


def first_fit(p: Problem, place_order: list[str]) -> dict[str, int]:
    """Place ``place_order`` one by one at the lowest aligned offset nothing forbids."""
    offsets: dict[str, int] = {}
    for x in place_order:
        ivs = []
        for y, yoff in offsets.items():
            if overlap_time(p.life[x], p.life[y]):
                iv = _forbidden(x, y, yoff, p)
                if iv is not None:
                    ivs.append(iv)
        cands = sorted({0} | {align_up(max(hi, 0)) for _, hi in ivs})
        for c in cands:
            if all(not (lo < c < hi) for lo, hi in ivs):
                offsets[x] = c
                break
    return offsets


def _mirror(p: Problem) -> Problem:
    # Offsets x' measured down from the top (x = top - x' - size): the relation
    # in - out >= d becomes out' - in' >= d + size_in - size_out, i.e. roles swap.
    pairs = {(i, o): d + p.size[i] - p.size[o] for (o, i), d in p.pairs.items()}
    return Problem(p.names, p.size, p.life, pairs)


def place(p: Problem, place_order: list[str], mirrored: bool) -> dict[str, int]:
    """:func:`first_fit` from the bottom, or (``mirrored``) from the top of the arena."""
    if not mirrored:
        return first_fit(p, place_order)
    q = _mirror(p)
    off = first_fit(q, place_order)
    top = max((off[n] + p.size[n] for n in off), default=0)
    return {n: top - off[n] - p.size[n] for n in off}


def extent(p: Problem, off: dict[str, int]) -> int:
    """Arena bytes a placement uses (highest buffer end)."""
    return max((off[n] + p.size[n] for n in off), default=0)


def place_orders(p: Problem, index: dict[str, int]) -> list[list[str]]:
    """Heuristic placement orders; the first is TFLM's (``index``: tensor-table position)."""
    n = p.names
    # TFLM fills its list from the tail, then bubble-sorts: equal sizes end up in reverse
    # tensor-table order.
    by_size = sorted(n, key=lambda r: (-p.size[r], -index[r]))
    by_first = sorted(n, key=lambda r: (p.life[r][0], -p.size[r], index[r]))
    by_len = sorted(n, key=lambda r: (-(p.life[r][1] - p.life[r][0]), -p.size[r], index[r]))
    by_area = sorted(n, key=lambda r: (-p.size[r] * (1 + p.life[r][1] - p.life[r][0]), index[r]))
    by_last = sorted(n, key=lambda r: (-p.life[r][1], -p.size[r], index[r]))
    return [by_size, by_first, by_len, by_area, by_last]


def lower_bound(p: Problem, steps: int) -> int:
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


def search(p: Problem, index: dict[str, int], floor: int) -> dict[str, int]:
    """Best first-fit over heuristic and (seeded) random placement orders, both directions;
    returns as soon as a placement reaches ``floor``."""
    orders = place_orders(p, index)
    n = max(len(p.names), 1)
    rng = random.Random(0)
    for _ in range(max(4, min(64, 2_000_000 // (n * n)))):
        shuffled = list(p.names)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    best: dict[str, int] | None = None
    for po in orders:
        for mirrored in (False, True):
            cand = place(p, po, mirrored)
            if best is None or extent(p, cand) < extent(p, best):
                best = cand
            if extent(p, best) <= floor:
                return best
    return best or {}
