"""``calibrate``: ONNX Runtime over the samples, ranges keyed by lowered tensor names;
and the whole float -> int8 path against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tiny_models
from conftest import SHARED
from onnx import TensorProto, helper, numpy_helper

from microquant.errors import MicroquantError
from microquant.ir.graph import Graph
from microquant.ir.onnx_io import graph_from_model, load_onnx
from microquant.quant.calib_data import load_calibration
from microquant.quant.calibrate import calibrate
from microquant.quant.observers import OBSERVERS
from microquant.quant.primitives import dequantize, quantize
from microquant.quant.quantize import quantize_graph
from microquant.runtime.evaluator import Evaluator

RNG = np.random.default_rng(5)
W = RNG.normal(size=(6, 4)).astype(np.float32)
C = np.array([0.5, -1.0, 2.0, 0.0], np.float32)


def mlp_model() -> onnx.ModelProto:
    """x[N,6] -> MatMul(W) -> h -> Relu -> r -> Add(C) -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Add", ["r", "C"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(C, "C")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def fake_lowered(source: dict[str, str]) -> Graph:
    """Only ``meta['calib_source']`` matters to calibrate."""
    return Graph(meta={"calib_source": source})


SOURCE = {"L_x": "x", "L_h": "h", "L_r": "r", "L_r_copy": "r", "L_y": "y"}


@pytest.fixture(scope="module")
def mlp():
    x = RNG.normal(size=(40, 6)).astype(np.float32) * 2
    h = x @ W
    r = np.maximum(h, 0)
    y = r + C
    return graph_from_model(mlp_model()), {"x": x}, {"x": x, "h": h, "r": r, "y": y}


def test_minmax_matches_numpy_and_maps_names(mlp):
    g, calib, values = mlp
    ranges = calibrate(g, fake_lowered(SOURCE), calib, "minmax", progress=False)
    assert set(ranges) == set(SOURCE)
    for low, src in SOURCE.items():
        v = values[src]
        want = (min(float(v.min()), 0.0), max(float(v.max()), 0.0))
        assert ranges[low] == pytest.approx(want, rel=1e-5), low
    assert ranges["L_r"][0] == 0.0


def test_samples_with_batch_dim(mlp):
    """load_calibration returns (N, 1, 6); plain (N, 6) also works."""
    g, calib, _ = mlp
    a = calibrate(g, fake_lowered(SOURCE), {"x": calib["x"][:, None, :]}, progress=False)
    b = calibrate(g, fake_lowered(SOURCE), calib, progress=False)
    assert a == b


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_every_method_within_minmax(mlp, method):
    g, calib, _ = mlp
    mm = calibrate(g, fake_lowered(SOURCE), calib, "minmax", progress=False)
    r = calibrate(g, fake_lowered(SOURCE), calib, method, progress=True)
    for k, (lo, hi) in r.items():
        assert mm[k][0] - 1e-6 <= lo <= 0.0 <= hi <= mm[k][1] + 1e-6, (k, lo, hi)


def test_errors(mlp):
    g, calib, _ = mlp
    with pytest.raises(MicroquantError, match="unknown calibration method 'kl'"):
        calibrate(g, fake_lowered(SOURCE), calib, "kl")
    with pytest.raises(MicroquantError, match="no calibration data for model input 'x'"):
        calibrate(g, fake_lowered(SOURCE), {"z": calib["x"]})
    with pytest.raises(MicroquantError, match="no calib_source"):
        calibrate(g, Graph(), calib)
    with pytest.raises(MicroquantError, match="'nope', absent from the ONNX graph"):
        calibrate(g, fake_lowered({"a": "nope"}), calib)
    with pytest.raises(MicroquantError, match=r"shape \(5,\), expected \(1, 6\)"):
        calibrate(g, fake_lowered(SOURCE), {"x": calib["x"][:, :5]})
    with pytest.raises(MicroquantError, match="same, nonzero number of samples"):
        calibrate(g, fake_lowered(SOURCE), {"x": calib["x"][:0]})


# -- the whole path: ONNX -> lower -> calibrate -> quantize -> reference runtime --------
def run_int8(q: Graph, x: np.ndarray) -> np.ndarray:
    t_in, t_out = q.tensor(q.inputs[0]), q.tensor(q.outputs[0])
    x = x.reshape(t_in.shape)
    if t_in.dtype == "int8":
        x = quantize(x, t_in.quant.scale, t_in.quant.zero_point)
    y = Evaluator(q).run([x])[0]
    if t_out.dtype == "int8":
        y = dequantize(y, t_out.quant.scale, t_out.quant.zero_point)
    return y


def end_to_end(
    path, calib: dict[str, np.ndarray], test_x: np.ndarray, method: str, float_io: bool = False
) -> tuple[float, float]:
    """(SQNR in dB of the int8 outputs vs onnxruntime, top-1 agreement)."""
    from microquant.passes import lower, normalize

    g = normalize(load_onnx(path))
    lowered = lower(g)
    q = quantize_graph(
        lowered, calibrate(g, lowered, calib, method, progress=False), float_io=float_io
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    shape = g.tensor(g.inputs[0]).shape
    refs, gots = [], []
    for x in test_x:
        refs.append(sess.run(None, {name: x.reshape(shape)})[0].ravel())
        gots.append(run_int8(q, x).ravel())
    ref, got = np.array(refs), np.array(gots)
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    return float(sqnr), float(np.mean(ref.argmax(1) == got.argmax(1)))


@pytest.mark.parametrize(
    "method,float_io", [("minmax", False), ("entropy", True), ("mse", False), ("percentile", True)]
)
def test_tiny_model_end_to_end(tmp_path, method, float_io):
    path = tiny_models.tiny_onnx(tmp_path / "tiny.onnx")
    data = load_calibration(
        tiny_models.calib_npz(tmp_path / "c.npz", n=64),
        [tiny_models.INPUT],
        [(1, *tiny_models.IN_SHAPE)],
    )
    sqnr, top1 = end_to_end(path, data, tiny_models.samples(16, seed=99), method, float_io)
    assert sqnr > 25.0 and top1 >= 0.9, (sqnr, top1)


KWS = SHARED / "models" / "mlperf_tiny" / "kws_dscnn.onnx"
KWS_DATA = SHARED / "data" / "kws01_calib.npz"


@pytest.mark.skipif(not (KWS.is_file() and KWS_DATA.is_file()), reason="no shared models")
def test_kws_end_to_end():
    g = load_onnx(KWS)
    data = load_calibration(KWS_DATA, g.inputs, [g.tensor(g.inputs[0]).shape])
    x = data[g.inputs[0]]
    sqnr, top1 = end_to_end(KWS, {g.inputs[0]: x[:150]}, x[150:], "minmax")
    assert sqnr > 20.0 and top1 >= 0.9, (sqnr, top1)


class _FakeTTY:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_only_on_a_tty_when_asked(mlp, monkeypatch, progress):
    g, calib, _ = mlp
    fake = _FakeTTY()
    monkeypatch.setattr("sys.stderr", fake)
    calibrate(g, fake_lowered(SOURCE), calib, progress=progress)
    assert ("calibrating" in fake.text) == progress
