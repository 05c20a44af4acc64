"""Memory planner: validity, TFLM parity of "greedy", and numerical proof that the
"optimized" plan's in-place / overlapping buffers are safe.

The proof: :func:`run_in_arena` executes a quantized graph inside ONE shared byte array at
the planned offsets, emulating a straightforward kernel that writes its output element by
element in flat order (each element computed from the arena's *current* bytes, i.e. after
all earlier writes of the same op). If a plan let any write clobber a value still to be
read, the result would differ from the ordinary Evaluator.
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from conftest import SHARED
from harness import qtensor

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.kernel import get_kernel
from microquant.targets.planner import (
    ALIGN,
    MemoryPlan,
    check_plan,
    lifetimes,
    min_shift,
    plan_memory,
)

MLPERF = SHARED / "models" / "mlperf_tiny"
TFLM_ARENA = {"ic_resnet8": 49152, "kws_dscnn": 16000, "vww_mobilenetv1": 73728,
              "ad_autoencoder": 768}


# -- a tiny builder for quantized test graphs -------------------------------------------


class Builder:
    def __init__(self, seed: int = 0) -> None:
        self.g = Graph(name="planner_test")
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.feeds: list[np.ndarray] = []

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def act(self, shape, scale: float, zp: int = 0, dtype: str = "int8") -> str:
        name = self._name("a")
        if dtype == "float32":
            self.g.add_tensor(Tensor(name, shape, dtype))
        else:
            self.g.add_tensor(qtensor(name, shape, scale, zp, dtype))
        return name

    def const(self, data: np.ndarray, scale, zp=0, axis=None) -> str:
        name = self._name("c")
        self.g.add_tensor(Tensor(name, data.shape, str(data.dtype), data,
                                 QuantParams(scale, zp, axis)))
        return name

    def input(self, shape) -> str:
        name = self.act(shape, 0.05, -3)
        self.g.inputs.append(name)
        self.feeds.append(self.rng.integers(-128, 128, shape).astype(np.int8))
        return name

    def _real(self, name: str, values: dict) -> np.ndarray | None:
        if not name:
            return None
        t = self.g.tensor(name)
        q = t.data if t.is_const else values[name]
        if t.quant is None:
            return q
        scale = t.quant.scale.astype(np.float64)
        if t.quant.axis is not None and scale.size > 1:
            shape = [1] * q.ndim
            shape[t.quant.axis] = -1
            scale = scale.reshape(shape)
        return (q.astype(np.float64) - t.quant.zero_point[0]) * scale

    def _calibrate(self, node: Node) -> None:
        """Give ``node``'s output a scale that fits its real values (no saturation)."""
        prev = Graph(self.g.tensors, self.g.nodes[:-1], self.g.inputs,
                     [i for i in node.inputs if i and not self.g.tensor(i).is_const])
        values = Evaluator(prev, mode="int").run_all(self.feeds)
        reals = [self._real(i, values) for i in node.inputs]
        y = get_kernel(node.op).run_float(node, self.g, [None if r is None else
                                                         r.astype(np.float32) for r in reals])[0]
        top = float(np.abs(np.asarray(y)).max()) or 1.0
        self.g.tensor(node.outputs[0]).quant = QuantParams([top / 110], [0])

    def q(self, name: str) -> tuple[float, int]:
        qp = self.g.tensor(name).quant
        return float(qp.scale[0]), int(qp.zero_point[0])

    def node(self, op: str, ins: list[str], out: str, **attrs) -> str:
        self.g.nodes.append(Node(op, ins, [out], attrs, name=out))
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL",
                  "QUANTIZE"):
            self._calibrate(self.g.nodes[-1])
        return out

    def conv(self, x: str, co: int, k: int, s: int = 1, padding: str = "SAME",
             dw: bool = False, dm: int = 1, dil: int = 1) -> str:
        n, h, w, ci = self.g.tensor(x).shape
        xs, _ = self.q(x)
        co = ci * dm if dw else co
        wshape = (1, k, k, co) if dw else (co, k, k, ci)
        sign = self.rng.choice([-1, 1], wshape)
        wdata = (self.rng.integers(1, 21, wshape) * sign).astype(np.int8)  # no zero weight
        ws = list(self.rng.uniform(0.01, 0.03, co))
        wname = self.const(wdata, ws, [0] * co, 3 if dw else 0)
        bname = self.const(self.rng.integers(-50, 50, co).astype(np.int32),
                           [xs * s_ for s_ in ws], [0] * co, 0)
        eff = (k - 1) * dil + 1
        oh = (h + s - 1) // s if padding == "SAME" else (h - eff + s) // s
        ow = (w + s - 1) // s if padding == "SAME" else (w - eff + s) // s
        taps = k * k * (1 if dw else ci)
        y = self.act((n, oh, ow, co), xs * 0.02 * 127 * np.sqrt(taps) * 0.5 / 127 * 3, 2)
        attrs = dict(stride_h=s, stride_w=s, dilation_h=dil, dilation_w=dil, padding=padding,
                     activation="NONE")
        if dw:
            attrs["depth_multiplier"] = dm
        return self.node("DEPTHWISE_CONV_2D" if dw else "CONV_2D", [x, wname, bname], y, **attrs)

    def pool(self, x: str, op: str, k: int, s: int, padding: str = "VALID") -> str:
        n, h, w, c = self.g.tensor(x).shape
        oh = (h + s - 1) // s if padding == "SAME" else (h - k + s) // s
        ow = (w + s - 1) // s if padding == "SAME" else (w - k + s) // s
        xs, xz = self.q(x)
        y = self.act((n, oh, ow, c), xs, xz)
        return self.node(op, [x], y, filter_h=k, filter_w=k, stride_h=s, stride_w=s,
                         padding=padding, activation="NONE")

    def binary(self, op: str, a: str, b: str) -> str:
        shape = np.broadcast_shapes(self.g.tensor(a).shape, self.g.tensor(b).shape)
        sa, _ = self.q(a)
        sb, _ = self.q(b)
        scale = max(sa, sb) * 1.5 if op == "ADD" else sa * sb * 40
        return self.node(op, [a, b], self.act(shape, scale, -1), activation="NONE")

    def unary(self, op: str, x: str) -> str:
        xs, xz = self.q(x)
        shape = self.g.tensor(x).shape
        if op == "LOGISTIC":
            y = self.act(shape, 1 / 256, -128)
        elif op == "TANH":
            y = self.act(shape, 1 / 128, 0)
        elif op == "QUANTIZE":
            y = self.act(shape, xs * 1.7, 5)
        elif op == "DEQUANTIZE":
            y = self.act(shape, 1.0, 0, "float32")
        else:
            y = self.act(shape, xs, xz)
        return self.node(op, [x], y)

    def reshape(self, x: str, shape) -> str:
        xs, xz = self.q(x)
        sh = self.const(np.asarray(shape, np.int32), [1.0], [0])
        self.g.tensors[sh].quant = None
        return self.node("RESHAPE", [x, sh], self.act(tuple(shape), xs, xz))

    def fc(self, x: str, n_out: int) -> str:
        k = self.g.tensor(x).shape[-1]
        xs, _ = self.q(x)
        wdata = self.rng.integers(-20, 21, (n_out, k)).astype(np.int8)
        wname = self.const(wdata, [0.02] * n_out, [0] * n_out, 0)
        bname = self.const(np.zeros(n_out, np.int32), [xs * 0.02] * n_out, [0] * n_out, 0)
        y = self.act((1, n_out), xs * 0.02 * np.sqrt(k) * 3, 0)
        return self.node("FULLY_CONNECTED", [x, wname, bname], y, activation="NONE",
                         keep_num_dims=False)

    def done(self, *outputs: str) -> Graph:
        self.g.outputs = list(outputs)
        return self.g

    def feed(self) -> list[np.ndarray]:
        return self.feeds


