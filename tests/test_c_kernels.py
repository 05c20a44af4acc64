"""The hand-written C kernel library: integer-only, bit-exact primitives, and randomized
kernel geometries against the reference runtime.

* ``mq_srdhm`` / ``mq_rdbpot`` / ``mq_mbqm`` on edge and random values vs
  ``microquant.runtime.fixedpoint`` (the oracle's own primitives);
* the library compiles as strict C99 (``-pedantic``, conversion warnings as errors) and,
  on x86-64, with ``-mgeneral-regs-only`` - any float/double arithmetic is a compile error;
* ~150 random single-op graphs (conv/depthwise/FC/pool geometries, broadcasting, reductions,
  permutations, padding, concatenation, activations) exported, built once, compared.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_ops_activation import _unary
from test_ops_conv import AVG, MAX, conv_case, dw_case, fc_case, pool_case
from test_ops_elementwise import _binary, _mean
from test_ops_misc import concat_case, pad_case, transpose_case

from microquant.export.c import export_c
from microquant.export.c import toolchain as tc
from microquant.export.c.c_model import LIB_FILES, library_source
from microquant.runtime import fixedpoint as fp
from microquant.runtime.evaluator import Evaluator
from microquant.runtime.ops._common import out_size

pytestmark = pytest.mark.skipif(not tc.have_host_cc(), reason="no host C compiler (gcc)")
SUPPORT = Path(__file__).parent / "c_support"
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def _lib(tmp: Path) -> Path:
    for name in LIB_FILES:
        (tmp / name).write_text(library_source(name))
    return tmp / "mq_kernels.c"


def _gcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gcc", *args], capture_output=True, text=True)


# -- primitives ----------------------------------------------------------------------------


def _records() -> np.ndarray:
    rng = np.random.default_rng(0)
    edges = np.array([I32_MIN, I32_MIN + 1, -(1 << 30), -65536, -255, -2, -1, 0, 1, 2, 255,
                      65535, (1 << 30) - 1, 1 << 30, I32_MAX - 1, I32_MAX], np.int64)
    a_rand = rng.integers(I32_MIN, I32_MAX, 3000, endpoint=True)
    small = rng.integers(-(1 << 20), 1 << 20, 3000)
    rows = []
    for a in edges:  # every edge pair for SRDHM
        for b in edges:
            rows.append((0, a, b, 0))
    for a, b in zip(a_rand, rng.integers(I32_MIN, I32_MAX, 3000, endpoint=True), strict=True):
        rows.append((0, a, b, 0))
    for a in np.concatenate([edges, a_rand[:1000], small[:1000]]):
        for e in (0, 1, 5, 12, 23, 30, 31, 32, 33, 40):
            rows.append((1, a, e, 0))
    mults = np.concatenate([[1 << 30, I32_MAX, 0], rng.integers(1 << 30, I32_MAX, 200)])
    for x in np.concatenate([edges, small[:300], a_rand[:300]]):
        for m in mults[:: max(1, len(mults) // 12)]:
            for s in (-40, -31, -20, -8, -1, 0, 1, 3, 10, 20):
                rows.append((2, x, m, s))
    return np.array(rows, dtype=np.int64)


def _expected(rec: np.ndarray) -> np.ndarray:
    op, a, b, c = rec.T
    out = np.zeros(len(rec), np.int64)
    m0, m1, m2 = op == 0, op == 1, op == 2
    out[m0] = fp.srdhm(a[m0], b[m0])
    out[m1] = fp.rdbpot(a[m1], b[m1])
    out[m2] = fp.mbqm(a[m2], b[m2], c[m2])
    return out


def test_fixed_point_primitives_match_reference(tmp_path):
    lib = _lib(tmp_path)
    exe = tmp_path / "prims"
    proc = _gcc(*tc.HOST_FLAGS, "-I", str(tmp_path), "-o", str(exe),
                str(SUPPORT / "prims_main.c"), str(lib))
    assert proc.returncode == 0, proc.stderr
    rec = _records()
    (tmp_path / "in.bin").write_bytes(rec.astype(np.int32).tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int32).astype(np.int64)
    want = _expected(rec)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"{bad.size} mismatches, first {rec[bad[0]].tolist()}: " \
                          f"C {got[bad[0]]} vs Python {want[bad[0]]}"


# -- integer-only, strict C99 --------------------------------------------------------------


def _strip_comments(src: str) -> str:
    return re.sub(r"/\*.*?\*/", "", src, flags=re.S)


def test_library_source_has_no_float_types_or_allocation():
    code = _strip_comments(library_source("mq_kernels.c") + library_source("mq_kernels.h"))
    for word in ("float", "double", "malloc", "calloc", "free", "math.h"):
        assert not re.search(rf"\b{re.escape(word)}\b", code), word


def test_library_compiles_strict_c99(tmp_path):
    lib = _lib(tmp_path)
    proc = _gcc("-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wshadow",
                "-Wconversion", "-O2", "-c", "-o", str(tmp_path / "k.o"), str(lib))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(platform.machine() != "x86_64", reason="-mgeneral-regs-only is x86-64")
def test_generated_model_compiles_without_fp_registers(tmp_path):
    g, _ = conv_case((1, 6, 6, 3), 4, (3, 3))()
    export_c(g, tmp_path)
    for src in ("model.c", "mq_kernels.c"):
        proc = _gcc("-std=c99", "-O2", "-mgeneral-regs-only", "-c", "-o",
                    str(tmp_path / (src + ".o")), str(tmp_path / src))
        assert proc.returncode == 0, proc.stderr


# -- randomized kernel geometries -------------------------------------------------------------


def _with_weight_zero_point(build, zp: int):
    def wrapped():
        g, inputs = build()
        g.tensor(g.nodes[0].inputs[1]).quant.zero_point[:] = zp
        return g, inputs

    return wrapped


def _random_cases() -> list[tuple[str, object]]:
    rng = np.random.default_rng(2024)
    cases: list[tuple[str, object]] = []
    acts = ["NONE", "RELU", "RELU6"]
    for i in range(40):
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2)) if i % 3 == 0 else (1, 1)
        pad = ["SAME", "VALID"][i % 2]
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        ci = groups * int(rng.integers(1, 6))
        co = groups * int(rng.integers(1, 7))
        h, w = (int(v) for v in rng.integers(max(kh, kw) * max(dh, dw), 12, 2))
        if out_size(pad, h, kh, sh, dh) <= 0 or out_size(pad, w, kw, sw, dw) <= 0:
            continue
        cases.append((f"conv{i}", conv_case(
            (int(rng.integers(1, 3)), h, w, ci), co, (kh, kw), (sh, sw), (dh, dw), pad,
            acts[i % 3], in_zp=int(rng.integers(-128, 128)), out_zp=int(rng.integers(-50, 50)),
            bias=bool(i % 4), per_channel=bool(i % 5), seed=100 + i, groups=groups)))
    for i in range(40):
        kh, kw = (int(v) for v in rng.integers(1, 6, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3, 2))
        dh, dw = (2, 2) if i % 4 == 0 else (1, 1)
        pad = ["SAME", "VALID"][i % 2]
        h, w = (int(v) for v in rng.integers(max(kh, kw) * max(dh, dw), 14, 2))
        cases.append((f"dw{i}", dw_case(
            (1, h, w, int(rng.integers(1, 11))), int(rng.choice([1, 1, 2, 3])), (kh, kw),
            (sh, sw), (dh, dw), pad, acts[i % 3], in_zp=int(rng.integers(-128, 128)),
            out_zp=int(rng.integers(-50, 50)), seed=300 + i)))
    for i in range(12):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 70)))
        cases.append((f"fc{i}", fc_case(shape, int(rng.integers(1, 20)), bool(i % 2),
                                        acts[i % 3], int(rng.integers(-128, 128)),
                                        int(rng.integers(-50, 50)), seed=500 + i)))
    for i in range(4):  # per-tensor weights with a non-zero zero point (w - w_zp path)
        base = fc_case((1, int(rng.integers(1, 40))), int(rng.integers(1, 9)), False, seed=550 + i)
        cases.append((f"fc_wzp{i}", _with_weight_zero_point(base, int(rng.integers(-9, 10)))))
    for i in range(16):
        f = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        shape = (1, int(rng.integers(f[0], 11)), int(rng.integers(f[1], 11)),
                 int(rng.integers(1, 7)))
        cases.append((f"pool{i}", pool_case([AVG, MAX][i % 2], shape, f, s,
                                            ["SAME", "VALID"][i // 2 % 2], acts[i % 3],
                                            zp=int(rng.integers(-100, 100)), seed=600 + i)))
    for i in range(12):
        rank = int(rng.integers(1, 6))
        out = [int(v) for v in rng.integers(1, 5, rank)]
        a = [d if rng.random() < 0.6 else 1 for d in out]
        b = [d if rng.random() < 0.6 else 1 for d in out][int(rng.integers(0, rank)):]
        qa = (float(rng.uniform(0.01, 0.2)), int(rng.integers(-128, 128)))
        qb = (float(rng.uniform(0.01, 0.2)), int(rng.integers(-128, 128)))
        op = ["ADD", "MUL"][i % 2]
        qo = (float(rng.uniform(0.05, 0.4)) * (8 if op == "MUL" else 1),
              int(rng.integers(-20, 20)))
        cases.append((f"{op.lower()}{i}", _binary(op, tuple(a), tuple(b), qa, qb, qo,
                                                  acts[i % 3], seed=700 + i)))
    for i in range(10):
        rank = int(rng.integers(1, 6))
        shape = tuple(int(v) for v in rng.integers(1, 6, rank))
        axes = sorted({int(v) for v in rng.integers(-rank, rank, int(rng.integers(1, rank + 1)))})
        cases.append((f"mean{i}", _mean(shape, axes, bool(i % 2),
                                        (0.05, int(rng.integers(-50, 50))),
                                        (float(rng.uniform(0.01, 0.1)), int(rng.integers(-9, 9))),
                                        seed=800 + i)))
    for i in range(8):
        rank = int(rng.integers(2, 7))
        shape = tuple(int(v) for v in rng.integers(1, 5, rank))
        cases.append((f"transpose{i}", transpose_case(shape, tuple(int(p) for p in
                                                                   rng.permutation(rank)),
                                                      seed=900 + i)))
        pads = [tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(rank)]
        cases.append((f"pad{i}", pad_case(shape, pads, seed=950 + i)))
        axis = int(rng.integers(-rank, rank))
        shapes = []
        for _ in range(int(rng.integers(2, 4))):
            s = list(shape)
            s[axis % rank] = int(rng.integers(1, 4))
            shapes.append(tuple(s))
        cases.append((f"concat{i}", concat_case(shapes, axis, seed=980 + i)))
    for i in range(8):
        depth = int(rng.integers(1, 300))
        scale = float(rng.uniform(0.005, 0.6))
        cases.append((f"softmax{i}", _unary("SOFTMAX", (int(rng.integers(1, 4)), depth), scale,
                                            int(rng.integers(-128, 128)),
                                            beta=float(rng.choice([1.0, 0.5, 2.0])))))
        cases.append((f"logistic{i}", _unary("LOGISTIC", (64,), scale,
                                             int(rng.integers(-128, 128)))))
        cases.append((f"tanh{i}", _unary("TANH", (64,), scale, int(rng.integers(-128, 128)))))
    return cases


RANDOM_CASES = _random_cases()


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("c_fuzz")
    built, models = [], []
    for name, build in RANDOM_CASES:
        g, inputs = build()
        prefix = f"f{len(models)}"
        export_c(g, d, prefix=prefix)
        models.append(tc.ModelIO.of(g, prefix))
        built.append((name, g, inputs))
    return tc.build_host(d, models), built


def test_random_kernel_geometries_bit_exact(fuzz_build):
    exe, built = fuzz_build
    assert len(built) >= 140
    failures = []
    for index, (name, g, inputs) in enumerate(built):
        rng = np.random.default_rng(index)
        samples = [inputs] + [[rng.integers(-128, 128, size=g.tensor(x).shape).astype(np.int8)
                               for x in g.inputs] for _ in range(3)]
        outs = tc.run_host(exe, index, g, samples)
        ev = Evaluator(g, mode="int")
        for sample, got in zip(samples, outs, strict=True):
            want = ev.run(sample)[0]
            if not np.array_equal(want, got[0].reshape(want.shape)):
                failures.append(name)
                break
    assert not failures, f"C differs from the reference on: {failures}"
