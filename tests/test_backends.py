"""TFLM and LiteRT backends on our written int8 graphs.

LiteRT's reference kernels and TFLM's kernels are independent implementations of the same
int8 semantics; on these single-op graphs they agree bit for bit, which checks that the
writer's quantization parameters, attrs and op versions mean the same thing to both.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED
from harness import qtensor, random_int, single_op_graph
from tflite_cases import INT8_CASES

from microquant.backends.litert import LiteRTRunner, run_litert
from microquant.backends.tflm import TflmRunner, run_tflm
from microquant.errors import MicroquantError
from microquant.ir.graph import Tensor
from microquant.ir.tflite_io import write_tflite

KWS = SHARED / "models" / "mlperf_tiny" / "kws_dscnn.reference_int8.tflite"


@pytest.mark.parametrize("name,builder", INT8_CASES, ids=[n for n, _ in INT8_CASES])
def test_int8_single_op_tflm_equals_litert(name, builder):
    graph, inputs = builder()
    model = write_tflite(graph)
    (a,) = run_tflm(model, inputs)
    (b,) = run_litert(model, inputs)
    out = graph.tensor(graph.outputs[0])
    assert a.dtype == b.dtype == np.dtype(out.dtype)
    assert a.shape == b.shape == out.shape
    np.testing.assert_array_equal(a, b)
    assert np.unique(a).size > 1  # not a degenerate (saturated/constant) output


def test_runner_reuses_interpreter_and_matches_one_shot():
    graph, inputs = dict(INT8_CASES)["conv_2d"]()
    model = write_tflite(graph)
    tflm, litert = TflmRunner(model), LiteRTRunner(model)
    outs = []
    for seed in range(3):
        x = random_int(inputs[0].shape, seed=seed)
        (y,) = tflm.run([x])
        np.testing.assert_array_equal(y, run_tflm(model, [x])[0])
        np.testing.assert_array_equal(y, litert.run([x])[0])
        outs.append(y)
    assert not np.array_equal(outs[0], outs[1])  # returned arrays are copies, not one buffer


def test_arena_grows_for_large_activations():
    shape = (1, 256, 512, 8)  # 1 MiB in + 1 MiB out: more than the initial arena
    graph = single_op_graph("RELU", [qtensor("x", shape, 0.1, 0)], [qtensor("y", shape, 0.1, 0)])
    runner = TflmRunner(write_tflite(graph))
    assert runner.arena_size > 2 * np.prod(shape)
    x = random_int(shape)
    np.testing.assert_array_equal(runner.run([x])[0], np.maximum(x, 0))


def test_input_mistakes_raise():
    graph, inputs = dict(INT8_CASES)["add"]()
    model = write_tflite(graph)
    for runner in (TflmRunner(model), LiteRTRunner(model)):
        with pytest.raises(MicroquantError, match="2 inputs"):
            runner.run(inputs[:1])
        with pytest.raises(MicroquantError, match="int8"):
            runner.run([inputs[0].astype(np.float32), inputs[1]])
        with pytest.raises(MicroquantError, match="shape"):
            runner.run([inputs[0][..., :2], inputs[1]])


def test_kernel_rejection_is_reported_with_reason():
    a, b = qtensor("a", (1, 2, 3)), qtensor("b", (1, 2, 3))
    graph = single_op_graph(
        "CONCATENATION", [a, b], [qtensor("y", (1, 4, 3))], {"axis": 1, "activation": "RELU"}
    )
    model = write_tflite(graph)
    with pytest.raises(MicroquantError, match="CONCATENATION"):
        TflmRunner(model)
    with pytest.raises(MicroquantError, match="CONCATENATION"):
        LiteRTRunner(model)


@pytest.mark.parametrize("backend", [run_tflm, run_litert])
def test_corrupt_model_raises(backend):
    with pytest.raises(MicroquantError):
        backend(b"definitely not a flatbuffer", [np.zeros((1, 4), np.int8)])


def test_float_oracle_runs_in_litert():
    x = Tensor("x", (1, 5), "float32")
    graph = single_op_graph("LOGISTIC", [x], [Tensor("y", (1, 5), "float32")])
    v = np.linspace(-3, 3, 5, dtype=np.float32).reshape(1, 5)
    np.testing.assert_allclose(
        run_litert(write_tflite(graph), [v])[0], 1 / (1 + np.exp(-v)), rtol=1e-6
    )


@pytest.mark.skipif(not KWS.exists(), reason="shared MLPerf Tiny models not available")
def test_reference_kws_model_runs_on_real_data():
    data = np.load(SHARED / "data" / "kws01_calib.npz")
    runner = TflmRunner(KWS.read_bytes())
    q = runner._inputs[0]["quantization_parameters"]
    scale, zp = float(q["scales"][0]), int(q["zero_points"][0])
    correct = 0
    for x, y in zip(data["x"][:20], data["y"][:20], strict=True):
        xq = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)[None]
        correct += int(np.argmax(runner.run([xq])[0]) == y)
    assert correct >= 15  # the MLCommons model is ~90% accurate on this data
