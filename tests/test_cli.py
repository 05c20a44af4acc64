"""The ``microquant`` CLI contract: commands, ``--json`` output, exit codes, error handling.

Pipeline checks use a tiny ONNX model built here: quantize -> verify (our runtime vs TFLite
Micro, bit-exact) -> eval (int8 in TFLM vs float in ONNX Runtime) -> inspect.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tiny_models as tm

from microquant.cli import main


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model = tm.tiny_onnx(d / "tiny.onnx")
    calib = tm.calib_npz(d / "calib.npz", n=24)
    # Labels = the float model's own top-1, so float accuracy is 1 and int8 accuracy is
    # the int8/float agreement.
    x = tm.samples(40, seed=5)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    y = sess.run(None, {tm.INPUT: x})[0].argmax(1)
    np.savez(d / "data.npz", x=x, y=y)
    tflite = d / "tiny.tflite"
    code = main(["quantize", str(model), "--calib", str(calib), "-o", str(tflite)])
    assert code == 0 and tflite.is_file()
    return {"dir": d, "model": model, "calib": calib, "data": d / "data.npz", "tflite": tflite}


def test_quantize_json(files, capsys):
    out = files["dir"] / "q.tflite"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                                "--calibration", "minmax", "-o", str(out)])
    assert code == 0
    assert r["output"] == str(out) and r["bytes"] == out.stat().st_size
    assert r["calibration"] == "minmax"
    assert r["inputs"][0]["dtype"] == "int8" and r["outputs"][0]["dtype"] == "int8"
    assert "CONV_2D" in r["ops"] and "FULLY_CONNECTED" in r["ops"]
    assert out.read_bytes()[4:8] == b"TFL3"


def test_verify_bit_exact(files, capsys):
    code, r = run_json(capsys, ["verify", str(files["tflite"]), "--data", str(files["data"])])
    assert code == 0
    assert r["total"] == 40 and r["bit_exact"] == r["total"] and r["max_abs_diff"] == 0
    code, r = run_json(capsys, ["verify", str(files["tflite"]), "--random", "8"])
    assert code == 0 and r["total"] == 8 and r["bit_exact"] == 8
    assert 0 <= r["litert_agree_with_tflm"] <= 8


def test_eval_int8_matches_float(files, capsys):
    code, q = run_json(capsys, ["eval", str(files["tflite"]), "--data", str(files["data"])])
    assert code == 0 and q["runtime"] == "tflm" and q["samples"] == 40
    code, f = run_json(capsys, ["eval", str(files["model"]), "--data", str(files["data"]),
                                "--runtime", "ort"])
    assert code == 0 and f["accuracy"] == 1.0
    assert q["accuracy"] >= 0.85  # int8 top-1 agrees with float on most samples
    # Dequantized int8 probabilities track the float ones.
    assert abs(q["outputs"][0]["mean"] - f["outputs"][0]["mean"]) < 0.02
    assert abs(q["outputs"][0]["max"] - f["outputs"][0]["max"]) < 0.1


def test_eval_reference_equals_tflm(files, capsys):
    _, a = run_json(capsys, ["eval", str(files["tflite"]), "--data", str(files["data"]),
                             "--runtime", "reference"])
    _, b = run_json(capsys, ["eval", str(files["tflite"]), "--data", str(files["data"]),
                             "--runtime", "tflm"])
    assert a["outputs"] == b["outputs"] and a["accuracy"] == b["accuracy"]


def test_inspect_tflite_and_onnx(files, capsys):
    code, r = run_json(capsys, ["inspect", str(files["tflite"])])
    assert code == 0 and r["format"] == "tflite"
    conv = next(row for row in r["layers"] if row["op"] == "CONV_2D")
    assert conv["macs"] == 6 * 6 * 4 * 27
    assert conv["params"]["padding"] == "SAME" and conv["params"]["activation"] == "RELU"
    assert conv["weight_quant"]["channels"] == 4
    assert "scale" in conv["output_quant"][0]
    code, r = run_json(capsys, ["inspect", str(files["model"])])
    assert code == 0 and r["format"] == "onnx"
    assert r["summary"]["macs"] == 6 * 6 * 4 * 27 + 36 * tm.CLASSES


def test_human_output_is_a_table(files, capsys):
    assert main(["inspect", str(files["tflite"])]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out and "MACs" in out and not out.lstrip().startswith("{")


def test_float_io_and_c_array(files, capsys, tmp_path):
    out = tmp_path / "fio.tflite"
    code, r = run_json(capsys, ["quantize", str(files["model"]), "--calib", str(files["calib"]),
                                "--float-io", "--c-array", str(tmp_path), "-o", str(out)])
    assert code == 0
    assert r["inputs"][0]["dtype"] == "float32" and r["outputs"][0]["dtype"] == "float32"
    assert r["c_array"] and all((tmp_path / p).exists() for p in r["c_array"])
    code, v = run_json(capsys, ["verify", str(out), "--data", str(files["data"])])
    assert code == 0 and v["bit_exact"] == v["total"]


def test_subprocess_quantize_and_error(files, tmp_path):
    out = tmp_path / "sub.tflite"
    cmd = [sys.executable, "-m", "microquant"]
    p = subprocess.run([*cmd, "quantize", str(files["model"]), "--calib", str(files["calib"]),
                        "-o", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["bytes"] == out.stat().st_size
    p = subprocess.run([*cmd, "verify", str(tmp_path / "missing.tflite")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.startswith("error:") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_argparse_errors_exit_2(capsys):
    assert main(["quantize", "m.onnx"]) == 2  # --calib and -o missing
    assert main(["nonsense"]) == 2
    assert main(["verify", "m.tflite", "--random", "0"]) == 2
    capsys.readouterr()
    assert main(["--help"]) == 0
    assert "quantize" in capsys.readouterr().out


# -- bad inputs: exit 2, one `error:` line, no traceback, no output file ----------------

def _bad_model(kind: str, d, files):
    p = d / "bad.onnx"
    if kind == "missing":
        return d / "nope.onnx"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "corrupt":
        p.write_bytes(files["model"].read_bytes()[:200] + bytes(range(256)) * 4)
    elif kind == "text":
        p.write_text("this is not a model\njust some text\n")
    elif kind == "unsupported_op":
        tm.tiny_onnx(p, extra_op="Erf")
    elif kind == "nan_weights":
        tm.tiny_onnx(p, nan_weights=True)
    return p


def _bad_calib(kind: str, d):
    p = d / "badcalib.npz"
    if kind == "wrong_key":
        np.savez(p, images=tm.samples(4))
    elif kind == "wrong_shape":
        np.savez(p, x=np.zeros((4, 6, 6, 3), np.float32))
    elif kind == "wrong_dtype":
        np.savez(p, x=np.zeros((4, *tm.IN_SHAPE), np.int32))
    elif kind == "no_arrays":
        np.savez(p)
    elif kind == "not_npz":
        p.write_text("1,2,3\n")
    return p


# kind -> a word the one-line message must contain (so the right check fired).
MODEL_CASES = {"missing": "not found", "empty": "empty", "corrupt": "not a valid ONNX",
               "text": "not a valid ONNX", "unsupported_op": "Erf", "nan_weights": "NaN"}
CALIB_CASES = {"wrong_key": "no array for input", "wrong_shape": "shape",
               "wrong_dtype": "dtype", "no_arrays": "no arrays", "not_npz": ".npz"}


def _assert_clean_error(code: int, capsys, out) -> str:
    cap = capsys.readouterr()
    assert code == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert "Traceback" not in cap.err and cap.out == ""
    assert not out.exists()
    assert not list(out.parent.glob(".*.tmp"))  # no temp file left either
    return lines[0]


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_bad_model(kind, files, capsys, tmp_path):
    model = _bad_model(kind, tmp_path, files)
    out = tmp_path / "out.tflite"
    code = main(["quantize", str(model), "--calib", str(files["calib"]), "-o", str(out)])
    assert MODEL_CASES[kind] in _assert_clean_error(code, capsys, out)


@pytest.mark.parametrize("kind", CALIB_CASES)
def test_bad_calib(kind, files, capsys, tmp_path):
    calib = _bad_calib(kind, tmp_path)
    out = tmp_path / "out.tflite"
    code = main(["quantize", str(files["model"]), "--calib", str(calib), "-o", str(out)])
    assert CALIB_CASES[kind] in _assert_clean_error(code, capsys, out)


def test_output_in_missing_directory(files, capsys, tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "out.tflite"
    code = main(["quantize", str(files["model"]), "--calib", str(files["calib"]), "-o", str(out)])
    msg = _assert_clean_error(code, capsys, out)
    assert "directory" in msg


@pytest.mark.parametrize("argv", [
    ["eval", "{model}", "--data", "{dir}/missing.npz"],
    ["eval", "{tflite}", "--data", "{data}", "--runtime", "ort"],
    ["eval", "{model}", "--data", "{data}", "--runtime", "tflm"],
    ["verify", "{model}"],
    ["verify", "{dir}/text.tflite"],
    ["inspect", "{dir}/missing.onnx"],
])
def test_other_command_errors(argv, files, capsys):
    (files["dir"] / "text.tflite").write_text("not a flatbuffer")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code = main(argv)
    _assert_clean_error(code, capsys, files["dir"] / "never-written")


def test_c_array_missing_directory_writes_nothing(files, capsys, tmp_path):
    out = tmp_path / "out.tflite"
    code = main(["quantize", str(files["model"]), "--calib", str(files["calib"]),
                 "--c-array", str(tmp_path / "nope"), "-o", str(out)])
    assert "C array directory" in _assert_clean_error(code, capsys, out)


def test_eval_rejects_bad_labels(files, capsys, tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x=tm.samples(6), y=np.zeros(5, np.int64))
    code = main(["eval", str(files["tflite"]), "--data", str(data)])
    assert "labels 'y'" in _assert_clean_error(code, capsys, tmp_path / "never-written")
