"""The ``.tflite`` writer and reader.

Oracles: LiteRT runs our float graphs against independent NumPy references (a wrongly
encoded stride, padding, filter size or activation changes the numbers); TFLM runs
MLCommons' converter-made int8 models before and after a read/write round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb
from conftest import SHARED
from harness import qtensor, single_op_graph
from tflite_cases import FLOAT_CASES, INT8_CASES

from microquant.backends.litert import run_litert
from microquant.backends.tflm import TflmRunner, run_tflm
from microquant.errors import MicroquantError
from microquant.ir.graph import Graph, Node, Tensor
from microquant.ir.tflite_io import read_tflite, write_tflite
from microquant.ir.tflite_ops import RAW_OPTIONS

ALL_CASES = [(f"float_{n}", b) for n, b in FLOAT_CASES] + [(f"int8_{n}", b) for n, b in INT8_CASES]
MLPERF = sorted((SHARED / "models" / "mlperf_tiny").glob("*.reference_int8.tflite"))


def _build(builder):
    out = builder()
    return out[0], out[1]


@pytest.mark.parametrize("name,builder", FLOAT_CASES, ids=[n for n, _ in FLOAT_CASES])
def test_float_graph_matches_numpy_in_litert_and_tflm(name, builder):
    graph, inputs, ref = builder()
    model = write_tflite(graph)
    want = ref(inputs)
    outs = [run_tflm(model, inputs)[0]]
    if name != "conv_2d_nobias":  # LiteRT's CONV_2D insists on a bias; TFLM does not
        outs.append(run_litert(model, inputs)[0])
    for got in outs:
        assert got.dtype == np.float32
        assert got.shape == graph.tensor(graph.outputs[0]).shape
        np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-5, atol=1e-5)


def _assert_same_graph(a: Graph, b: Graph) -> None:
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert a.ops() == b.ops()
    for na, nb in zip(a.nodes, b.nodes, strict=True):
        assert na.inputs == nb.inputs and na.outputs == nb.outputs
        for key, value in na.attrs.items():  # every attr we set survives
            assert nb.attrs[key] == value, (na.op, key)
    for name in {n for node in a.nodes for n in node.inputs + node.outputs if n}:
        ta, tb = a.tensor(name), b.tensor(name)
        assert (ta.shape, ta.dtype) == (tb.shape, tb.dtype), name
        assert ta.is_const == tb.is_const, name
        if ta.is_const:
            np.testing.assert_array_equal(ta.data, tb.data)
        assert (ta.quant is None) == (tb.quant is None), name
        if ta.quant is not None:
            assert ta.quant.same_as(tb.quant) and ta.quant.axis == tb.quant.axis, name


@pytest.mark.parametrize("name,builder", ALL_CASES, ids=[n for n, _ in ALL_CASES])
def test_round_trip_preserves_graph_and_bytes(name, builder):
    graph, _ = _build(builder)
    data = write_tflite(graph)
    back = read_tflite(data)
    _assert_same_graph(graph, back)
    assert write_tflite(back) == data


def test_non_default_attrs_survive():
    g = Graph()
    for n in ("x", "y"):
        g.add_tensor(Tensor(n, (1, 9, 9, 4)))
    attrs = dict(
        filter_h=3, filter_w=5, stride_h=2, stride_w=3, padding="VALID", activation="RELU_N1_TO_1"
    )
    g.nodes.append(Node("MAX_POOL_2D", ["x"], ["y"], dict(attrs)))
    g.inputs, g.outputs = ["x"], ["y"]
    assert read_tflite(write_tflite(g)).nodes[0].attrs == attrs


def _count_buffers_with_data(data: bytes) -> int:
    model = fb.ModelT.InitFromPackedBuf(data, 0)
    return sum(1 for b in model.buffers if b.data is not None and len(b.data))


def test_identical_constants_share_one_buffer_and_activations_none():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = Graph()
    for n in ("x", "h", "y"):
        g.add_tensor(Tensor(n, (1, 4) if n == "x" else (1, 3) if n == "h" else (1, 3)))
    g.add_tensor(Tensor("w1", (3, 4), data=w))
    g.add_tensor(Tensor("w2", (3, 4), data=w.copy()))
    g.tensors["h"].shape = (1, 3)
    g.nodes.append(Node("FULLY_CONNECTED", ["x", "w1", ""], ["h"]))
    g.nodes.append(Node("ADD", ["h", "h"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    data = write_tflite(g)
    assert _count_buffers_with_data(data) == 1
    back = read_tflite(data)
    assert back.nodes[0].inputs == ["x", "w1", ""]  # absent bias stays ""
    np.testing.assert_array_equal(back.tensor("w1").data, w)


def test_op_versions_and_codes():
    graph, _ = dict(INT8_CASES)["conv_2d"]()
    model = fb.ModelT.InitFromPackedBuf(write_tflite(graph), 0)
    (code,) = model.operatorCodes
    assert (code.builtinCode, code.deprecatedBuiltinCode, code.version) == (
        fb.BuiltinOperator.CONV_2D,
        fb.BuiltinOperator.CONV_2D,
        3,
    )
    assert model.buffers[0].data is None  # the empty sentinel
    assert not model.metadata and not model.signatureDefs


@pytest.mark.parametrize(
    "data",
    [b"", b"TFL3", b"\x00" * 64, b"\x10\x00\x00\x00TFL3" + b"\xff" * 40, b"garbage" * 20],
    ids=["empty", "tiny", "zeros", "bad-offsets", "garbage"],
)
def test_corrupt_bytes_raise(data):
    with pytest.raises(MicroquantError):
        read_tflite(data)


def test_truncated_model_raises():
    graph, _ = dict(INT8_CASES)["conv_2d"]()
    data = write_tflite(graph)
    for cut in (len(data) // 4, len(data) // 2, len(data) - 100):
        with pytest.raises(MicroquantError):
            read_tflite(data[:cut])


def _patched_model(mutate) -> bytes:
    graph, _ = dict(INT8_CASES)["relu"]()
    model = fb.ModelT.InitFromPackedBuf(write_tflite(graph), 0)
    mutate(model)
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unknown_and_custom_ops_are_named():
    def unknown(m):
        m.operatorCodes[0].builtinCode = 9999
        m.operatorCodes[0].deprecatedBuiltinCode = 127

    with pytest.raises(MicroquantError, match="9999"):
        read_tflite(_patched_model(unknown))

    def custom(m):
        m.operatorCodes[0].builtinCode = fb.BuiltinOperator.CUSTOM
        m.operatorCodes[0].deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
        m.operatorCodes[0].customCode = "MyFancyOp"

    with pytest.raises(MicroquantError, match="MyFancyOp"):
        read_tflite(_patched_model(custom))


def test_builtin_outside_our_table_round_trips():
    """LEAKY_RELU is no contract op: it is read under its builtin name with its options,
    and written back so LiteRT still computes the same thing."""

    def leaky(m):
        m.operatorCodes[0].builtinCode = fb.BuiltinOperator.LEAKY_RELU
        m.operatorCodes[0].deprecatedBuiltinCode = fb.BuiltinOperator.LEAKY_RELU
        m.operatorCodes[0].version = 1
        opts = fb.LeakyReluOptionsT()
        opts.alpha = 0.25
        op = m.subgraphs[0].operators[0]
        op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.LeakyReluOptions, opts
        for t in m.subgraphs[0].tensors:
            t.type, t.quantization = fb.TensorType.FLOAT32, None

    g = read_tflite(_patched_model(leaky))
    assert g.ops() == ["LEAKY_RELU"] and g.nodes[0].attrs["alpha"] == 0.25
    assert RAW_OPTIONS in g.nodes[0].attrs
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(1, 12)
    data = write_tflite(g)
    assert fb.ModelT.InitFromPackedBuf(data, 0).operatorCodes[0].version == 1
    (y,) = run_litert(data, [x])
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.25 * x), rtol=1e-6)


def test_writer_rejects_bad_graphs():
    x, y = qtensor("x", (1, 4)), qtensor("y", (1, 4))
    with pytest.raises(MicroquantError, match="FOO"):
        write_tflite(single_op_graph("FOO", [x], [y]))
    with pytest.raises(MicroquantError, match="padding"):
        write_tflite(single_op_graph("MAX_POOL_2D", [x], [y], {"filter_h": 1, "filter_w": 1}))
    g = single_op_graph("RELU", [x], [y])
    g.nodes[0].inputs = ["missing"]
    with pytest.raises(MicroquantError, match="missing"):
        write_tflite(g)
    g = single_op_graph("RESHAPE", [x, Tensor("s", (2,), "int32", np.zeros(2, np.int64))], [y])
    with pytest.raises(MicroquantError, match="int64"):
        write_tflite(g)


@pytest.mark.skipif(not MLPERF, reason="shared MLPerf Tiny models not available")
@pytest.mark.parametrize("path", MLPERF, ids=[p.name.split(".")[0] for p in MLPERF])
def test_mlperf_reference_models_rewrite_smaller_and_identical_in_tflm(path):
    original = path.read_bytes()
    graph = read_tflite(original)
    rewritten = write_tflite(graph)
    assert len(rewritten) <= len(original)
    assert write_tflite(read_tflite(rewritten)) == rewritten
    a, b = TflmRunner(original), TflmRunner(rewritten)
    rng = np.random.default_rng(0)
    x_t = graph.tensor(graph.inputs[0])
    for _ in range(3):
        x = rng.integers(-128, 128, size=x_t.shape).astype(x_t.dtype)
        for ya, yb in zip(a.run([x]), b.run([x]), strict=True):
            np.testing.assert_array_equal(ya, yb)
