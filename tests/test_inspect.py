"""Per-layer inspection rows and the text table formatter."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from microquant.ir.graph import Graph, Node, QuantParams, Tensor
from microquant.report.inspect import display_rows, layer_rows, summary
from microquant.report.table import format_kv, format_table


def _graph() -> Graph:
    g = Graph(inputs=["x"], outputs=["y"])
    w = np.arange(-4, 4, dtype=np.int8).reshape(2, 1, 2, 2)  # [Co=2, kh=1, kw=2, Ci=2]
    g.add_tensor(Tensor("x", (1, 5, 5, 2), "int8", quant=QuantParams([0.5], [3])))
    g.add_tensor(Tensor("w", (2, 1, 2, 2), "int8", w, QuantParams([0.1, 0.2], [0, 0], 0)))
    g.add_tensor(Tensor("b", (2,), "int32", np.zeros(2, np.int32)))
    g.add_tensor(Tensor("h", (1, 3, 2, 2), "int8", quant=QuantParams([0.25], [-1])))
    g.add_tensor(Tensor("dw", (1, 3, 3, 2), "int8", np.ones((1, 3, 3, 2), np.int8),
                        QuantParams([0.5, 0.5], [0, 0], 3)))
    g.add_tensor(Tensor("d", (1, 3, 2, 2), "int8", quant=QuantParams([0.25], [-1])))
    g.add_tensor(Tensor("f", (1, 12), "int8", quant=QuantParams([0.25], [-1])))
    g.add_tensor(Tensor("shape", (2,), "int32", np.array([1, 12], np.int32)))
    g.add_tensor(Tensor("fw", (4, 12), "int8", np.full((4, 12), -2, np.int8),
                        QuantParams([0.01], [0], 0)))
    g.add_tensor(Tensor("y", (1, 4), "int8", quant=QuantParams([0.1], [5])))
    g.nodes += [
        Node("CONV_2D", ["x", "w", "b"], ["h"], {"stride_h": 2, "stride_w": 3, "dilation_h": 1,
             "dilation_w": 1, "padding": "VALID", "activation": "RELU"}, "conv"),
        Node("DEPTHWISE_CONV_2D", ["h", "dw", ""], ["d"], {"stride_h": 1, "stride_w": 1,
             "dilation_h": 2, "dilation_w": 2, "padding": "SAME", "activation": "NONE",
             "depth_multiplier": 1}, "dw"),
        Node("RESHAPE", ["d", "shape"], ["f"], {}, "flat"),
        Node("FULLY_CONNECTED", ["f", "fw", ""], ["y"], {"activation": "NONE"}, "fc"),
    ]
    return g


def test_macs_params_and_quant():
    rows = layer_rows(_graph())
    conv, dw, reshape, fc = rows
    assert conv["macs"] == 3 * 2 * 2 * (1 * 2 * 2)  # outputs x kh x kw x Ci
    assert dw["macs"] == 3 * 2 * 2 * (3 * 3)
    assert reshape["macs"] == 0 and "weight_min" not in reshape
    assert fc["macs"] == 4 * 12
    assert conv["params"] == {"stride": "2x3", "padding": "VALID", "activation": "RELU"}
    assert dw["params"]["dilation"] == "2x2" and "activation" not in dw["params"]
    # Dequantized per-channel weights: channel 0 = 0.1 * [-4..-1], channel 1 = 0.2 * [0..3].
    assert conv["weight_min"] == pytest.approx(-0.4) and conv["weight_max"] == pytest.approx(0.6)
    assert fc["weight_min"] == fc["weight_max"] == pytest.approx(-0.02)
    assert conv["weight_quant"] == {"scale_min": pytest.approx(0.1), "scale_max":
                                    pytest.approx(0.2), "channels": 2, "axis": 0}
    assert conv["input_quant"] == [{"scale": 0.5, "zero_point": 3}]
    assert fc["output_quant"] == [{"scale": pytest.approx(0.1), "zero_point": 5}]
    assert reshape["input_shapes"] == [[1, 3, 2, 2]]  # constant shape operand not listed


def test_summary_and_display():
    g = _graph()
    s = summary(g)
    assert s["layers"] == 4 and s["macs"] == 48 + 108 + 48
    assert s["parameters"] == 8 + 2 + 18 + 2 + 48
    text = format_table(display_rows(layer_rows(g)))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["#", "op", "input"]
    assert "stride=2x3 padding=VALID activation=RELU" in text
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule have one width


def test_format_table_alignment():
    text = format_table([{"name": "a", "n": 5, "v": 0.123456}, {"name": "long", "n": 12345,
                                                                 "v": None}])
    lines = text.splitlines()
    assert lines[0] == "name      n       v"
    assert lines[2] == "a         5  0.1235"
    assert lines[3] == "long  12345       -"
    assert format_table([]) == "(empty)"
    assert format_kv({"a": 1, "bbb": True}) == "a    1\nbbb  yes"


MODELS = SHARED / "models" / "mlperf_tiny"


@pytest.mark.skipif(not MODELS.is_dir(), reason="needs /work/shared")
@pytest.mark.parametrize("name", ["kws_dscnn", "ic_resnet8"])
def test_reference_tflite_matches_litert(name):
    """Ops, shapes and quantization of a converter-made .tflite agree with LiteRT's view."""
    from ai_edge_litert.interpreter import Interpreter

    from microquant.api import inspect

    path = MODELS / f"{name}.reference_int8.tflite"
    rows = inspect(path)
    interp = Interpreter(model_path=str(path))
    ops = interp._get_ops_details()
    assert [r["op"] for r in rows] == [o["op_name"] for o in ops]
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    for row, op in zip(rows, ops, strict=True):
        out = tensors[int(op["outputs"][0])]
        assert row["output_shapes"][0] == list(out["shape"])
        scale, zp = out["quantization"]
        assert row["output_quant"][0]["scale"] == pytest.approx(scale)
        assert row["output_quant"][0]["zero_point"] == zp


@pytest.mark.skipif(not MODELS.is_dir(), reason="needs /work/shared")
def test_onnx_inspect_lowers_kws():
    from microquant.api import inspect

    rows = inspect(MODELS / "kws_dscnn.onnx")
    ops = [r["op"] for r in rows]
    assert ops.count("DEPTHWISE_CONV_2D") == 4 and "FULLY_CONNECTED" in ops
    assert all("output_quant" not in r for r in rows)  # float graph: no quantization
