"""Quantized ONNX export: ONNX Runtime runs every scheme, the static QDQ model fuses into
integer kernels, and the 7-bit default cannot saturate AVX2's vpmaddubsw."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_export_models import (
    cnn,
    cosine,
    encoder,
    mlp,
    no_weights_model,
    normalized,
    reduce_mean_model,
    run,
    samples,
    session,
    sqnr_db,
)

from microquant.errors import MicroquantError
from microquant.export.onnx_qdq import (
    activation_ranges,
    export_qdq,
    onnx_ranges,
    quantize_to_onnx,
    save_onnx,
)
from microquant.quant.schemes_onnx.qdq import max_pair_sum


def _calibrated(model, n: int = 32):
    g = normalized(model)
    return g, activation_ranges(g, {g.inputs[0]: samples(g, n, seed=100)})


def _fused_ops(model: onnx.ModelProto, tmp_path) -> Counter:
    path = str(tmp_path / "optimized.onnx")
    session(model, optimized_path=path)
    return Counter(n.op_type for n in onnx.load(path).graph.node)


def _int8_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    """int8 initializers of rank >= 2 (the quantized Conv/Gemm/MatMul weights)."""
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return [a for a in arrays if a.dtype == np.int8 and a.ndim >= 2]


# --- int8 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [cnn, mlp, encoder])
def test_int8_close_to_float_and_runs_integer_kernels(make, tmp_path):
    g, ranges = _calibrated(make())
    q = export_qdq(g, ranges, "int8")
    xs = samples(g, 8, seed=200)
    assert sqnr_db(run(make(), xs), run(q, xs)) > 25
    ops = _fused_ops(q, tmp_path)
    # every Conv / Gemm / MatMul became an integer kernel (no float one left)
    assert not {"Conv", "Gemm", "MatMul"} & set(ops), ops
    assert ops["QLinearConv"] + ops["QGemm"] + ops["QLinearMatMul"] >= 3


def test_int8_keeps_io_names_and_model_opset():
    g, ranges = _calibrated(cnn())
    q = export_qdq(g, ranges, "int8")
    assert [i.name for i in q.graph.input] == ["x"]
    assert [o.name for o in q.graph.output] == ["y"]
    assert q.opset_import[0].version == 17
    onnx.checker.check_model(q, full_check=True)


def test_int8_default_weights_are_7_bit_and_8_bit_on_request():
    g, ranges = _calibrated(cnn())
    default = _int8_weights(export_qdq(g, ranges, "int8"))
    full = _int8_weights(export_qdq(g, ranges, "int8", reduce_range=False))
    assert len(default) == len(full) == 4
    assert max(int(np.abs(w).max()) for w in default) == 63
    assert max(int(np.abs(w).max()) for w in full) == 127


def _vpmaddubsw(a_u8: np.ndarray, w_s8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AVX2 ``vpmaddubsw``: adjacent u8*s8 products summed, saturated to int16.
    Returns (saturated, exact) pair sums along the last axis (even length)."""
    prod = a_u8.astype(np.int32) * w_s8.astype(np.int32)
    exact = prod[..., 0::2] + prod[..., 1::2]
    return np.clip(exact, -32768, 32767), exact


def test_default_weights_cannot_saturate_avx2_pair_sums():
    """Emulate ORT's u8s8 inner product on AVX2 without VNNI with the exported weights and
    adversarial activations (255 where the weight is positive / negative / everywhere)."""
    lo, hi = max_pair_sum()
    assert -32768 <= lo and hi <= 32767
    g, ranges = _calibrated(mlp((256, 128, 64)))
    for reduce_range, must_saturate in ((None, False), (False, True)):
        q = export_qdq(g, ranges, "int8", reduce_range=reduce_range)
        clipped = 0
        for w in _int8_weights(q):
            rows = w.reshape(w.shape[0], -1)  # [C, K]: one inner product per row
            for a in (255 * (rows > 0), 255 * (rows < 0), np.full(rows.shape, 255)):
                sat, exact = _vpmaddubsw(a.astype(np.uint8), rows)
                clipped += int((sat != exact).sum())
        assert (clipped > 0) == must_saturate, (reduce_range, clipped)


def test_int8_bias_fits_int32_for_dead_channels():
    """A channel whose weights are ~0 (BatchNorm folding of a dead channel) but whose bias
    is not: the weight scale is raised so that bias / (x_scale * w_scale) fits int32."""
    model = cnn()
    w = next(t for t in model.graph.initializer if t.name == "w1")
    arr = numpy_helper.to_array(w).copy()
    arr[0] = 1e-30
    w.CopyFrom(numpy_helper.from_array(arr, "w1"))
    g, ranges = _calibrated(model)
    q = export_qdq(g, ranges, "int8")
    xs = samples(g, 4, seed=200)
    assert sqnr_db(run(model, xs), run(q, xs)) > 25


def test_onnx_ranges_maps_lowered_names_back():
    from microquant.passes import lower
    from microquant.quant.calibrate import calibrate

    g = normalized(cnn())
    lowered = lower(g.copy())
    ranges = calibrate(g, lowered, {"x": samples(g, 8)}, progress=False)
    mapped = onnx_ranges(lowered, ranges)
    assert mapped and set(mapped) <= set(g.tensors)
    q = export_qdq(g, mapped, "int8")
    xs = samples(g, 4, seed=200)
    assert sqnr_db(run(cnn(), xs), run(q, xs)) > 20


# --- int16 / fp16 / dynamic --------------------------------------------------------------