def residual_graph() -> tuple[Graph, list[np.ndarray]]:
    """conv -> conv -> conv + skip ADD -> TANH -> QUANTIZE -> depthwise (dm 2) -> pools ->
    squeeze-excite MUL (broadcast) -> LOGISTIC -> RESHAPE -> FC -> RELU -> DEQUANTIZE."""
    b = Builder(3)
    x = b.input((1, 7, 6, 3))
    a = b.conv(x, 8, 3)
    c1 = b.conv(a, 8, 3)
    c2 = b.conv(c1, 8, 3)
    d = b.binary("ADD", a, c2)
    t = b.unary("QUANTIZE", b.unary("TANH", d))
    dw = b.conv(t, 0, 3, s=1, padding="VALID", dw=True, dm=2)  # (1,5,4,16)
    mp = b.pool(dw, "MAX_POOL_2D", 2, 1)  # (1,4,3,16)
    ap = b.pool(mp, "AVERAGE_POOL_2D", 3, 1, "SAME")
    gp = b.pool(ap, "AVERAGE_POOL_2D", 4, 4, "SAME")  # (1,1,1,16) global
    se = b.binary("MUL", ap, b.unary("LOGISTIC", gp))
    flat = b.reshape(se, (1, 4 * 3 * 16))
    y = b.unary("DEQUANTIZE", b.unary("RELU", b.fc(flat, 10)))
    return b.done(y), b.feed()


