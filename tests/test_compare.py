"""``compare``: one row per scheme plus float, each measured in its natural runtime.

Oracles: the rows must equal what the single-purpose commands measure on the same files
(``quantize`` for the size, ``eval`` in TFLite Micro / ONNX Runtime for the accuracy), the
float row must agree with itself, and missing or failing schemes must become table rows,
not crashes.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models as tm

from microquant.cli import main
from microquant.errors import MicroquantError
from microquant.report import compare
from microquant.report.html import PNG_SIGNATURE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    model = tm.tiny_onnx(d / "tiny.onnx")
    calib = tm.calib_npz(d / "calib.npz", n=24)
    x = tm.samples(30, seed=11)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {tm.INPUT: x})[0]
    y = ref.argmax(1)
    y[:6] = (y[:6] + 1) % tm.CLASSES  # float accuracy 24/30 = 0.8, not a trivial 1.0
    np.savez(d / "data.npz", x=x, y=y)
    np.savez(d / "nolabels.npz", x=x)
    return {"dir": d, "model": model, "calib": calib, "data": d / "data.npz",
            "nolabels": d / "nolabels.npz"}


@pytest.fixture(scope="module")
def result(files):
    return compare.compare_schemes(files["model"], files["calib"], files["data"])


def _row(result, scheme):
    return next(r for r in result["rows"] if r["scheme"] == scheme)


def test_every_scheme_has_a_row(result):
    assert [r["scheme"] for r in result["rows"]] == ["float", *compare.DEFAULT_SCHEMES]
    assert all(r["status"] == "ok" for r in result["rows"]), result["rows"]
    runtimes = {r["scheme"]: r["runtime"] for r in result["rows"]}
    assert runtimes["int8"] == runtimes["int16x8"] == runtimes["w4a8"] == "tflm"
    assert runtimes["float"] == runtimes["fp16"] == runtimes["w1"] == "ort"
    f = _row(result, "float")
    assert f["accuracy"] == pytest.approx(0.8) and f["agreement"] == 1.0
    assert f["compression"] == 1.0 and f["sqnr_db"] is None
    assert all(r["latency_ms"] > 0 for r in result["rows"])


def test_rows_match_the_single_commands(result, files, capsys, tmp_path):
    """Same calibration -> the same int8 file as `quantize`; same accuracy as `eval`."""
    for scheme, suffix in (("int8", "tflite"), ("w4", "onnx")):
        out = tmp_path / f"m.{suffix}"
        argv = ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                "--scheme", scheme, "-o", str(out)]
        assert main(argv) == 0
        assert _row(result, scheme)["bytes"] == out.stat().st_size
        assert main(["eval", str(out), "--data", str(files["data"]), "--json"]) == 0
        ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert _row(result, scheme)["accuracy"] == pytest.approx(ev["accuracy"])
        assert _row(result, scheme)["compression"] == pytest.approx(
            files["model"].stat().st_size / out.stat().st_size)


def test_error_ordering_is_physical(result):
    sqnr = {r["scheme"]: r["sqnr_db"] for r in result["rows"]}
    # fp16 is nearly lossless; fewer weight bits -> more noise.
    assert sqnr["fp16"] > 60 and sqnr["fp16"] > sqnr["int8"]
    assert sqnr["int8"] > sqnr["w4"] > sqnr["w2"] > sqnr["w1"]
    assert sqnr["int16x8"] > sqnr["w4a8"]


def test_flash_fit_uses_file_size(result):
    flash = result["flash"]
    assert "nrf52840" in flash and flash["nrf52840"] == 1024 * 1024
    for r in result["rows"]:
        assert r["fits"] == {t: r["bytes"] <= f for t, f in flash.items()}


def test_missing_and_failing_schemes_are_rows(files, monkeypatch):
    import microquant.api as api

    real = api.available_schemes
    monkeypatch.setattr(api, "available_schemes",
                        lambda fmt: tuple(s for s in real(fmt) if s not in ("w4a8", "w2")))
    real_call = compare._Quantizer.__call__

    def flaky(self, scheme):
        if scheme == "int16x8":
            raise MicroquantError("op FOO has no\nint16 kernel")
        return real_call(self, scheme)

    monkeypatch.setattr(compare._Quantizer, "__call__", flaky)
    r = compare.compare_schemes(files["model"], files["calib"], files["nolabels"],
                                "int8,int16x8,w4a8,w2", n_samples=5)
    status = {row["scheme"]: row["status"] for row in r["rows"]}
    assert status == {"float": "ok", "int8": "ok", "int16x8": "failed: op FOO has no int16 "
                      "kernel", "w4a8": "not available", "w2": "not available"}
    assert r["samples"] == 5 and not r["labels"]
    assert _row(r, "int8")["accuracy"] is None and _row(r, "int8")["agreement"] is not None
    text = compare.format_compare_text(r)
    assert "not available" in text and "accuracy" not in text.splitlines()[0]


def test_parse_schemes():
    assert compare.parse_schemes("int8, w4,int8,float") == ["int8", "w4"]
    assert compare.parse_schemes(None) == list(compare.DEFAULT_SCHEMES)
    with pytest.raises(MicroquantError, match="unknown scheme 'int3'"):
        compare.parse_schemes("int8,int3")
    with pytest.raises(MicroquantError, match="no scheme"):
        compare.parse_schemes("float")


def test_cli_report_and_plot(files, capsys, tmp_path):
    rep, plot = tmp_path / "rep", tmp_path / "acc.png"
    code = main(["compare", str(files["model"]), "--calib", str(files["calib"]), "--data",
                 str(files["data"]), "--schemes", "int8,fp16", "--report", str(rep),
                 "--plot", str(plot), "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["scheme"] for row in r["rows"]] == ["float", "int8", "fp16"]
    assert plot.read_bytes()[:8] == PNG_SIGNATURE and r["plot"] == str(plot)
    page = (rep / "report.html").read_text()
    assert "data:image/png;base64" in page and "fp16" in page and "nrf52840" in page
    assert main(["compare", str(files["model"]), "--calib", str(files["calib"]), "--data",
                 str(files["data"]), "--schemes", "int8", "--report", str(tmp_path / "r2")]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "tflm" in out and (tmp_path / "r2" / "accuracy_vs_size.png").is_file()


@pytest.mark.parametrize("argv, word", [
    (["--schemes", "int8,int3"], "unknown scheme"),
    (["--plot", "{dir}/p.jpg"], "PNG"),
    (["--plot", "{dir}/no/p.png"], "directory"),
    (["--report", "{dir}/no/rep"], "report directory"),
])
def test_cli_errors(argv, word, files, capsys):
    argv = [a.format(dir=files["dir"]) for a in argv]
    code = main(["compare", str(files["model"]), "--calib", str(files["calib"]), "--data",
                 str(files["data"]), *argv])
    cap = capsys.readouterr()
    assert code == 2 and cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and word in lines[0]
    assert not (files["dir"] / "no").exists() and not (files["dir"] / "p.jpg").exists()


def test_cli_rejects_tflite_model(files, capsys, tmp_path):
    out = tmp_path / "m.tflite"
    assert main(["quantize", str(files["model"]), "--calib", str(files["calib"]),
                 "-o", str(out)]) == 0
    capsys.readouterr()
    code = main(["compare", str(out), "--calib", str(files["calib"]), "--data",
                 str(files["data"])])
    assert code == 2 and "float ONNX" in capsys.readouterr().err
