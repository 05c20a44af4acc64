"""``fit`` against real firmware: the C-runtime estimate vs ``arm-none-eabi-size`` of the
Cortex-M4 build of the C export, and verdicts on targets sized from the MEASURED firmware.

The firmware is built here with the toolchain module directly (export_c +
build_cortex_m_bare + arm_size), independently of ``fit``'s own code path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
from conftest import SHARED
from test_planner import residual_graph, strided_graph
from tflite_cases import INT8_CASES

from microquant.errors import MicroquantError
from microquant.export.c import export_c
from microquant.export.c import toolchain as tc
from microquant.ir.graph import Graph
from microquant.ir.tflite_io import read_tflite, write_tflite
from microquant.targets.deploy import STACK_BYTES, c_footprint
from microquant.targets.fit import fit_cli, fit_report

needs_arm = pytest.mark.skipif(not tc.have_arm_toolchain(),
                               reason=f"no arm-none-eabi toolchain ({tc.APT_LINE})")
MLPERF = SHARED / "models" / "mlperf_tiny"
TOLERANCE = 0.05


def _firmware(graph: Graph, work: Path, cpu: str = "cortex-m4") -> dict[str, int]:
    export_c(graph, work, "model")
    return tc.arm_size(tc.build_cortex_m_bare(work, graph, "model", cpu))


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    from microquant import api

    d = tmp_path_factory.mktemp("fitfw")
    g = api.quantize_onnx(tiny_models.tiny_onnx(d / "tiny.onnx"),
                          tiny_models.calib_npz(d / "calib.npz"), progress=False)
    path = d / "tiny.tflite"
    path.write_bytes(write_tflite(g))
    return path


def _small_models(tiny_tflite: Path) -> list[tuple[str, Graph]]:
    cases = dict(INT8_CASES)
    models = [("tiny_int8", read_tflite(tiny_tflite.read_bytes())),
              ("strided", strided_graph()[0])]
    for name in ("conv_2d", "depthwise_conv_2d", "fully_connected", "softmax", "tanh", "mean",
                 "pad", "reshape"):
        models.append((name, cases[name]()[0]))
    return [(n, g) for n, g in models if len(g.inputs) == 1 == len(g.outputs)]


def _board(tmp_path: Path, name: str, flash: int, ram: int, core: str = "cortex-m4f") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f'name = "{name}"\ncore = "{core}"\nclock_mhz = 80\nfpu = false\n'
                 f"dsp = false\nflash = {flash}\nram = {ram}\n")
    return p


@needs_arm
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus"])
def test_estimate_within_5_percent_of_linked_firmware(tiny_tflite, tmp_path, cpu):
    models = _small_models(tiny_tflite)
    assert len(models) >= 5
    for name, g in models:
        fp = c_footprint(g, cpu=cpu)
        size = _firmware(g, tmp_path / name, cpu)
        assert abs(fp.flash_total - size["flash"]) <= TOLERANCE * size["flash"], (name, fp, size)
        assert abs(fp.ram_static - size["ram"]) <= TOLERANCE * size["ram"], (name, fp, size)


@needs_arm
@pytest.mark.skipif(not MLPERF.is_dir(), reason="needs /work/shared models")
def test_estimate_within_5_percent_on_kws(tmp_path):
    g = read_tflite((MLPERF / "kws_dscnn.reference_int8.tflite").read_bytes())
    fp, size = c_footprint(g), _firmware(g, tmp_path)
    assert abs(fp.flash_total / size["flash"] - 1) <= TOLERANCE
    assert abs(fp.ram_static / size["ram"] - 1) <= TOLERANCE


@needs_arm
@pytest.mark.parametrize("core, cpu", [("cortex-m4f", "cortex-m4"),
                                       ("cortex-m0plus", "cortex-m0plus")])
def test_verdicts_on_targets_sized_from_the_measured_firmware(tiny_tflite, tmp_path, core, cpu):
    size = _firmware(read_tflite(tiny_tflite.read_bytes()), tmp_path / "fw", cpu)
    flash, ram = size["flash"], size["ram"] + STACK_BYTES[cpu]  # the stack is not in `size`

    def verdict(board: str, f: int, r: int, **kw) -> str:
        out = fit_cli(tiny_tflite, target_file=_board(tmp_path, board, f, r, core), **kw)
        [row] = out["rows"]
        assert row["runtime"] == "c" and row["code_table"] == cpu
        return row["verdict"]

    # measured mode: fit builds the firmware itself - exact to the byte
    assert verdict("just_fits", flash + 4, ram + 4, measure=True) == "fits"
    assert verdict("exact", flash, ram, measure=True) == "fits"
    assert verdict("flash_short", flash - 4, ram + 4, measure=True) == "does not fit: flash"
    assert verdict("ram_short", flash + 4, ram - 4, measure=True) == "does not fit: RAM"
    # estimate mode: right verdict as soon as the budget is 5 % away from the real firmware
    up, down = 1 + TOLERANCE, 1 - TOLERANCE
    assert verdict("est_fits", int(flash * up), int(ram * up)) == "fits"
    assert verdict("est_flash_short", int(flash * down), int(ram * up)) == "does not fit: flash"
    assert verdict("est_ram_short", int(flash * up), int(ram * down)) == "does not fit: RAM"
    assert verdict("est_both", int(flash * down), int(ram * down)) == \
        "does not fit: RAM and flash"


def test_c_rows_add_up(tiny_tflite):
    g = read_tflite(tiny_tflite.read_bytes())
    [row] = fit_report(g, ["nrf52840"])
    fp = c_footprint(g)
    assert row["runtime"] == "c" and not row["measured"]
    assert row["flash_total"] == fp.flash_total == (
        row["flash_const"] + row["flash_graph"] + row["flash_code"])
    assert row["flash_code"] == row["flash_kernels"] + row["flash_libc"] + row["flash_startup"]
    assert row["ram_total"] == row["arena"] + row["ram_runtime"]
    assert row["ram_runtime"] == (-(-row["ram_scratch"] // 4) * 4 + row["ram_io"]
                                  + row["ram_stack"])
    # Thumb-1 code is larger; the data is the same
    [m0] = fit_report(g, ["rp2040"])
    assert m0["code_table"] == "cortex-m0plus" and row["code_table"] == "cortex-m4"
    assert m0["flash_code"] > row["flash_code"] and m0["flash_const"] == row["flash_const"]
    assert m0["ram_static"] == row["ram_static"] and m0["ram_stack"] > row["ram_stack"]
    # the interpreter needs far more than the generated C on the same model
    [tflm] = fit_report(g, ["nrf52840"], runtime="tflm")
    assert tflm["runtime"] == "tflm"
    assert tflm["flash_total"] > 3 * row["flash_total"]
    assert tflm["ram_total"] > row["ram_total"] - STACK_BYTES["cortex-m4"]
    with pytest.raises(MicroquantError, match="unknown cpu"):
        c_footprint(g, cpu="cortex-a53")


def test_models_the_c_export_cannot_run_fall_back_to_tflm():
    g, _ = residual_graph()  # float output (DEQUANTIZE): not exportable as C
    [row] = fit_report(g, ["nrf52840"])
    assert row["runtime"] == "tflm"
    assert any("C export cannot run" in n for n in row["notes"])
    with pytest.raises(MicroquantError, match="unknown runtime"):
        fit_report(g, ["nrf52840"], runtime="zephyr")
