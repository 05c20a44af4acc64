"""Fit check: flash/RAM estimates per target, verdicts at the exact boundary, CLI entry."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import SHARED
from test_planner import Builder, residual_graph
from tiny_models import tiny_onnx

from microquant.errors import MicroquantError
from microquant.ir.tflite_io import write_tflite
from microquant.targets.fit import (
    RUNTIME_CODE,
    SOFTFLOAT_CODE,
    fit_cli,
    fit_report,
    format_fit,
    int8_estimate_graph,
    runtime_ram,
)
from microquant.targets.planner import plan_memory
from microquant.targets.profiles import load_target_file

MLPERF = SHARED / "models" / "mlperf_tiny"


def _board(tmp_path, name: str, flash: int, ram: int, fpu: bool = True):
    p = tmp_path / f"{name}.toml"
    p.write_text(f'name = "{name}"\ncore = "cortex-m4f"\nclock_mhz = 80\nfpu = {str(fpu).lower()}'
                 f"\ndsp = true\nflash = {flash}\nram = {ram}\n")
    return load_target_file(p)


def test_just_fits_and_just_misses(tmp_path):
    g, _ = residual_graph()
    [ref] = fit_report(g, [_board(tmp_path, "big", 1 << 30, 1 << 30)])
    need_flash, need_ram = ref["flash_total"], ref["ram_total"]
    assert need_ram == plan_memory(g, "optimized").arena_size + runtime_ram(g)
    assert need_flash == (ref["flash_weights"] + ref["flash_quant_params"] + ref["flash_graph"]
                          + ref["flash_code"])
    exact = _board(tmp_path, "exact", need_flash, need_ram)
    ram_short = _board(tmp_path, "ram_short", need_flash, need_ram - 1)
    flash_short = _board(tmp_path, "flash_short", need_flash - 1, need_ram)
    rows = {r["target"]: r for r in fit_report(g, [exact, ram_short, flash_short])}
    assert rows["exact"]["fits"] and rows["exact"]["verdict"] == "fits"
    assert rows["exact"]["ram_margin"] == 0 == rows["exact"]["flash_margin"]
    assert rows["ram_short"]["verdict"] == "does not fit: RAM"
    assert rows["ram_short"]["ram_margin"] == -1
    assert rows["flash_short"]["verdict"] == "does not fit: flash"
    # the application's reserve comes out of the same budget
    [r] = fit_report(g, [exact], reserve_ram=1, reserve_flash=1)
    assert r["verdict"] == "does not fit: RAM and flash"
    with pytest.raises(MicroquantError):
        fit_report(g, [exact], reserve_ram=-1)


def test_greedy_strategy_needs_more_ram():
    g, _ = residual_graph()
    [opt] = fit_report(g, ["nrf52840"])
    [greedy] = fit_report(g, ["nrf52840"], strategy="greedy")
    assert opt["arena"] < greedy["arena"] == opt["arena_greedy"]


def test_arena_that_fits_nowhere():
    b = Builder(0)
    x = b.input((1, 300, 300, 8))  # 720 KB of input alone
    g = b.done(b.unary("RELU", x))
    rows = fit_report(g, None)
    assert rows and not any(r["fits"] for r in rows)
    assert all(r["verdict"].startswith("does not fit: RAM") for r in rows)
    assert all(any("arena alone" in n for n in r["notes"]) for r in rows)


def test_tflite_file(tmp_path):
    g, _ = residual_graph()
    data = write_tflite(g)
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    out = fit_cli(path, ["stm32g0b1", "esp32"], reserve_ram="16KB", reserve_flash="0")
    assert out["format"] == "tflite" and out["targets"] == ["stm32g0b1", "esp32"]
    assert out["reserve_ram"] == 16384
    for r in out["rows"]:
        assert r["precision"] == "int8" and r["fits"]
        # the .tflite file is stored whole: weights + qparams + structure = file size
        assert r["flash_weights"] + r["flash_quant_params"] + r["flash_graph"] == len(data)
        assert r["ram_available"] == r["ram_size"] - 16384
    assert out["summary"] == "int8: fits all selected targets"
    text = format_fit(out)
    assert "stm32g0b1" in text and "reserved for the application: ram 16.0 KB" in text
    assert text.endswith(out["summary"])


def test_onnx_file_float_and_int8_estimate(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx")
    out = fit_cli(path, ["stm32g0b1", "nrf52840"])
    rows = {(r["precision"], r["target"]): r for r in out["rows"]}
    assert set(rows) == {(p, t) for p in ("float32", "int8 (estimate)")
                         for t in ("stm32g0b1", "nrf52840")}
    fl, q = rows[("float32", "nrf52840")], rows[("int8 (estimate)", "nrf52840")]
    assert q["arena"] * 4 >= fl["arena"] > q["arena"]  # float activations: 4 bytes each
    assert 3 * q["flash_weights"] < fl["flash_weights"] <= 4 * q["flash_weights"]
    assert fl["flash_quant_params"] == 0 < q["flash_quant_params"]
    # float kernels on a core without FPU link soft-float and get a warning
    nofpu = rows[("float32", "stm32g0b1")]
    assert nofpu["flash_code"] - fl["flash_code"] == SOFTFLOAT_CODE
    assert any("no FPU" in n for n in nofpu["notes"])
    assert fl["flash_code"] > RUNTIME_CODE


def test_int8_estimate_graph_types(tmp_path):
    from microquant.report.models import load_onnx_lowered

    lowered = load_onnx_lowered(tiny_onnx(tmp_path / "tiny.onnx"))[1]
    est = int8_estimate_graph(lowered)
    conv = next(n for n in est.nodes if n.op == "CONV_2D")
    w, bias = est.tensor(conv.inputs[1]), est.tensor(conv.inputs[2])
    assert (w.dtype, bias.dtype, est.tensor(conv.outputs[0]).dtype) == ("int8", "int32", "int8")
    assert w.quant.scale.size == w.shape[0]
    assert lowered.tensor(conv.inputs[1]).dtype == "float32"  # the input graph is untouched


@pytest.mark.parametrize("bad", [
    dict(reserve_ram="lots"), dict(targets=["nrf9999"]), dict(reserve_flash="-1KB"),
])
def test_fit_cli_user_errors(tmp_path, bad):
    path = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(MicroquantError):
        fit_cli(path, **bad)


def test_fit_cli_missing_model(tmp_path):
    with pytest.raises(MicroquantError, match="not found"):
        fit_cli(tmp_path / "nope.tflite")


@pytest.mark.skipif(not MLPERF.is_dir(), reason="needs ../shared")
def test_runtime_ram_estimate_tracks_tflm_tail():
    from tflite_micro.python.tflite_micro import runtime

    from microquant.backends._stderr import capture_stderr
    from microquant.ir.tflite_io import read_tflite

    for model in ("ic_resnet8", "kws_dscnn", "vww_mobilenetv1", "ad_autoencoder"):
        data = (MLPERF / f"{model}.reference_int8.tflite").read_bytes()
        with capture_stderr() as log:
            runtime.Interpreter.from_bytes(data, arena_size=1 << 22).print_allocations()
        tail = int(re.search(r"Arena allocation tail (\d+) bytes", log.text()).group(1))
        est = runtime_ram(read_tflite(data))
        assert abs(est - tail) <= 0.1 * tail, (model, est, tail)
        assert np.isfinite(est)
