"""CLI commands beyond the int8 core: quantize --scheme (.tflite / .onnx), inspect --layers,
export --c, fit, quantize --report; their bad inputs (exit 2, one line, nothing written).

Oracles: TFLite Micro (``verify``: our reference runtime bit-exact with it) for the .tflite
schemes, ONNX Runtime on the float model for the .onnx ones, the library functions the
commands wrap (same numbers through the CLI as through the API).
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models as tm

from microquant.cli import main
from microquant.report.html import PNG_SIGNATURE


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def clean_error(code: int, capsys, *never: object) -> str:
    """Exit 2, exactly one ``error:`` line on stderr, nothing on stdout, no file left."""
    cap = capsys.readouterr()
    assert code == 2, cap
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert "Traceback" not in cap.err and cap.out == ""
    for p in never:
        assert not p.exists(), p
        assert not list(p.parent.glob(".*.tmp"))
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmds")
    model = tm.tiny_onnx(d / "tiny.onnx")
    calib = tm.calib_npz(d / "calib.npz", n=24)
    x = tm.samples(30, seed=5)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {tm.INPUT: x})[0]
    np.savez(d / "data.npz", x=x, y=ref.argmax(1))
    int8 = d / "int8.tflite"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(int8)]) == 0
    return {"dir": d, "model": model, "calib": calib, "data": d / "data.npz", "ref": ref,
            "x": x, "int8": int8}


# -- quantize --scheme ---------------------------------------------------------------------

@pytest.mark.parametrize("scheme, act", [("int16x8", "int16"), ("w4a8", "int8")])
def test_tflite_schemes_are_bit_exact_in_tflm(scheme, act, files, capsys, tmp_path):
    out = tmp_path / f"{scheme}.tflite"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                                "--scheme", scheme, "-o", str(out)])
    assert code == 0 and r["scheme"] == scheme and r["format"] == "tflite"
    assert r["inputs"][0]["dtype"] == act and r["bytes"] == out.stat().st_size
    code, v = run_json(capsys, ["verify", str(out), "--data", str(files["data"])])
    assert code == 0 and v["bit_exact"] == v["total"] == 30
    code, e = run_json(capsys, ["eval", str(out), "--data", str(files["data"])])
    assert e["accuracy"] >= 0.8  # labels = float top-1, so this is agreement with float


def test_per_tensor_int8_tflite_is_bit_exact(files, capsys, tmp_path):
    out = tmp_path / "pt.tflite"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                                "--per-tensor", "-o", str(out)])
    assert code == 0
    from microquant.ir.tflite_io import read_tflite

    g = read_tflite(out.read_bytes())
    weights = [g.tensor(n.inputs[1]) for n in g.nodes if n.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert weights and all(w.quant.scale.size == 1 for w in weights)
    code, v = run_json(capsys, ["verify", str(out), "--data", str(files["data"])])
    assert code == 0 and v["bit_exact"] == v["total"] == 30


def test_w4a8_is_smaller_than_int8(files, capsys, tmp_path):
    out = tmp_path / "w4a8.tflite"
    assert main(["quantize", str(files["model"]), "--calib", str(files["calib"]),
                 "--scheme", "w4a8", "-o", str(out)]) == 0
    capsys.readouterr()
    assert out.stat().st_size < files["int8"].stat().st_size


@pytest.mark.parametrize("scheme, calib, min_sqnr", [
    # Measured on this model: 26.5, 27.2, 75.2, 34.6, 19.4, 9.9, 5.1 dB.
    ("int8", True, 20.0), ("int16x8", True, 22.0), ("fp16", False, 60.0),
    ("dynamic", False, 25.0), ("w4", False, 14.0), ("w2", False, 5.0), ("w1", False, 2.0),
])
def test_onnx_schemes_run_in_onnxruntime(scheme, calib, min_sqnr, files, capsys, tmp_path):
    out = tmp_path / f"{scheme}.onnx"
    argv = ["quantize", str(files["model"]), "--scheme", scheme, "-o", str(out)]
    code, r = run_json(capsys, argv + (["--calib", str(files["calib"])] if calib else []))
    assert code == 0 and r["format"] == "onnx" and r["scheme"] == scheme
    assert r["bytes"] == out.stat().st_size and r["float_bytes"] == files["model"].stat().st_size
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {tm.INPUT: x[None]})[0] for x in files["x"]])
    ref = files["ref"]
    sqnr = 10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-30))
    assert sqnr >= min_sqnr, sqnr
    if scheme in ("fp16", "int16x8"):
        assert (got.argmax(1) == ref.argmax(1)).all()


def _dq_nodes(path) -> list[tuple[int, dict]]:
    """(input count, attributes) of every DequantizeLinear of an ONNX file."""
    import onnx

    m = onnx.load(str(path))
    return [(len(n.input), {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            for n in m.graph.node if n.op_type == "DequantizeLinear"]


# Per-channel scales run along each weight's output-channel axis: 0 for Conv's [Co, Ci, kh,
# kw], 1 for a MatMul weight stored [K, N].
@pytest.mark.parametrize("extra, check", [
    ([], lambda k, a: k == 2 and a.get("axis") in (0, 1) and "block_size" not in a),
    (["--per-tensor"], lambda k, a: k == 2 and "axis" not in a),
    (["--asymmetric"], lambda k, a: k == 3 and a.get("axis") in (0, 1)),  # with zero points
    (["--group-size", "9"], lambda k, a: a.get("block_size") == 9),
])
def test_onnx_weight_options_reach_the_file(extra, check, files, capsys, tmp_path):
    out = tmp_path / "w4.onnx"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--scheme", "w4",
                                "-o", str(out), *extra])
    assert code == 0 and r["group_size"] == (9 if "--group-size" in extra else None)
    nodes = _dq_nodes(out)
    assert len(nodes) == 2 and all(check(k, a) for k, a in nodes), nodes


# kind -> (extra argv, output name, word the message must contain)
BAD_QUANTIZE = {
    "unknown_scheme": (["--scheme", "int3", "--calib", "{calib}"], "o.tflite", "unknown scheme"),
    "w4a8_as_onnx": (["--scheme", "w4a8", "--calib", "{calib}"], "o.onnx", "cannot be written"),
    "fp16_as_tflite": (["--scheme", "fp16"], "o.tflite", "cannot be written"),
    "group_not_dividing": (["--scheme", "w4", "--group-size", "4"], "o.onnx", "does not divide"),
    "group_on_int8": (["--scheme", "int8", "--group-size", "9", "--calib", "{calib}"],
                      "o.onnx", "--group-size"),
    "asym_tflite": (["--asymmetric", "--calib", "{calib}"], "o.tflite", "--asymmetric"),
    "per_tensor_tflite": (["--scheme", "int16x8", "--per-tensor", "--calib", "{calib}"],
                          "o.tflite", "--per-tensor"),
    "no_calib_tflite": (["--scheme", "int16x8"], "o.tflite", "--calib"),
    "no_calib_onnx_int8": (["--scheme", "int8"], "o.onnx", "--calib"),
    "float_io_onnx": (["--scheme", "fp16", "--float-io"], "o.onnx", "--float-io"),
    "bad_suffix": (["--calib", "{calib}"], "o.bin", ".tflite"),
    "missing_dir_onnx": (["--scheme", "fp16"], "no/such/o.onnx", "directory"),
    "report_dir_parent_missing": (["--scheme", "fp16", "--report", "{dir}/a/b"], "o.onnx",
                                  "report directory"),
}


@pytest.mark.parametrize("kind", BAD_QUANTIZE)
def test_quantize_bad_options(kind, files, capsys, tmp_path):
    extra, name, word = BAD_QUANTIZE[kind]
    out = tmp_path / name
    extra = [a.format(calib=files["calib"], dir=tmp_path) for a in extra]
    code = main(["quantize", str(files["model"]), *extra, "-o", str(out)])
    assert word in clean_error(code, capsys, out, tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_quantize_report(files, capsys, tmp_path):
    out = tmp_path / "m.tflite"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                                "-o", str(out), "--report", str(tmp_path / "rep")])
    assert code == 0 and r["html"] == str(tmp_path / "rep" / "report.html")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "16/16" in page  # bit-exact vs TFLM on the random inputs
    assert "CONV_2D" in page and "FULLY_CONNECTED" in page and "top-1 agreement" in page
    out = tmp_path / "m.onnx"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--scheme", "w4", "-o",
                                str(out), "--report", str(tmp_path / "rep2")])
    assert code == 0 and "CONV_2D" in (tmp_path / "rep2" / "report.html").read_text()


# -- inspect --layers ----------------------------------------------------------------------

def test_inspect_layers_matches_library(files, capsys, tmp_path):
    from microquant.report.layers import layers_cli

    rep = tmp_path / "rep"
    code, r = run_json(capsys, ["inspect", str(files["model"]), "--calib", str(files["calib"]),
                                "--layers", "--calibration", "minmax", "--samples", "8",
                                "--report", str(rep)])
    assert code == 0 and r["analysis"] == "layers" and r["samples"] == 8
    lib = layers_cli(files["model"], files["calib"], method="minmax", n_samples=8)
    assert [row["sqnr_isolated_db"] for row in r["rows"]] == \
        [row["sqnr_isolated_db"] for row in lib["rows"]]
    assert (rep / "report.html").is_file()
    assert all(open(p, "rb").read(8) == PNG_SIGNATURE for p in r["histograms"])
    assert main(["inspect", str(files["model"]), "--calib", str(files["calib"]),
                 "--layers"]) == 0
    out = capsys.readouterr().out
    assert "worst layers" in out and "isolated dB" in out


@pytest.mark.parametrize("argv, word", [
    (["--layers"], "--calib"),
    (["--calib", "{calib}"], "--layers"),
    (["--samples", "3"], "--layers"),
    (["--layers", "--calib", "{dir}/missing.npz"], "missing.npz"),
])
def test_inspect_layers_errors(argv, word, files, capsys):
    argv = [a.format(calib=files["calib"], dir=files["dir"]) for a in argv]
    code = main(["inspect", str(files["model"]), *argv])
    assert word in clean_error(code, capsys)


def test_inspect_layers_rejects_tflite(files, capsys):
    code = main(["inspect", str(files["int8"]), "--calib", str(files["calib"]), "--layers"])
    assert "ONNX" in clean_error(code, capsys)


# -- export --c ----------------------------------------------------------------------------

def test_export_c(files, capsys, tmp_path):
    from microquant.export.c import export_c_cli

    out = tmp_path / "c"
    code, r = run_json(capsys, ["export", str(files["int8"]), "--c", str(out)])
    assert code == 0 and {"model.h", "model.c"} <= {p.name for p in out.iterdir()}
    lib = export_c_cli(files["int8"], tmp_path / "c2")
    assert r["arena_bytes"] == lib["arena_bytes"] and r["const_bytes"] == lib["const_bytes"]
    assert (out / "model.c").read_text() == (tmp_path / "c2" / "model.c").read_text()


def test_export_errors_leave_nothing(files, capsys, tmp_path):
    code = main(["export", str(files["int8"]), "--c", str(tmp_path / "no" / "c")])
    assert "parent directory" in clean_error(code, capsys, tmp_path / "no")
    code = main(["export", str(files["model"]), "--c", str(tmp_path / "c")])
    assert "quantize it first" in clean_error(code, capsys, tmp_path / "c")
    int16 = tmp_path / "m16.tflite"
    assert main(["quantize", str(files["model"]), "--calib", str(files["calib"]),
                 "--scheme", "int16x8", "-o", str(int16)]) == 0
    capsys.readouterr()
    code = main(["export", str(int16), "--c", str(tmp_path / "c")])
    assert "int8" in clean_error(code, capsys, tmp_path / "c")


# -- fit -----------------------------------------------------------------------------------

def test_fit(files, capsys, tmp_path):
    from microquant.targets.fit import fit_cli

    code, r = run_json(capsys, ["fit", str(files["int8"]), "--target", "rp2040",
                                "--target", "stm32g0b1", "--reserve-ram", "64KB",
                                "--plot", str(tmp_path / "mem.png")])
    assert code == 0 and r["targets"] == ["rp2040", "stm32g0b1"]
    assert r["reserve_ram"] == 64 * 1024 and all(row["fits"] for row in r["rows"])
    lib = fit_cli(files["int8"], ["rp2040", "stm32g0b1"], reserve_ram="64KB")
    assert r["rows"] == json.loads(json.dumps(lib["rows"]))
    assert (tmp_path / "mem.png").read_bytes()[:8] == PNG_SIGNATURE
    board = tmp_path / "tiny_board.toml"
    board.write_text('name = "tinyboard"\ncore = "cortex-m0plus"\nclock_mhz = 48\n'
                     'fpu = false\ndsp = false\nflash = "16KB"\nram = "2KB"\n')
    code, r = run_json(capsys, ["fit", str(files["model"]), "--target-file", str(board)])
    assert code == 0 and r["targets"] == ["tinyboard"]
    assert {row["precision"] for row in r["rows"]} == {"float32", "int8 (estimate)"}
    assert not any(row["fits"] for row in r["rows"])  # 16 KB flash: not even the runtime
    assert main(["fit", str(files["int8"]), "--target", "esp32"]) == 0
    assert "fits" in capsys.readouterr().out


@pytest.mark.parametrize("argv, word", [
    (["--target", "arduino_uno_r9"], "unknown target"),
    (["--reserve-ram", "lots"], "RAM reserve"),
    (["--target-file", "{dir}/none.toml"], "not found"),
    (["--plot", "{dir}/mem.svg"], "PNG"),
])
def test_fit_errors(argv, word, files, capsys):
    argv = [a.format(dir=files["dir"]) for a in argv]
    code = main(["fit", str(files["int8"]), *argv])
    assert word in clean_error(code, capsys, files["dir"] / "mem.svg")


def test_usage_errors_are_one_line(capsys):
    assert main(["quantize"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--help" in err[0]


def test_inspect_report_without_layers(files, capsys, tmp_path):
    code, r = run_json(capsys, ["inspect", str(files["int8"]), "--report", str(tmp_path / "r")])
    assert code == 0 and r["html"] == str(tmp_path / "r" / "report.html")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "CONV_2D" in page and "MACs" in page
