"""Target profiles: built-in data files, user TOML files, size strings, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from microquant.errors import MicroquantError
from microquant.targets.profiles import (
    format_size,
    known_targets,
    load_target,
    load_target_file,
    parse_size,
    resolve_targets,
)

KB, MB = 1024, 1024 * 1024
EXPECTED = {
    # name: (core, MHz, fpu, dsp, flash, ram)
    "nrf52840": ("cortex-m4f", 64, True, True, 1 * MB, 256 * KB),
    "stm32f746": ("cortex-m7", 216, True, True, 1 * MB, 320 * KB),
    "stm32l4r5": ("cortex-m4f", 120, True, True, 2 * MB, 640 * KB),
    "stm32g0b1": ("cortex-m0plus", 64, False, False, 512 * KB, 144 * KB),
    "rp2040": ("cortex-m0plus", 133, False, False, 2 * MB, 264 * KB),
    "esp32": ("xtensa-lx6", 240, True, False, 4 * MB, 520 * KB),
}

GOOD = """
name = "my-board"
core = "cortex-m33"
clock_mhz = 150
fpu = true
dsp = true
flash = "768KB"
ram = 131072
"""


def test_builtin_profiles():
    assert known_targets() == sorted(EXPECTED)
    for name, (core, mhz, fpu, dsp, flash, ram) in EXPECTED.items():
        t = load_target(name)
        assert (t.core, t.clock_mhz, t.fpu, t.dsp, t.flash, t.ram) == (core, mhz, fpu, dsp,
                                                                       flash, ram)
    assert load_target("RP2040").flash_external and not load_target("nrf52840").flash_external


def test_profiles_are_package_data():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"microquant.targets" = ["profiles/*.toml"]' in text


def test_unknown_target_lists_known_ones():
    with pytest.raises(MicroquantError, match=r"unknown target 'nrf9999'.*esp32, nrf52840"):
        load_target("nrf9999")


def test_user_target_file(tmp_path):
    p = tmp_path / "board.toml"
    p.write_text(GOOD)
    t = load_target_file(p)
    assert (t.name, t.flash, t.ram, t.clock_mhz) == ("my-board", 768 * KB, 128 * KB, 150.0)
    both = resolve_targets(["esp32,rp2040"], p)
    assert [x.name for x in both] == ["esp32", "rp2040", "my-board"]
    assert len(resolve_targets()) == len(EXPECTED)


@pytest.mark.parametrize("text, message", [
    ("name = \"x\"\ncore = ", "malformed TOML"),
    (GOOD.replace('ram = 131072\n', ""), "missing required field 'ram'"),
    (GOOD.replace("fpu = true", 'fpu = "yes"'), "field 'fpu' has invalid value"),
    (GOOD.replace("clock_mhz = 150", "clock_mhz = true"), "field 'clock_mhz'"),
    (GOOD.replace('"768KB"', '"lots"'), "field 'flash'"),
    (GOOD.replace('"768KB"', "0"), "field 'flash' must be positive"),
    (GOOD + "sram = 5\n", "unknown field 'sram'"),
])
def test_malformed_target_file(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(MicroquantError, match=message) as e:
        load_target_file(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_missing_target_file(tmp_path):
    with pytest.raises(MicroquantError, match="target file not found"):
        load_target_file(tmp_path / "nope.toml")


@pytest.mark.parametrize("text, n", [
    ("64KB", 65536), ("1MB", MB), ("1024", 1024), (1024, 1024), ("1.5KB", 1536),
    ("64 kb", 65536), ("2M", 2 * MB), ("64KiB", 65536), ("0", 0), ("12B", 12),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["abc", "-5", "1.3B", "64XB", "", -1, "1e3"])
def test_parse_size_rejects(text):
    with pytest.raises(MicroquantError, match="invalid size"):
        parse_size(text)


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(65536) == "64.0 KB"
    assert format_size(-2048) == "-2.0 KB"
