"""The standalone C export runs bit-exactly like the reference runtime.

* every integer conformance case of ``tests/test_ops_*.py`` (each op, its edge cases) plus
  random inputs, exported, compiled with ``gcc -std=c99 -Wall -Wextra -Werror -O2`` and run
  through the file-driven driver (one process per model, many inputs);
* hand-built multi-input / multi-output graphs and a quantized tiny ONNX model;
* the four MLPerf Tiny models (MLCommons' int8 .tflite and our own quantization) over
  100 random inputs each (skipped without /work/shared);
* Cortex-M: the M0+ soft-float link needs no float helpers, the M4 build under QEMU
  matches the reference (skipped without the arm-none-eabi toolchain / qemu).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from harness import qtensor, single_op_graph

from microquant.errors import MicroquantError
from microquant.export.c import SUPPORTED_OPS, export_c, export_c_cli, plan_offsets
from microquant.export.c import toolchain as tc
from microquant.export.c.arena import check_plan, lifetimes, plan_arena
from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.ir.tflite_io import read_tflite, write_tflite
from microquant.runtime.evaluator import Evaluator

needs_cc = pytest.mark.skipif(not tc.have_host_cc(), reason="no host C compiler (gcc)")
needs_arm = pytest.mark.skipif(not tc.have_arm_toolchain(),
                               reason=f"no arm-none-eabi toolchain ({tc.APT_LINE})")
needs_qemu = pytest.mark.skipif(not (tc.have_arm_toolchain() and tc.have_qemu()),
                                reason=f"no arm toolchain / qemu-system-arm ({tc.APT_LINE})")
MLPERF = SHARED / "models" / "mlperf_tiny"
MLPERF_NAMES = ("ad_autoencoder", "ic_resnet8", "kws_dscnn", "vww_mobilenetv1")
needs_shared = pytest.mark.skipif(not MLPERF.is_dir(), reason="needs /work/shared models")


def _op_cases() -> list:
    cases = []
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("test_ops_"):
            cases.extend(getattr(importlib.import_module(info.name), "CASES", []))
    return cases


def _int8_io(graph: Graph) -> bool:
    return all(graph.tensor(n).dtype == "int8" for n in graph.inputs + graph.outputs)


CASES = [(name, build) for name, build in _op_cases() if _int8_io(build()[0])]


def _random_samples(graph: Graph, n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, size=graph.tensor(x).shape).astype(np.int8)
             for x in graph.inputs] for _ in range(n)]


def _assert_same(graph: Graph, samples, outs, label: str) -> None:
    ev = Evaluator(graph, mode="int")
    bad = 0
    for sample, got in zip(samples, outs, strict=True):
        want = ev.run(sample)
        for a, b in zip(want, got, strict=True):
            bad += int(not np.array_equal(a, b.reshape(a.shape)))
    assert bad == 0, f"{label}: {bad} of {len(samples)} samples differ from the reference"


# -- per-op conformance ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_build(tmp_path_factory):
    if not tc.have_host_cc():
        pytest.skip("no host C compiler")
    d = tmp_path_factory.mktemp("c_ops")
    models, graphs = [], {}
    for i, (name, build) in enumerate(CASES):
        graph, inputs = build()
        export_c(graph, d, prefix=f"op{i}")
        models.append(tc.ModelIO.of(graph, f"op{i}"))
        graphs[name] = (i, graph, inputs)
    return tc.build_host(d, models), graphs


def test_every_c_op_has_a_case():
    covered = {op for _, build in CASES for op in build()[0].ops()}
    assert set(SUPPORTED_OPS) <= covered, sorted(set(SUPPORTED_OPS) - covered)


@needs_cc
@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_op_case_bit_exact(ops_build, name):
    exe, graphs = ops_build
    index, graph, inputs = graphs[name]
    samples = [inputs] + _random_samples(graph, 12, seed=index)
    outs = tc.run_host(exe, index, graph, samples)
    _assert_same(graph, samples, outs, name)


# -- hand-built graphs: several inputs/outputs, constants as data, branches ----------------


def _branchy_graph() -> Graph:
    """x -> CONV -> RELU6 -> a ; a + y -> ADD -> out0 ; MEAN(a) -> out1 ;
    CONCAT(a, const) -> MUL with y' -> out2 (a constant read as data)."""
    rng = np.random.default_rng(3)
    g = Graph(name="branchy")
    s = 0.05
    g.add_tensor(qtensor("x", (1, 6, 6, 3), 0.04, -3))
    g.add_tensor(qtensor("y", (1, 6, 6, 4), s, 2))
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    g.add_tensor(qtensor("w", w.shape, [0.01, 0.02, 0.005, 0.03], 0, axis=0, data=w))
    b = rng.integers(-500, 500, size=4).astype(np.int32)
    g.add_tensor(Tensor("b", (4,), "int32", b, QuantParams([4e-4, 8e-4, 2e-4, 1.2e-3], 0, 0)))
    g.add_tensor(qtensor("c", (1, 6, 6, 4), s, 2))
    g.add_tensor(qtensor("a", (1, 6, 6, 4), s, 2))
    g.add_tensor(qtensor("out0", (1, 6, 6, 4), 0.08, -1))
    g.add_tensor(Tensor("axes", (2,), "int32", np.array([1, 2], np.int32)))
    g.add_tensor(qtensor("out1", (1, 4), 0.03, 0))
    k = rng.integers(-128, 128, size=(1, 6, 6, 2)).astype(np.int8)
    g.add_tensor(qtensor("k", k.shape, s, 2, data=k))
    g.add_tensor(qtensor("cat", (1, 6, 6, 6), s, 2))
    g.add_tensor(qtensor("z", (1, 1, 1, 6), 0.1, 5))
    g.add_tensor(qtensor("out2", (1, 6, 6, 6), 0.2, -4))
    conv_attrs = dict(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, padding="SAME",
                      activation="NONE")
    g.nodes = [
        Node("CONV_2D", ["x", "w", "b"], ["c"], conv_attrs, "conv"),
        Node("RELU6", ["c"], ["a"], {}, "relu6"),
        Node("ADD", ["a", "y"], ["out0"], {"activation": "RELU"}, "add"),
        Node("MEAN", ["a", "axes"], ["out1"], {"keep_dims": False}, "mean"),
        Node("CONCATENATION", ["a", "k"], ["cat"], {"axis": 3, "activation": "NONE"}, "cat"),
        Node("MUL", ["cat", "z"], ["out2"], {"activation": "NONE"}, "mul"),
    ]
    g.inputs = ["x", "y", "z"]
    g.outputs = ["out0", "out1", "out2"]
    return g