def test_int16_is_opset_21_and_more_accurate_than_int8():
    g, ranges = _calibrated(cnn())
    q16 = export_qdq(g, ranges, "int16")
    q8 = export_qdq(g, ranges, "int8")
    assert q16.opset_import[0].version == 21
    xs = samples(g, 8, seed=100)  # inside the calibrated ranges: no clipping, only rounding
    ref = run(cnn(), xs)
    assert sqnr_db(ref, run(q16, xs)) > sqnr_db(ref, run(q8, xs)) + 6
    dtypes = {numpy_helper.to_array(t).dtype for t in q16.graph.initializer}
    assert np.dtype(np.int16) in dtypes


def test_int16_large_bias_does_not_overflow():
    """int16 activation scales are ~256x smaller than int8 ones: a bias at
    x_scale * w_scale can overflow int32 (ORT's own float-bias quantization saturates
    there); the exporter falls back to a coarser bias scale."""
    model = mlp((64, 32))
    b = next(t for t in model.graph.initializer if t.name == "b0")
    b.CopyFrom(numpy_helper.from_array(np.full(32, 40.0, np.float32), "b0"))
    g, ranges = _calibrated(model)
    q = export_qdq(g, ranges, "int16")
    xs = samples(g, 4, seed=200)
    assert sqnr_db(run(model, xs), run(q, xs)) > 40


def test_opset_21_upgrade_handles_reduce_mean_axes():
    g, ranges = _calibrated(reduce_mean_model())
    xs = samples(g, 4, seed=100)
    ref = run(reduce_mean_model(), xs)
    for scheme, min_db in (("int16", 30), ("w4", 10)):  # 4-bit rows of 4 values: coarse
        q = export_qdq(g, ranges, scheme)
        assert q.opset_import[0].version == 21
        assert sqnr_db(ref, run(q, xs)) > min_db, scheme


def test_fp16_stores_half_and_runs_in_float():
    g = normalized(cnn())
    q = export_qdq(g, None, "fp16")
    inits = [numpy_helper.to_array(t) for t in q.graph.initializer]
    big = [a for a in inits if a.size > 8]
    assert big and all(a.dtype == np.float16 for a in big)
    xs = samples(g, 4, seed=200)
    assert sqnr_db(run(cnn(), xs), run(q, xs)) > 60


def test_dynamic_encoder_needs_no_calibration(tmp_path):
    src = tmp_path / "encoder.onnx"
    onnx.save(encoder(), str(src))
    out = tmp_path / "encoder.dyn.onnx"
    summary = quantize_to_onnx(src, None, "dynamic", out)
    assert summary["scheme"] == "dynamic" and summary["weights"] == 6
    q = onnx.load(str(out))
    xs = samples(normalized(encoder()), 8, seed=200)
    assert cosine(run(encoder(), xs), run(q, xs)) >= 0.99
    ops = _fused_ops(q, tmp_path)
    assert ops["DynamicQuantizeMatMul"] + ops["MatMulIntegerToFloat"] >= 6, ops
    assert max(int(np.abs(w).max()) for w in _int8_weights(q)) <= 63


def test_dynamic_conv_model_runs():
    g = normalized(cnn())
    q = export_qdq(g, None, "dynamic")
    xs = samples(g, 4, seed=200)
    assert sqnr_db(run(cnn(), xs), run(q, xs)) > 25


# --- sizes on a weight-dominated model -------------------------------------------------


def test_file_sizes_on_weight_dominated_model(tmp_path):
    src = tmp_path / "mlp.onnx"
    onnx.save(mlp(), str(src))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=samples(normalized(mlp()), 16)[:, 0])
    limits = {"int8": 0.26, "fp16": 0.52, "w4": 0.14, "w2": 0.08, "w1": 0.05}
    for scheme, limit in limits.items():
        out = tmp_path / f"mlp.{scheme}.onnx"
        summary = quantize_to_onnx(src, calib, scheme, out)
        assert summary["bytes"] == os.path.getsize(out)
        assert summary["ratio"] <= limit, (scheme, summary["ratio"])


# --- errors and writing -----------------------------------------------------------------


def test_bad_requests_are_user_errors(tmp_path):
    g = normalized(mlp((256, 64)))
    with pytest.raises(MicroquantError, match="does not divide"):
        export_qdq(g, None, "w4", group_size=48)
    with pytest.raises(MicroquantError, match="positive"):
        export_qdq(g, None, "w2", group_size=0)
    with pytest.raises(MicroquantError, match="group size applies"):
        export_qdq(g, {"x": (0.0, 1.0)}, "int8", group_size=32)
    with pytest.raises(MicroquantError, match="unknown ONNX scheme"):
        export_qdq(g, None, "int3")
    with pytest.raises(MicroquantError, match="calibration"):
        export_qdq(g, None, "int8")
    with pytest.raises(MicroquantError, match="no Conv/MatMul/Gemm weights"):
        export_qdq(normalized(no_weights_model()), None, "w1")
    with pytest.raises(MicroquantError, match="no Conv/MatMul/Gemm"):
        export_qdq(normalized(no_weights_model()), None, "dynamic")
    src = tmp_path / "m.onnx"
    onnx.save(mlp((256, 64)), str(src))
    with pytest.raises(MicroquantError, match="calibration data"):
        quantize_to_onnx(src, None, "int16", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_save_onnx_is_atomic(tmp_path):
    q = export_qdq(normalized(mlp((64, 8))), None, "fp16")
    out = tmp_path / "q.onnx"
    size = save_onnx(q, out)
    assert size == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]
    with pytest.raises(MicroquantError, match="does not exist"):
        save_onnx(q, tmp_path / "missing" / "q.onnx")
