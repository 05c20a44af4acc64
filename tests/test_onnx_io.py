"""ONNX import/export: static shapes, constants, clear errors, round trip through ONNX Runtime."""

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from microquant.errors import MicroquantError
from microquant.ir.onnx_io import SUPPORTED_ONNX_OPS, load_onnx, to_onnx

CONV_RELU = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
  c = Conv<pads = [1, 1, 1, 1], kernel_shape = [3, 3]>(x, w, b)
  k = Constant<value = float {0.5}>()
  m = Mul(c, k)
  y = Relu(m)
}
"""


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _conv_model() -> onnx.ModelProto:
    m = onnx.parser.parse_model(CONV_RELU)
    rng = np.random.default_rng(0)
    m.graph.initializer.extend(
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        ]
    )
    return m


def test_load_pins_batch_and_infers_shapes(tmp_path):
    g = load_onnx(_save(_conv_model(), tmp_path))
    assert g.inputs == ["x"] and g.outputs == ["y"]
    assert g.tensor("x").shape == (1, 3, 8, 8)
    assert g.tensor("c").shape == (1, 4, 8, 8) and g.tensor("y").shape == (1, 4, 8, 8)
    assert g.ops() == ["Conv", "Mul", "Relu"]
    assert g.tensor("w").is_const and g.tensor("w").shape == (4, 3, 3, 3)
    # The Constant node became a constant tensor.
    assert g.tensor("k").is_const and float(g.tensor("k").data) == 0.5
    conv = g.nodes[0]
    assert conv.attrs == {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
    assert g.meta["opset"] == 17


def test_to_onnx_round_trip_matches_onnxruntime(tmp_path):
    model = _conv_model()
    g = load_onnx(_save(model, tmp_path))
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    exported = to_onnx(g, outputs=["y", "c"])
    onnx.checker.check_model(exported)
    y, c = ort.InferenceSession(exported.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(y, ref)
    assert c.shape == (1, 4, 8, 8) and np.array_equal(np.maximum(c * 0.5, 0), y)


def test_string_and_tensor_attributes_round_trip(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 5, 5] x) => (float[1, 2, 5, 5] y) {
      y = AveragePool<auto_pad = "SAME_UPPER", kernel_shape = [3, 3]>(x)
    }""")
    g = load_onnx(_save(m, tmp_path))
    assert g.nodes[0].attrs["auto_pad"] == "SAME_UPPER"
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(to_onnx(g).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(MicroquantError, match="not found"):
        load_onnx(tmp_path / "nope.onnx")


def test_empty_file(tmp_path):
    p = tmp_path / "e.onnx"
    p.write_bytes(b"")
    with pytest.raises(MicroquantError, match="empty"):
        load_onnx(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "c.onnx"
    p.write_bytes(b"\x00\xffthis is not a protobuf at all\xff" * 10)
    with pytest.raises(MicroquantError, match="not a valid ONNX model"):
        load_onnx(p)


def test_old_opset_rejected(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 7, opset_import: ["" : 11]>
    g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }""")
    with pytest.raises(MicroquantError, match="opset 11"):
        load_onnx(_save(m, tmp_path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initializer_named(tmp_path, bad):
    m = _conv_model()
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[0, 0, 0, 0] = bad
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    with pytest.raises(MicroquantError, match="'w'.*NaN or Inf"):
        load_onnx(_save(m, tmp_path))


def test_unsupported_op_names_op_node_and_supported_list(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) { y = Elu(x) }""")
    m.graph.node[0].name = "my_elu"
    with pytest.raises(MicroquantError) as e:
        load_onnx(_save(m, tmp_path))
    msg = str(e.value)
    assert "Elu" in msg and "my_elu" in msg and "Conv" in msg and "\n" not in msg
    assert all(op in msg for op in SUPPORTED_ONNX_OPS)


def test_uninferable_shape(tmp_path):
    # The reshape target comes from a graph input: no static shape exists.
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x, int64[2] s) => (float[a, b] y) { y = Reshape(x, s) }""")
    with pytest.raises(MicroquantError, match="static shape|shape inference"):
        load_onnx(_save(m, tmp_path))


def test_symbolic_non_batch_dim_rejected(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, T] x) => (float[N, T] y) { y = Relu(x) }""")
    with pytest.raises(MicroquantError, match="symbolic dimension 1"):
        load_onnx(_save(m, tmp_path))


def test_initializer_listed_as_input_is_constant(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    b = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        "g",
        [x, b],
        [y],
        [numpy_helper.from_array(np.array([1, 2], np.float32), "b")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    g = load_onnx(_save(m, tmp_path))
    assert g.inputs == ["x"] and g.tensor("b").is_const


def test_dangling_input_named(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) { y = Add(x, x) }""")
    m.graph.node[0].input[1] = "nothere"
    with pytest.raises(MicroquantError, match="'nothere'"):
        load_onnx(_save(m, tmp_path))