@needs_cc
def test_multi_io_graph_bit_exact(tmp_path):
    g = _branchy_graph()
    export_c(g, tmp_path, prefix="branchy")
    exe = tc.build_host(tmp_path, [tc.ModelIO.of(g, "branchy")])
    samples = _random_samples(g, 40, seed=5)
    _assert_same(g, samples, tc.run_host(exe, 0, g, samples), "branchy")
    header = (tmp_path / "branchy.h").read_text()
    assert "branchy_invoke_multi" in header and "BRANCHY_NUM_INPUTS 3" in header
    assert "branchy_invoke(" not in header  # single-IO convenience only for 1 in / 1 out


@needs_cc
@pytest.mark.parametrize("scheme", ["int8", "w4a8"])
def test_quantized_tiny_onnx_bit_exact(tmp_path, scheme):
    import tiny_models

    from microquant import api

    onnx_path = tiny_models.tiny_onnx(tmp_path / "tiny.onnx")
    calib = tiny_models.calib_npz(tmp_path / "calib.npz")
    g = api.quantize_onnx(onnx_path, calib, progress=False, scheme=scheme)
    export_c(g, tmp_path / "c", prefix="tiny")
    exe = tc.build_host(tmp_path / "c", [tc.ModelIO.of(g, "tiny")])
    samples = _random_samples(g, 50, seed=1)
    _assert_same(g, samples, tc.run_host(exe, 0, g, samples), "tiny")


@needs_cc
def test_large_add_uses_rescale_tables_bit_exact(tmp_path):
    from test_ops_elementwise import _binary

    cases = [
        _binary("ADD", (1, 16, 16, 8), (1, 16, 16, 8), (0.05, -3), (0.2, 10), (0.3, 4), "RELU"),
        _binary("ADD", (1, 16, 16, 8), (1, 1, 16, 1), (0.013, 100), (0.05, -128), (0.06, -7)),
    ]
    graphs, models = [], []
    for i, build in enumerate(cases):
        g, _ = build()
        export_c(g, tmp_path, prefix=f"add{i}")
        assert "S);" in (tmp_path / f"add{i}.c").read_text()  # the table path is taken
        graphs.append(g)
        models.append(tc.ModelIO.of(g, f"add{i}"))
    exe = tc.build_host(tmp_path, models)
    for i, g in enumerate(graphs):
        samples = _random_samples(g, 10, seed=i)
        _assert_same(g, samples, tc.run_host(exe, i, g, samples), f"add{i}")


