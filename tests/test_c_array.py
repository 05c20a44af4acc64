"""C-array export: the generated .cc/.h compile warning-free and hold exactly the model."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from tflite_cases import INT8_CASES

from microquant.errors import MicroquantError
from microquant.export.c_array import write_c_array
from microquant.ir.tflite_io import write_tflite

GXX = shutil.which("g++")

MAIN = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"

int main() {
  // FNV-1a over every byte, so Python can check the whole array.
  std::uint32_t h = 2166136261u;
  for (unsigned int i = 0; i < g_model_data_len; ++i) {
    h = (h ^ g_model_data[i]) * 16777619u;
  }
  std::printf("%u %u %u %c%c%c%c\n", g_model_data_len, h,
              static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(g_model_data) % 16),
              g_model_data[4], g_model_data[5], g_model_data[6], g_model_data[7]);
  return 0;
}
"""


def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


@pytest.fixture(scope="module")
def model() -> bytes:
    graph, _ = dict(INT8_CASES)["conv_2d"]()
    return write_tflite(graph)


@pytest.mark.skipif(GXX is None, reason="g++ not installed")
def test_generated_c_array_compiles_and_matches(model, tmp_path):
    header, source = write_c_array(model, tmp_path)
    assert (header.name, source.name) == ("model_data.h", "model_data.cc")
    assert "alignas(16) const unsigned char g_model_data[]" in source.read_text()
    (tmp_path / "main.cc").write_text(MAIN)
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror"]
    for cc in ("model_data.cc", "main.cc"):
        subprocess.run([GXX, "-c", *flags, cc], cwd=tmp_path, check=True)
    subprocess.run([GXX, "model_data.o", "main.o", "-o", "check"], cwd=tmp_path, check=True)
    out = subprocess.run([tmp_path / "check"], capture_output=True, text=True, check=True)
    length, digest, misalign, ident = out.stdout.split()
    assert int(length) == len(model)
    assert int(digest) == _fnv1a(model)
    assert int(misalign) == 0
    assert ident == "TFL3"


def test_custom_name_and_clean_overwrite(model, tmp_path):
    write_c_array(b"\x00" * 5, tmp_path, name="kws")
    header, source = write_c_array(model, tmp_path, name="kws")
    text = source.read_text()
    assert "g_kws[]" in text and f"g_kws_len = {len(model)};" in text
    assert "extern const unsigned int g_kws_len;" in header.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kws.cc", "kws.h"]  # no temp files


@pytest.mark.parametrize("name", ["", "3d", "model-data", "a b"])
def test_bad_name_rejected(model, tmp_path, name):
    with pytest.raises(MicroquantError):
        write_c_array(model, tmp_path, name=name)
    assert not any(tmp_path.iterdir())
