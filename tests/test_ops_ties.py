"""Rounding-tie conformance: single-op graphs whose requantization inputs sit exactly on (or
next to) rounding ties, where the candidate rescale formulas disagree.

Random data almost never lands on a tie, so random conformance cases cannot tell TFLM's
double-rounding ``MultiplyByQuantizedMultiplier`` (SRDHM, then RDBPOT, both half away from
zero) from the single-rounding build (``(x*m + 2**(30-s)) >> (31-s)``, ties toward +inf), nor
the int64 reduced-multiplier rescale of the 16x8 kernels from either, nor two multiplier
derivations a few ulps apart. Each builder here *hunts* ties: it picks scales (exact powers
of two give exact ties, others near-ties of the double rounding) and inputs/biases so the
accumulators cover the values where the alternatives differ, and records the alternative's
output in ``ALTERNATIVES``. The test then asserts both: ours equals TFLM bit for bit, and
the alternative differs from TFLM somewhere (so every case is able to fail).

The cases are harness ``CASES``: ``test_integer_only.py`` runs them integer-only traced and
``test_c_export.py`` compiles the int8 ones, so the C kernels are checked on the same ties.
Findings (pinned tflite-micro): every int32 rescale is the double-rounding
``MultiplyByQuantizedMultiplier``, the 16x8 int64 rescale the reduced-multiplier one (ties
toward +inf), AVERAGE_POOL_2D divides half away from zero, and per-tensor FULLY_CONNECTED
takes its multiplier from ``double(s_in) * double(s_w)``, not the float32 product.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import harness
import numpy as np
import pytest
from harness import qtensor, single_op_graph

from microquant.ir.graph import Graph, Tensor
from microquant.quant.primitives import quantize_multiplier
from microquant.runtime.fixedpoint import mbqm, srdhm
from microquant.runtime.kernel import get_kernel
from microquant.runtime.ops._int16 import mbqm64
from microquant.runtime.ops.add import LEFT_SHIFT
from microquant.runtime.ops.mean import fold_count

Builder = Callable[[], tuple[Graph, list[np.ndarray]]]

# case id -> [(alternative rescale, its output)] - filled when the builder runs.
ALTERNATIVES: dict[str, list[tuple[str, np.ndarray]]] = {}

# -- the rescale candidates (Python side of the hunt; test helpers, not runtime code) -------


def single_rounding(x: np.ndarray, m: np.ndarray | int, s: np.ndarray | int) -> np.ndarray:
    """TFLITE_SINGLE_ROUNDING's ``(x*m + 2**(30-s)) >> (31-s)`` (floor shift: ties up)."""
    total = 31 - np.asarray(s, np.int64)
    return (
        np.asarray(x, np.int64) * np.asarray(m, np.int64) + (np.int64(1) << (total - 1))
    ) >> total