# -- generator contract ----------------------------------------------------------------------


def _chain(n: int = 3, size: int = 10) -> Graph:
    g = Graph(inputs=["t0"], outputs=[f"t{n}"])
    for i in range(n + 1):
        g.add_tensor(qtensor(f"t{i}", (1, size), 0.1, 0))
    g.nodes = [Node("RELU", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    return g


def test_plan_offsets_reuses_dead_buffers_and_never_overlaps_live_ones():
    g = _branchy_graph()
    offsets, size = plan_offsets(g)
    assert check_plan(g, offsets, size) is None
    assert set(offsets) == set(lifetimes(g))
    chain_offsets, chain_size = plan_offsets(_chain())
    assert chain_size == 24  # two 10-byte tensors (aligned to 12) ping-pong
    assert check_plan(_chain(), chain_offsets, chain_size) is None


def test_check_plan_rejects_overlapping_live_tensors():
    g = _chain()
    assert check_plan(g, {"t0": 0, "t1": 4, "t2": 20, "t3": 0}, 32) is not None
    assert check_plan(g, {"t0": 0, "t1": 12, "t2": 0}, 24) is not None  # t3 missing


def test_plan_arena_checks_the_project_planner_and_falls_back(monkeypatch):
    planner = pytest.importorskip("microquant.targets.planner")
    g = _branchy_graph()
    good = plan_arena(g)
    assert good.arena_size <= plan_offsets(g)[1]
    assert sorted(good.order) == list(range(len(g.nodes)))

    class Overlapping:  # every tensor at offset 0: must be rejected
        offsets = dict.fromkeys(lifetimes(g), 0)
        arena_size = 512
        order = list(range(len(g.nodes)))
        aliases: list = []

    monkeypatch.setattr(planner, "plan_memory", lambda graph, strategy="greedy": Overlapping())
    fallback = plan_arena(g)
    assert fallback.planner == "greedy-first-fit"
    assert (fallback.offsets, fallback.arena_size) == plan_offsets(g)


def test_unsupported_op_names_it_and_lists_supported(tmp_path):
    g = single_op_graph("SQUARED_DIFFERENCE", [qtensor("a", (1, 4)), qtensor("b", (1, 4))],
                        [qtensor("y", (1, 4))])
    with pytest.raises(MicroquantError, match="SQUARED_DIFFERENCE.*supported: .*CONV_2D"):
        export_c(g, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_int16_models_are_rejected(tmp_path):
    import tiny_models

    from microquant import api

    onnx_path = tiny_models.tiny_onnx(tmp_path / "tiny.onnx")
    calib = tiny_models.calib_npz(tmp_path / "calib.npz")
    g = api.quantize_onnx(onnx_path, calib, progress=False, scheme="int16x8")
    with pytest.raises(MicroquantError, match="int16x8 is not supported"):
        export_c(g, tmp_path / "c")


def test_float_io_is_rejected(tmp_path):
    g = single_op_graph("QUANTIZE", [Tensor("x", (1, 4), "float32")],
                        [qtensor("y", (1, 4), 0.1, 0)])
    with pytest.raises(MicroquantError, match="int8 inputs and outputs"):
        export_c(g, tmp_path)


def test_export_writes_flash_constants_and_replaces_files(tmp_path):
    g, _ = dict(CASES)["conv_3x3_s1_same"]()
    (tmp_path / "model.c").write_text("stale")
    paths = export_c(g, tmp_path)
    assert [p.name for p in paths] == ["model.h", "model.c", "mq_kernels.h", "mq_kernels.c"]
    src = (tmp_path / "model.c").read_text()
    assert "static const int8_t model_w" in src and "static int32_t model_arena[" in src
    assert "float" not in src and "double" not in src
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mq_export_")]


def test_invalid_prefix_is_rejected(tmp_path):
    g, _ = dict(CASES)["relu_same_qparams"]()
    with pytest.raises(MicroquantError, match="C identifier"):
        export_c(g, tmp_path, prefix="my-model")


def test_export_c_cli_summary(tmp_path):
    g, _ = dict(CASES)["fc_per_channel"]()
    model = tmp_path / "fc.tflite"
    model.write_bytes(write_tflite(g))
    summary = export_c_cli(model, tmp_path / "c")
    assert {Path(p).name for p in summary["files"]} >= {"model.h", "model.c"}
    assert summary["arena_bytes"] >= 32 + 10
    weights = g.tensor(g.nodes[0].inputs[1]).data.nbytes
    assert summary["const_bytes"] >= weights
    assert summary["flash_bytes_estimate"] > summary["const_bytes"]
    assert summary["ops"] == {"FULLY_CONNECTED": 1}
    with pytest.raises(MicroquantError, match="does not exist"):
        export_c_cli(tmp_path / "missing.tflite", tmp_path / "c")



def _const_objects(src: str) -> tuple[list[tuple[str, int]], list[str]]:
    import re

    arrays = re.findall(r"static const (int8_t|int32_t) \w+\[(\d+)\] = \{", src)
    structs = re.findall(r"static const (mq_\w+) \w+ = \{", src)
    return [(t, int(n)) for t, n in arrays], structs


def test_const_bytes_count_whole_structs():
    # const_bytes is each array word-rounded plus each parameter struct at its ARM sizeof
    # (fixed arrays inside included), and every struct the generator emits is in the table.
    from microquant.export.c.c_model import generate
    from microquant.export.c.sizes import STRUCT_BYTES

    seen = set()
    for name, build in CASES:
        g = build()[0]
        try:
            model = generate(g)
        except MicroquantError:
            continue  # an op or dtype the C export does not take
        arrays, structs = _const_objects(model.source)
        assert set(structs) <= set(STRUCT_BYTES), name
        seen.update(structs)
        expect = sum((n * (1 if t == "int8_t" else 4) + 3) // 4 * 4 for t, n in arrays)
        expect += sum(STRUCT_BYTES[s] for s in structs)
        assert model.const_bytes == expect, name
        assert f"constants {expect} bytes (flash)" in model.source
    assert {"mq_conv_params", "mq_add_params", "mq_mean_params"} <= seen


def test_export_c_cli_flash_is_the_footprint_estimate(tmp_path):
    from microquant.targets.deploy import c_footprint

    for case in ("fc_per_channel", "relu_same_qparams"):
        g, _ = dict(CASES)[case]()
        model = tmp_path / f"{case}.tflite"
        model.write_bytes(write_tflite(g))
        summary = export_c_cli(model, tmp_path / case)
        fp = c_footprint(read_tflite(model.read_bytes()))
        assert summary["flash_bytes_estimate"] == fp.flash_total
        assert summary["const_bytes"] == fp.const_data
        assert summary["arena_bytes"] == fp.arena


@needs_arm
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus"])
def test_struct_bytes_are_the_arm_sizeof(tmp_path, cpu):
    import subprocess

    from microquant.export.c.c_model import library_source
    from microquant.export.c.sizes import STRUCT_BYTES

    (tmp_path / "mq_kernels.h").write_text(library_source("mq_kernels.h"))
    checks = "".join(f"_Static_assert(sizeof({t}) == {n}, \"{t}\");\n"
                     for t, n in STRUCT_BYTES.items())
    (tmp_path / "sizes.c").write_text(f'#include "mq_kernels.h"\n{checks}')
    r = subprocess.run(["arm-none-eabi-gcc", *tc.CPU_FLAGS[cpu], "-std=c11", "-c",
                        "-o", str(tmp_path / "sizes.o"), str(tmp_path / "sizes.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_arm
def test_export_c_cli_flash_estimate_is_close_to_the_linked_firmware(tmp_path):
    # A one-layer model: the estimate is mostly code and start-up, not weights.
    from microquant.targets.deploy import measure_firmware

    g, _ = dict(CASES)["fc_per_channel"]()
    model = tmp_path / "fc.tflite"
    model.write_bytes(write_tflite(g))
    summary = export_c_cli(model, tmp_path / "c")
    size = measure_firmware(read_tflite(model.read_bytes()), tmp_path / "fw")
    assert abs(summary["flash_bytes_estimate"] - size["flash"]) <= 0.05 * size["flash"]


# -- MLPerf Tiny ------------------------------------------------------------------------------


def _mlperf_graphs(tmp: Path) -> list[tuple[str, Graph]]:
    from microquant import api

    graphs = []
    for name in MLPERF_NAMES:
        graphs.append((f"{name}_ref", read_tflite((MLPERF / f"{name}.reference_int8.tflite")
                                                  .read_bytes())))
        onnx_path = MLPERF / f"{name}.onnx"
        calib = SHARED / "data" / "kws01_calib.npz"
        if name != "kws_dscnn":  # no real data shipped: a small random calibration set
            shape = graphs[-1][1].tensor(graphs[-1][1].inputs[0]).shape
            calib = tmp / f"{name}_calib.npz"
            rng = np.random.default_rng(0)
            np.savez(calib, x=rng.uniform(-1, 1, size=(8, *shape[1:])).astype(np.float32))
        graphs.append((f"{name}_ours", api.quantize_onnx(onnx_path, calib, progress=False)))
    return graphs


@needs_cc
@needs_shared
def test_mlperf_tiny_models_bit_exact_over_100_inputs(tmp_path):
    graphs = _mlperf_graphs(tmp_path)
    models = []
    for i, (_, g) in enumerate(graphs):
        export_c(g, tmp_path / "c", prefix=f"m{i}")
        models.append(tc.ModelIO.of(g, f"m{i}"))
    exe = tc.build_host(tmp_path / "c", models)
    for i, (label, g) in enumerate(graphs):
        samples = _random_samples(g, 100, seed=i)
        _assert_same(g, samples, tc.run_host(exe, i, g, samples), label)


@needs_cc
@needs_shared
def test_mlperf_kws_matches_tflite_micro(tmp_path):
    from microquant.backends.tflm import run_tflm

    data = (MLPERF / "kws_dscnn.reference_int8.tflite").read_bytes()
    g = read_tflite(data)
    export_c(g, tmp_path)
    exe = tc.build_host(tmp_path, [tc.ModelIO.of(g, "model")])
    samples = _random_samples(g, 10, seed=9)
    for sample, got in zip(samples, tc.run_host(exe, 0, g, samples), strict=True):
        want = np.asarray(run_tflm(data, sample)[0]).reshape(got[0].shape)
        np.testing.assert_array_equal(got[0], want)


# -- Cortex-M -----------------------------------------------------------------------------------


@needs_arm
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m4"])
def test_cortex_m_link_needs_no_float_helpers(tmp_path, cpu):
    g, inputs = dict(CASES)["softmax_4d_classifier"]()
    conv, _ = dict(CASES)["conv_3x3_s2_same_even_relu6"]()
    for prefix, graph in (("sm", g), ("conv", conv)):
        export_c(graph, tmp_path, prefix=prefix)
        elf = tc.build_cortex_m_bare(tmp_path, graph, prefix, cpu)
        assert tc.soft_float_symbols(elf) == []
        assert tc.arm_size(elf)["text"] > 0


@needs_qemu
def test_cortex_m4_qemu_bit_exact(tmp_path):
    names = ["conv_grouped", "dw_3x3_s2_same_dm2_relu6", "softmax_16rows_s0.0625",
             "logistic_sweep_s0.03_zp-60", "tanh_sweep_s0.5_zp20", "mean_kws_like",
             "add_broadcast_both", "avg_3x3_s2_same_even", "fc_per_tensor_relu"]
    cases = dict(CASES)
    jobs = []
    for i, name in enumerate(names):
        g, inputs = cases[name]()
        export_c(g, tmp_path, prefix=f"q{i}")
        jobs.append((i, g, [inputs] + _random_samples(g, 3, seed=i)))
    models = [tc.ModelIO.of(g, f"q{i}") for i, g, _ in jobs]
    results = tc.run_cortex_m4(tmp_path, models, jobs)
    for name, (_, g, samples), outs in zip(names, jobs, results, strict=True):
        _assert_same(g, samples, outs, f"{name} on cortex-m4")
    assert tc.soft_float_symbols(tmp_path / "fw_cortex-m4.elf") == []


@needs_qemu
@needs_shared
def test_cortex_m4_qemu_kws_bit_exact(tmp_path):
    g = read_tflite((MLPERF / "kws_dscnn.reference_int8.tflite").read_bytes())
    export_c(g, tmp_path)
    samples = _random_samples(g, 5, seed=11)
    [out] = tc.run_cortex_m4(tmp_path, [tc.ModelIO.of(g, "model")], [(0, g, samples)])
    _assert_same(g, samples, out, "kws on cortex-m4")