def strided_graph() -> tuple[Graph, list[np.ndarray]]:
    """Stride-2 conv (input larger than output), 1x1 expansion, dilated conv, RELU6."""
    b = Builder(5)
    x = b.input((1, 9, 8, 2))
    y = b.conv(x, 6, 3, s=2)
    y = b.conv(y, 12, 1)
    y = b.unary("RELU6", b.conv(y, 12, 3, dil=2))
    y = b.conv(y, 4, 2, s=2, padding="VALID")
    return b.done(y), b.feed()


# -- the shared-arena simulator ----------------------------------------------------------


def run_in_arena(graph: Graph, plan: MemoryPlan, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph`` in one byte array at ``plan.offsets``, output element by element."""
    ev = Evaluator(graph, mode="int")
    end = max((plan.offsets[n] + plan.sizes[n] for n in plan.offsets), default=0)
    arena = np.zeros(max(plan.arena_size, end), np.uint8)

    def view(name: str) -> np.ndarray:
        t = graph.tensor(name)
        dt = np.dtype(t.dtype)
        o = plan.offsets[name]
        return arena[o:o + t.size * dt.itemsize].view(dt)

    for name, x in zip(graph.inputs, inputs, strict=True):
        view(name)[:] = np.asarray(x).ravel()
    for idx in plan.order:
        node = graph.nodes[idx]

        def read(node: Node = node) -> list[np.ndarray | None]:
            vals = []
            for n in node.inputs:
                t = graph.tensors.get(n) if n else None
                if t is None:
                    vals.append(None)
                elif t.is_const:
                    vals.append(t.data)
                else:
                    vals.append(view(n).copy().reshape(t.shape))
            return vals

        out = view(node.outputs[0])
        for e in range(out.size):
            res = ev.kernels[idx].run(ev.params[idx], read())[0]
            out[e] = np.asarray(res).ravel()[e]
    return [view(o).copy().reshape(graph.tensor(o).shape) for o in graph.outputs]


def _assert_same(graph: Graph, plan: MemoryPlan, inputs: list[np.ndarray]) -> None:
    want = Evaluator(graph, mode="int").run(inputs)
    got = run_in_arena(graph, plan, inputs)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


# -- independent checks ------------------------------------------------------------------


def _reads_naive(node: Node, graph: Graph, slot: int) -> list[set[int]]:
    """Flat input indices each output element reads, by TFLM's reference loop nest."""
    x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
    if node.op in ("ADD", "MUL", "RELU", "RELU6", "TANH", "LOGISTIC", "QUANTIZE", "DEQUANTIZE"):
        shp = (1,) * (len(y.shape) - len(x.shape)) + x.shape
        src = np.broadcast_to(np.arange(x.size).reshape(shp), y.shape).ravel()
        return [{int(i)} for i in src]
    nb, h, w, ci = x.shape
    _, oh, ow, oc = y.shape
    a = node.attrs
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw = graph.tensor(node.inputs[1]).shape[1:3]
        dh, dw = a["dilation_h"], a["dilation_w"]
    else:
        kh, kw, dh, dw = a["filter_h"], a["filter_w"], 1, 1
    sh, sw = a["stride_h"], a["stride_w"]

    def pad(size, k, s, d, o):
        if a["padding"] != "SAME":
            return 0
        return max(((o - 1) * s + (k - 1) * d + 1 - size) // 2, 0)

    ph, pw = pad(h, kh, sh, dh, oh), pad(w, kw, sw, dw, ow)
    reads = []
    for b in range(nb):
        for oy in range(oh):
            for ox in range(ow):
                for c in range(oc):
                    s = set()
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                            if not (0 <= iy < h and 0 <= ix < w):
                                continue
                            if node.op == "CONV_2D":
                                chans = range(ci)
                            elif node.op == "DEPTHWISE_CONV_2D":
                                chans = [c // (oc // ci)]
                            else:
                                chans = [c]
                            s.update(((b * h + iy) * w + ix) * ci + cc for cc in chans)
                    reads.append(s)
    return reads


def _min_shift_naive(node: Node, graph: Graph, slot: int) -> int:
    x, y = graph.tensor(node.inputs[slot]), graph.tensor(node.outputs[0])
    isz, osz = np.dtype(x.dtype).itemsize, np.dtype(y.dtype).itemsize
    reads = _reads_naive(node, graph, slot)
    worst = -x.size * isz
    lowest = None  # lowest index any element after e reads
    for e in range(len(reads) - 2, -1, -1):
        if reads[e + 1]:
            m = min(reads[e + 1])
            lowest = m if lowest is None else min(lowest, m)
        if lowest is not None:
            worst = max(worst, (e + 1) * osz - lowest * isz)
    return worst


def _independent_check(graph: Graph, plan: MemoryPlan) -> None:
    """Re-derive validity without the planner's helpers: every pair of tensors overlapping
    in time and memory must be a RESHAPE view at one offset, or the output and a dying
    data input of one node with a shift at least the brute-force minimum."""
    life = lifetimes(graph, plan.order)
    assert life == plan.lifetimes
    names = list(life)
    step = {idx: s for s, idx in enumerate(plan.order)}
    assert plan.arena_size % ALIGN == 0
    for n in names:
        assert plan.offsets[n] % ALIGN == 0
        assert 0 <= plan.offsets[n] and plan.offsets[n] + plan.sizes[n] <= plan.arena_size
    # RESHAPE chains: one buffer, one offset; it dies with its last member
    cls = {n: n for n in names}
    for nd in graph.nodes:
        if nd.op == "RESHAPE" and plan.offsets[nd.inputs[0]] == plan.offsets[nd.outputs[0]]:
            old, new = cls[nd.outputs[0]], cls[nd.inputs[0]]
            cls = {k: new if v == old else v for k, v in cls.items()}
    dies = {c: max(life[n][1] for n in names if cls[n] == c) for c in set(cls.values())}
    kept = {cls[n] for n in graph.outputs}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if life[a][0] > life[b][1] or life[b][0] > life[a][1]:
                continue
            oa, ob = plan.offsets[a], plan.offsets[b]
            if not (oa < ob + plan.sizes[b] and ob < oa + plan.sizes[a]):
                continue
            ok = cls[a] == cls[b]
            for out, inp in ((a, b), (b, a)):
                prod = next((k for k, nd in enumerate(graph.nodes) if out in nd.outputs), None)
                if ok or prod is None or inp not in graph.nodes[prod].inputs:
                    continue
                node = graph.nodes[prod]
                if (node.op != "RESHAPE" and dies[cls[inp]] == step[prod]
                        and cls[inp] not in kept
                        and [cls.get(i) for i in node.inputs].count(cls[inp]) == 1):
                    slot = node.inputs.index(inp)
                    shift = plan.offsets[inp] - plan.offsets[out]
                    ok = shift >= _min_shift_naive(node, graph, slot)
            assert ok, f"{a} and {b} overlap in time and memory"


# -- tests --------------------------------------------------------------------------------


def test_greedy_plan_is_disjoint_and_optimized_is_smaller():
    g, _ = residual_graph()
    greedy, opt = plan_memory(g, "greedy"), plan_memory(g, "optimized")
    assert greedy.aliases == [] and greedy.order == list(range(len(g.nodes)))
    _independent_check(g, greedy)
    _independent_check(g, opt)
    assert opt.arena_size < greedy.arena_size
    assert opt.lower_bound <= opt.arena_size
    kinds = {a.kind for a in opt.active_aliases()}
    assert {"view", "inplace", "overlap"} <= kinds
    exported = json.loads(json.dumps(opt.as_dict()))
    assert exported["arena_size"] == opt.arena_size
    assert exported["tensors"][g.outputs[0]]["offset"] == opt.offsets[g.outputs[0]]


@pytest.mark.parametrize("build", [residual_graph, strided_graph])
def test_shared_arena_simulation_matches_evaluator(build):
    g, feeds = build()
    for strategy in ("greedy", "optimized"):
        plan = plan_memory(g, strategy)
        _assert_same(g, plan, feeds)
    # every activation carries information (a saturated tensor would hide corruption)
    values = Evaluator(g, mode="int").run_all(feeds)
    for node in g.nodes:
        v = values[node.outputs[0]]
        assert v.size < 32 or len(np.unique(v)) > 8, node.op


def _single(op: str) -> tuple[Graph, list[np.ndarray]]:
    b = Builder(11)
    x = b.input((1, 6, 5, 4))
    if op == "conv3":
        y = b.conv(x, 4, 3)
    elif op == "conv_s2_valid":
        y = b.conv(x, 6, 3, s=2, padding="VALID")
    elif op == "conv1x1_expand":
        y = b.conv(x, 8, 1)
    elif op == "dw_dm2":
        y = b.conv(x, 0, 3, dw=True, dm=2)
    elif op == "maxpool":
        y = b.pool(x, "MAX_POOL_2D", 2, 2)
    elif op == "avgpool_same":
        y = b.pool(x, "AVERAGE_POOL_2D", 3, 1, "SAME")
    elif op == "add":
        y = b.binary("ADD", x, b.unary("RELU", b.input((1, 6, 5, 4))))
    elif op == "dequantize":
        y = b.unary("DEQUANTIZE", x)
    else:
        raise AssertionError(op)
    return b.done(y), b.feed()


@pytest.mark.parametrize("op", ["conv3", "conv_s2_valid", "conv1x1_expand", "dw_dm2",
                                "maxpool", "avgpool_same", "add", "dequantize"])
def test_min_shift_is_exact(op):
    """``min_shift`` equals the brute-force minimum, the simulator agrees at that shift and
    a shift one byte smaller corrupts the result (the bound is tight, the check can fail)."""
    g, feeds = _single(op)
    node = g.nodes[-1]
    x, y = node.inputs[0], node.outputs[0]
    d = min_shift(node, g, 0)
    assert d == _min_shift_naive(node, g, 0)
    want = Evaluator(g, mode="int").run(feeds)[0]
    plan = plan_memory(g, "greedy")
    sizes = dict(plan.sizes)
    results = {}
    for shift in (d, d - 1):
        base = 64 + max(0, -shift)
        offsets = dict(plan.offsets)
        offsets[y] = base
        offsets[x] = base + shift
        for other in offsets:
            if other not in (x, y):
                offsets[other] = base + shift + 4096 + 64 * len(results)
        fake = MemoryPlan("test", offsets, sizes, base + 8192, plan.lifetimes, plan.order,
                          [])
        results[shift] = run_in_arena(g, fake, feeds)[0]
    np.testing.assert_array_equal(results[d], want)
    assert not np.array_equal(results[d - 1], want)


def _random_dag(seed: int) -> tuple[Graph, list[np.ndarray]]:
    rng = random.Random(seed)
    b = Builder(seed)
    pool = [b.input((1, rng.choice([3, 4, 6]), rng.choice([3, 5]), rng.choice([2, 4])))]
    for _ in range(rng.randint(4, 10)):
        x = rng.choice(pool[-4:])
        shape = b.g.tensor(x).shape
        same = [t for t in pool if b.g.tensor(t).shape == shape and t != x]
        kind = rng.choice(["conv", "dw", "relu", "pool", "add", "reshape", "quant"])
        if kind == "conv":
            y = b.conv(x, rng.choice([2, 4, 6]), rng.choice([1, 3]), rng.choice([1, 2]))
        elif kind == "dw":
            y = b.conv(x, 0, 3, dw=True, dm=rng.choice([1, 2]))
        elif kind == "pool" and min(shape[1:3]) >= 2:
            y = b.pool(x, rng.choice(["MAX_POOL_2D", "AVERAGE_POOL_2D"]), 2, rng.choice([1, 2]))
        elif kind == "add" and same:
            y = b.binary(rng.choice(["ADD", "MUL"]), x, rng.choice(same))
        elif kind == "reshape":
            y = b.reshape(x, (1, shape[2], shape[1], shape[3]))
        elif kind == "quant":
            y = b.unary(rng.choice(["QUANTIZE", "TANH", "LOGISTIC"]), x)
        else:
            y = b.unary(rng.choice(["RELU", "RELU6"]), x)
        pool.append(y)
    read = {i for n in b.g.nodes for i in n.inputs}
    outs = [t for t in pool[1:] if t not in read] or [pool[-1]]
    if rng.random() < 0.5 and pool[-2] not in outs and len(pool) > 2:
        outs.append(pool[-2])  # an output that is also read later
    return b.done(*outs), b.feed()


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_plans_are_valid(seed):
    g, _ = _random_dag(seed)
    for strategy in ("greedy", "optimized"):
        plan = plan_memory(g, strategy)
        check_plan(g, plan)
        _independent_check(g, plan)
    assert plan_memory(g, "optimized").arena_size <= plan_memory(g, "greedy").arena_size


@pytest.mark.parametrize("seed", range(6))
def test_random_dags_simulate_exactly(seed):
    g, feeds = _random_dag(seed)
    _assert_same(g, plan_memory(g, "optimized"), feeds)


def test_reordering_frees_memory_first():
    """Two branches that each expand then shrink: running branch 1 to completion before
    starting branch 2 keeps only one expanded tensor alive."""
    b = Builder(2)
    x = b.input((1, 4, 4, 2))
    p1, p2 = b.conv(x, 32, 1), b.conv(x, 32, 1)
    q1, q2 = b.conv(p1, 2, 1), b.conv(p2, 2, 1)
    g = b.done(b.binary("ADD", q1, q2))
    base = plan_memory(g, "optimized", order=range(len(g.nodes)))
    opt = plan_memory(g, "optimized")
    assert opt.order != base.order
    assert opt.arena_size < base.arena_size
    _independent_check(g, opt)
    _assert_same(g, opt, b.feed())


def test_bad_order_and_strategy_are_user_errors():
    g, _ = strided_graph()
    with pytest.raises(MicroquantError, match="strategy"):
        plan_memory(g, "magic")
    with pytest.raises(MicroquantError, match="every node"):
        plan_memory(g, "greedy", order=[0, 0, 1, 2])
    with pytest.raises(MicroquantError):
        plan_memory(g, "greedy", order=list(reversed(range(len(g.nodes)))))


def _tflm_head(graph: Graph) -> int:
    from tflite_micro.python.tflite_micro import runtime

    from microquant.backends._stderr import capture_stderr
    from microquant.ir.tflite_io import write_tflite

    data = write_tflite(graph)
    with capture_stderr() as log:
        interp = runtime.Interpreter.from_bytes(data, arena_size=1 << 22)
        interp.print_allocations()
    return int(re.search(r"Arena allocation head (\d+) bytes", log.text()).group(1))


@pytest.mark.parametrize("build", [residual_graph, strided_graph])
def test_greedy_reproduces_tflm_arena(build):
    g, _ = build()
    assert plan_memory(g, "greedy").arena_size == _tflm_head(g)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_reproduces_tflm_arena_random(seed):
    g, _ = _random_dag(seed)
    assert plan_memory(g, "greedy").arena_size == _tflm_head(g)


@pytest.mark.skipif(not MLPERF.is_dir(), reason="needs ../shared")
@pytest.mark.parametrize("model", sorted(TFLM_ARENA))
def test_mlperf_models(model):
    from microquant.ir.tflite_io import read_tflite

    g = read_tflite((MLPERF / f"{model}.reference_int8.tflite").read_bytes())
    greedy, opt = plan_memory(g, "greedy"), plan_memory(g, "optimized")
    assert greedy.arena_size == TFLM_ARENA[model] == _tflm_head(g)
    assert opt.arena_size <= greedy.arena_size
    if model in ("ic_resnet8", "vww_mobilenetv1"):
        assert opt.arena_size <= 0.75 * greedy.arena_size
    _independent_check(g, opt)


def test_memory_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    from microquant.targets.plot import plot_memory

    g, _ = residual_graph()
    plans = {s: plan_memory(g, s) for s in ("greedy", "optimized")}
    out = plot_memory(plans, tmp_path / "mem.png", "residual")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(MicroquantError):
        plot_memory({}, tmp_path / "none.png")


def test_greedy_reproduces_tflm_arena_float(tmp_path):
    from tiny_models import tiny_onnx

    from microquant.report.models import load_onnx_lowered

    g = load_onnx_lowered(tiny_onnx(tmp_path / "tiny.onnx"))[1]
    greedy = plan_memory(g, "greedy")
    assert greedy.arena_size == _tflm_head(g)
    assert plan_memory(g, "optimized").arena_size < greedy.arena_size


def test_split_modules_keep_the_planner_namespace():
    # planner.py re-exports the pieces it was split into; each one behaves on its own.
    from microquant.targets import inplace, placement, planner, reorder
    from microquant.targets import lifetimes as lt

    for name in planner.__all__:
        assert hasattr(planner, name), name
    assert planner.lifetimes is lt.lifetimes and planner.min_shift is inplace.min_shift
    # two same-size tensors, one step apart: TFLM's first-fit stacks them; an in-place
    # pair (min_shift 0) lets the second sit on the first.
    p = placement.Problem(["a", "b"], {"a": 64, "b": 64}, {"a": (0, 1), "b": (1, 2)}, {})
    assert placement.first_fit(p, ["a", "b"]) == {"a": 0, "b": 64}
    q = placement.Problem(p.names, p.size, p.life, {("b", "a"): 0})
    assert placement.first_fit(q, ["a", "b"]) == {"a": 0, "b": 0}
    assert placement.lower_bound(p, 3) == 128 and placement.lower_bound(q, 3) == 64
    # a residual block: the memory-aware order is a valid topological order
    g, _ = residual_graph()
    order = reorder.memory_aware_order(g)
    assert sorted(order) == list(range(len(g.nodes)))
    check_plan(g, plan_memory(g, "optimized", order=order))