def _pick(values: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= k else rng.choice(values, size=k, replace=False)


def hunt(
    m: int,
    s: int,
    lo: int,
    hi: int,
    alts: list[Callable[[np.ndarray], np.ndarray]],
    primary: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Accumulators in ``[lo, hi]`` where ``primary`` (default double-rounding mbqm with
    ``m, s``) and any of the alternatives disagree."""
    acc = np.arange(lo, hi + 1, dtype=np.int64)
    ref = mbqm(acc, m, s) if primary is None else primary(acc)
    bad = np.zeros(acc.shape, bool)
    for alt in alts:
        bad |= alt(acc) != ref
    return acc[bad]


# -- conv / depthwise / fully connected: weights 1, bias steers the accumulator -------------


def _channel_scales(
    n: int, s_in: float, s_out: float, rng: np.random.Generator, pot_every: int = 2
) -> list[float]:
    """Weight scales: every ``pot_every``-th channel gives an exact power-of-two rescale
    (exact ties), the others a random one (near-ties of the double rounding)."""
    out = []
    for c in range(n):
        if c % pot_every == 0:
            out.append(s_out / s_in * 2.0 ** -int(rng.integers(7, 11)))
        else:
            out.append(float(s_out / s_in * np.exp(rng.uniform(np.log(1e-3), np.log(8e-3)))))
    return out


def _f32(v: float) -> float:
    return float(np.float32(v))


def linear_tie_case(
    op: str, per_channel: bool, dtype: str = "int8", n_ch: int = 8, pot: bool = True, seed: int = 0
) -> tuple[str, Builder]:
    """``op`` in CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with every weight 1, so
    ``acc = (x - in_zp) + bias[c]``; ``x`` sweeps a contiguous range and each channel's bias
    centres that sweep on an accumulator where the alternatives disagree."""
    case_id = f"tie_{op.lower()}_{dtype}_{'pc' if per_channel else 'pt'}_{'pot' if pot else 'rand'}"

    def build():
        rng = np.random.default_rng(seed)
        int16 = dtype == "int16"
        s_in, s_out = (3e-4, 2e-2) if int16 else (0.05, 0.9)
        in_zp, out_zp = (0, 0) if int16 else (3, -5)
        qmin, qmax = (-32768, 32767) if int16 else (-128, 127)
        half = 2048 if int16 else 128
        xs = np.arange(-half, half, dtype=np.int64)
        if per_channel:
            w_scales = _channel_scales(n_ch, s_in, s_out, rng, 2 if pot else 10**9)
        elif pot:
            w_scales = [s_out / s_in * 2.0**-9]
        else:  # a per-tensor scale whose float32-product multiplier flips some outputs
            for _ in range(1000):
                sw = float(s_out / s_in * np.exp(rng.uniform(np.log(1e-3), np.log(8e-3))))
                f32 = quantize_multiplier(_f32(np.float32(s_in) * np.float32(sw)) / _f32(s_out))
                f64 = quantize_multiplier(_f32(s_in) * _f32(sw) / _f32(s_out))
                real = _f32(s_in) * _f32(sw) / _f32(s_out)
                reach = int((qmax - 8) / real) - half
                if f32 != f64 and hunt(*f64, -reach, reach, [lambda a, f=f32: mbqm(a, *f)]).size:
                    break
            w_scales = [sw]
        scales = np.broadcast_to(np.array(w_scales), (n_ch,))
        biases = []
        for c in range(n_ch):
            real = _f32(s_in) * _f32(scales[c]) / _f32(s_out)
            m, s = quantize_multiplier(real)
            if int16:
                alts = [
                    lambda a, m=m, s=s: mbqm(a, m, s),
                    lambda a, m=m, s=s: single_rounding(a, m, s),
                ]
                primary = lambda a, m=m, s=s: mbqm64(a, np.array([m]), np.array([s]))  # noqa: E731
            else:
                alts, primary = [lambda a, m=m, s=s: single_rounding(a, m, s)], None
                if not per_channel and not pot:
                    m32, s32 = quantize_multiplier(
                        _f32(np.float32(s_in) * np.float32(scales[c])) / _f32(s_out)
                    )
                    alts.append(lambda a, m=m32, s=s32: mbqm(a, m, s))
            reach = min(int((qmax - 8) / real), 1 << 18) - half  # plenty of ties, fast
            targets = hunt(m, s, -reach, reach, [alts[c % len(alts)]], primary)
            t = int(_pick(targets, 1, rng)[0]) if targets.size else 0
            biases.append(t + in_zp)  # x = 0 lands exactly on t
        bias = np.array(biases, np.int64)
        b_dtype = "int64" if int16 else "int32"
        b_scales = [s_in * float(s) for s in w_scales]
        ax = 0 if per_channel else None
        n_sc = len(w_scales)
        if op == "FULLY_CONNECTED":
            x_shape, w_shape, y_shape, w_axis = (xs.size, 1), (n_ch, 1), (xs.size, n_ch), ax
            attrs = dict(activation="NONE", keep_num_dims=False)
        else:
            side = int(np.sqrt(xs.size))
            ci = n_ch if op == "DEPTHWISE_CONV_2D" else 1
            x_shape, y_shape = (1, side, side, ci), (1, side, side, n_ch)
            w_shape = (1, 1, 1, n_ch) if ci > 1 else (n_ch, 1, 1, 1)
            w_axis = (3 if ci > 1 else 0) if per_channel else None
            attrs = dict(
                stride_h=1,
                stride_w=1,
                dilation_h=1,
                dilation_w=1,
                padding="VALID",
                activation="NONE",
            )
            if ci > 1:
                attrs["depth_multiplier"] = 1
        ins = [
            qtensor("x", x_shape, s_in, in_zp, dtype),
            qtensor(
                "w", w_shape, w_scales, [0] * n_sc, axis=w_axis, data=np.ones(w_shape, np.int8)
            ),
            qtensor(
                "b", (n_ch,), b_scales, [0] * n_sc, b_dtype, axis=ax, data=bias.astype(b_dtype)
            ),
        ]
        g = single_op_graph(op, ins, [qtensor("y", y_shape, s_out, out_zp, dtype)], attrs)
        if op == "DEPTHWISE_CONV_2D":
            x = np.broadcast_to(xs.reshape(x_shape[:3] + (1,)), x_shape)
        else:
            x = xs.reshape(x_shape)
        x = np.ascontiguousarray(x).astype(dtype)
        # The alternatives' outputs: every candidate for this rescale, combined.
        acc = (
            x.astype(np.int64).reshape(-1, 1 if op != "DEPTHWISE_CONV_2D" else n_ch) - in_zp + bias
        )
        p = get_kernel(op).prepare(g.nodes[0], g)
        outs = {"full-multiplier single rounding": single_rounding(acc, p.mult, p.shift)}
        if int16:
            outs["int32 double rounding (half away)"] = mbqm(acc, p.mult, p.shift)
        elif not per_channel and not pot:
            m32, s32 = quantize_multiplier(
                _f32(np.float32(s_in) * np.float32(w_scales[0])) / _f32(s_out)
            )
            outs["float32-product multiplier"] = mbqm(acc, m32, s32)
        ALTERNATIVES[case_id] = [
            (name, np.clip(o + out_zp, qmin, qmax).reshape(y_shape)) for name, o in outs.items()
        ]
        return g, [x]

    return case_id, build


# -- elementwise: exhaustive int8 grids with tie-prone scales --------------------------------


def _grid() -> tuple[np.ndarray, np.ndarray]:
    v = np.arange(-128, 128, dtype=np.int8)
    return v.reshape(256, 1), v.reshape(1, 256)


def _add_graph(s1: float, s2: float, so: float, zps: tuple[int, int, int]) -> Graph:
    return single_op_graph(
        "ADD",
        [qtensor("a", (256, 1), s1, zps[0]), qtensor("b", (1, 256), s2, zps[1])],
        [qtensor("y", (256, 256), so, zps[2])],
        dict(activation="NONE"),
    )


def _add_single_rounding(g: Graph, a: np.ndarray, b: np.ndarray, zps) -> np.ndarray:
    p = get_kernel("ADD").prepare(g.nodes[0], g)
    x1 = (a.astype(np.int64) - zps[0]) << LEFT_SHIFT
    x2 = (b.astype(np.int64) - zps[1]) << LEFT_SHIFT
    s = single_rounding(x1, p.input1_multiplier, p.input1_shift) + single_rounding(
        x2, p.input2_multiplier, p.input2_shift
    )
    return np.clip(single_rounding(s, p.output_multiplier, p.output_shift) + zps[2], -128, 127)


def add_tie_case(
    scales: tuple[float, float, float] | None, zps=(5, -7, 2), seed: int = 0
) -> tuple[str, Builder]:
    """ADD over the full 256x256 int8 grid. ``scales=None`` hunts (seeded) for random scales
    where the double-rounded pipeline lands on a near-tie somewhere in the grid."""
    case_id = "tie_add_" + ("_".join(f"{v:g}" for v in scales) if scales else f"hunt{seed}")

    def build():
        a, b = _grid()
        if scales is not None:
            g = _add_graph(*scales, zps)
            alt = _add_single_rounding(g, a, b, zps)
        else:
            rng = np.random.default_rng(seed)
            for _ in range(500):
                s1, s2 = np.exp(rng.uniform(np.log(0.01), np.log(0.1), 2))
                g = _add_graph(
                    float(s1), float(s2), float(3 * max(s1, s2) * rng.uniform(1, 2)), zps
                )
                alt = _add_single_rounding(g, a, b, zps)
                ours = get_kernel("ADD").run(get_kernel("ADD").prepare(g.nodes[0], g), [a, b])[0]
                if np.any(ours != alt):
                    break
        ALTERNATIVES[case_id] = [("single rounding", alt)]
        return g, [a, b]

    return case_id, build


def mul_tie_case(s1: float, s2: float, so: float, zps=(3, -2, 1)) -> tuple[str, Builder]:
    case_id = f"tie_mul_{s1:g}_{s2:g}_{so:g}"

    def build():
        a, b = _grid()
        g = single_op_graph(
            "MUL",
            [qtensor("a", a.shape, s1, zps[0]), qtensor("b", b.shape, s2, zps[1])],
            [qtensor("y", (256, 256), so, zps[2])],
            dict(activation="NONE"),
        )
        p = get_kernel("MUL").prepare(g.nodes[0], g)
        prod = (a.astype(np.int64) - zps[0]) * (b.astype(np.int64) - zps[1])
        alt = single_rounding(prod, p.output_multiplier, p.output_shift) + zps[2]
        ALTERNATIVES[case_id] = [("single rounding", np.clip(alt, -128, 127))]
        return g, [a, b]

    return case_id, build


def unary_tie_case(
    op: str, s_in: float, s_out: float, in_zp: int = 4, out_zp: int = -3
) -> tuple[str, Builder]:
    """RELU or QUANTIZE (int8 -> int8) over all 256 inputs; ``s_in/s_out`` tie-prone."""
    case_id = f"tie_{op.lower()}_{s_in:g}_{s_out:g}"

    def build():
        x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
        g = single_op_graph(
            op, [qtensor("x", x.shape, s_in, in_zp)], [qtensor("y", x.shape, s_out, out_zp)]
        )
        p = get_kernel(op).prepare(g.nodes[0], g)
        alt = single_rounding(x.astype(np.int64) - in_zp, p.mult, p.shift) + out_zp
        lo = max(-128, out_zp) if op == "RELU" else -128
        ALTERNATIVES[case_id] = [("single rounding", np.clip(alt, lo, 127))]
        return g, [x]

    return case_id, build


def _all_sums_rows(count: int) -> np.ndarray:
    """``[rows, count]`` int8 rows whose sums take every value in ``[-128c, 127c]`` once."""
    sums = np.arange(-128 * count, 127 * count + 1)
    rows = np.full((sums.size, count), -128, np.int64)
    rest = sums + 128 * count
    for j in range(count):
        take = np.minimum(rest, 255)
        rows[:, j] += take
        rest = rest - take
    return rows.astype(np.int8)


def mean_tie_case(
    count: int, s_in: float, s_out: float, in_zp: int = -6, out_zp: int = 2
) -> tuple[str, Builder]:
    case_id = f"tie_mean_c{count}_{s_in:g}_{s_out:g}"

    def build():
        rows = _all_sums_rows(count)
        x = rows.reshape(1, rows.shape[0], count, 1)
        axes = Tensor("axes", (1,), "int32", np.array([2], np.int32))
        g = single_op_graph(
            "MEAN",
            [qtensor("x", x.shape, s_in, in_zp), axes],
            [qtensor("y", (1, rows.shape[0], 1), s_out, out_zp)],
            dict(keep_dims=False),
        )
        p = get_kernel("MEAN").prepare(g.nodes[0], g)
        m, s = fold_count(*quantize_multiplier(_f32(s_in) / _f32(s_out)), count)
        assert (m, s) == (p.multiplier, p.shift)
        total = rows.astype(np.int64).sum(axis=1) - in_zp * count
        alt = np.clip(single_rounding(total, m, s) + out_zp, -128, 127)
        ALTERNATIVES[case_id] = [("single rounding", alt)]
        return g, [x]

    return case_id, build


def avgpool_tie_case(fh: int, fw: int) -> tuple[str, Builder]:
    """Every window sum of an ``fh x fw`` VALID pool once; ties where ``sum = (k+1/2)*c``."""
    case_id = f"tie_average_pool_2d_{fh}x{fw}"

    def build():
        count = fh * fw
        rows = _all_sums_rows(count)  # [n, count]
        n = rows.shape[0]
        x = rows.reshape(n, fh, fw).transpose(1, 0, 2).reshape(1, fh, n * fw, 1)
        attrs = dict(
            filter_h=fh, filter_w=fw, stride_h=fh, stride_w=fw, padding="VALID", activation="NONE"
        )
        g = single_op_graph(
            "AVERAGE_POOL_2D",
            [qtensor("x", x.shape, 0.1, 0)],
            [qtensor("y", (1, 1, n, 1), 0.1, 0)],
            attrs,
        )
        sums = rows.astype(np.int64).sum(axis=1)
        alt = np.floor_divide(2 * sums + count, 2 * count)  # round half up
        ALTERNATIVES[case_id] = [("round half up", alt)]
        return g, [np.ascontiguousarray(x)]

    return case_id, build


CASES: list[tuple[str, Builder]] = [
    linear_tie_case("FULLY_CONNECTED", per_channel=False, pot=True, seed=1),
    linear_tie_case("FULLY_CONNECTED", per_channel=False, pot=False, seed=2),
    linear_tie_case("FULLY_CONNECTED", per_channel=True, seed=3),
    linear_tie_case("CONV_2D", per_channel=True, seed=4),
    linear_tie_case("CONV_2D", per_channel=False, pot=False, seed=5),
    linear_tie_case("DEPTHWISE_CONV_2D", per_channel=True, seed=6),
    linear_tie_case("CONV_2D", per_channel=True, dtype="int16", seed=7),
    linear_tie_case("FULLY_CONNECTED", per_channel=True, dtype="int16", seed=8),
    linear_tie_case("FULLY_CONNECTED", per_channel=False, dtype="int16", pot=True, seed=9),
    linear_tie_case("DEPTHWISE_CONV_2D", per_channel=True, dtype="int16", seed=10),
    add_tie_case((0.5, 0.5, 2.0)),
    add_tie_case(None, seed=11),
    mul_tie_case(0.5, 0.25, 1.0),
    mul_tie_case(0.0213, 0.0371, 0.0577),
    unary_tie_case("RELU", 1.0, 8.0),
    unary_tie_case("RELU", 0.0371, 0.1),
    unary_tie_case("QUANTIZE", 1.0, 4.0),
    unary_tie_case("QUANTIZE", 0.0213, 0.0577),
    mean_tie_case(4, 0.1, 0.1),
    mean_tie_case(3, 0.05, 0.07),
    avgpool_tie_case(2, 2),
    avgpool_tie_case(2, 3),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ties_match_tflm_and_alternative_does_not(case):
    """Ours is bit-exact with TFLM on tie inputs, and the competing rescale is not: the case
    really lands on ties (otherwise it could not tell the formulas apart)."""
    case_id, build = case
    graph, inputs = build()
    ours = harness.run_reference(graph, inputs, check_integer=False)[0]
    theirs = np.asarray(harness.run_tflm(graph, inputs)[0]).reshape(ours.shape)
    diff = int((ours != theirs).sum())
    assert diff == 0, f"{case_id}: {diff}/{ours.size} values differ from TFLM"
    for name, alt in ALTERNATIVES[case_id]:
        n_alt = int((alt.reshape(ours.shape) != theirs).sum())
        assert n_alt > 0, f"{case_id}: the {name} alternative also matches TFLM (no tie hit)"


def test_rounding_candidates_differ_on_a_negative_tie():
    # -2 * 2**30 * 2**(-1-31) = -0.5 exactly: single rounding gives 0 (ties up), TFLM's
    # double rounding -1 (SRDHM exact -1, then RDBPOT(-1, 1) rounds half away from zero).
    assert int(single_rounding(np.array([-2]), 1 << 30, -1)[0]) == 0
    assert int(mbqm(np.array([-2]), np.array([1 << 30]), np.array([-1]))[0]) == -1
    assert int(srdhm(np.array([-2]), np.array([1 << 30]))[0]) == -1


_AD = Path("/work/shared/models/mlperf_tiny/ad_autoencoder.reference_int8.tflite")


@pytest.mark.skipif(not _AD.exists(), reason="MLCommons models not available")
def test_ad_autoencoder_bit_exact_on_random_inputs():
    """MLCommons' per-tensor FULLY_CONNECTED autoencoder: 100% bit-exact on 400 inputs (the
    float32-product multiplier used to flip about 1% of them)."""
    from microquant.backends.tflm import TflmRunner
    from microquant.ir.tflite_io import read_tflite
    from microquant.runtime import Evaluator

    data = _AD.read_bytes()
    graph = read_tflite(data)
    ev, runner = Evaluator(graph, mode="int"), TflmRunner(data)
    shape = graph.tensor(graph.inputs[0]).shape
    rng = np.random.default_rng(2026)
    bad = []
    for i in range(400):
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        ours = ev.run([x])[0]
        theirs = np.asarray(runner.run([x])[0]).reshape(ours.shape)
        if not np.array_equal(ours, theirs):
            bad.append(i)
    assert not bad, f"{len(bad)}/400 inputs differ: {bad[:10]}"
