"""The ONNX scheme registry, the weight-only schemes (bit packing, groups, exact decoding)
and, with the shared MLPerf Tiny data, int8 QDQ accuracy on the keyword model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx_export_models import cnn, encoder, mlp, normalized, run, samples, session, sqnr_db

from microquant.errors import MicroquantError
from microquant.export.onnx_build import find_weights
from microquant.export.onnx_qdq import activation_ranges, export_qdq
from microquant.export.onnx_weights import pack_bits, quantize_nbit, unpack_bits
from microquant.ir.onnx_io import to_onnx
from microquant.quant.schemes_onnx import ONNX_SCHEMES, canonical, needs_calibration

SHARED = Path(__file__).resolve().parents[2] / "shared"
KWS = SHARED / "models" / "mlperf_tiny" / "kws_dscnn.onnx"
KWS_DATA = SHARED / "data" / "kws01_calib.npz"

# minimum SQNR (dB) vs float on the small CNN, per scheme (w2/w1 only have to run: 1-2 bit
# weights of a float-trained model are not expected to be close)
MIN_DB = {"int8": 25, "int16": 25, "fp16": 60, "dynamic": 25, "w4": 12, "w2": -20, "w1": -20}


def test_registry_names_and_aliases():
    assert set(ONNX_SCHEMES) == set(MIN_DB)
    assert canonical("int16x8") == "int16"
    assert [s for s in ONNX_SCHEMES if needs_calibration(s)] == ["int8", "int16"]
    with pytest.raises(MicroquantError, match="unknown ONNX scheme"):
        canonical("int4")


@pytest.mark.parametrize("scheme", sorted(MIN_DB))
def test_every_scheme_runs_in_onnxruntime(scheme):
    g = normalized(cnn())
    ranges = activation_ranges(g, {"x": samples(g, 16, seed=100)})
    q = export_qdq(g, ranges, scheme)
    onnx.checker.check_model(q, full_check=True)
    xs = samples(g, 4, seed=100)
    got = run(q, xs)
    assert got.shape == (4, 5) and np.all(np.isfinite(got))
    assert sqnr_db(run(cnn(), xs), got) > MIN_DB[scheme]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    for n in (1, 3, 7, 8, 9, 33):
        codes = rng.integers(0, 1 << bits, n).astype(np.uint8)
        packed = pack_bits(codes, bits)
        assert packed.size == -(-n * bits // 8)
        np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)


def test_nbit_quantization_grids():
    w = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    one = quantize_nbit(w, 1)
    deq = one.dequantize()
    # 1 bit symmetric: two levels +-scale/2 per channel, signs preserved
    assert all(len(np.unique(row)) == 2 for row in deq)
    assert np.all(np.sign(deq) == np.sign(w))
    four = quantize_nbit(w, 4, symmetric=False, midpoint=False)
    assert four.codes.max() <= 15 and np.all(four.zero_point == np.round(four.zero_point))
    err4 = np.abs(four.dequantize() - w).mean()
    err2 = np.abs(quantize_nbit(w, 2).dequantize() - w).mean()
    assert err4 < err2 < np.abs(w).mean()


@pytest.mark.parametrize("scheme,bits", [("w4", 4), ("w2", 2), ("w1", 1)])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("make", [encoder, mlp])
def test_weight_only_decodes_to_exactly_the_quantized_weights(scheme, bits, symmetric, make):
    """The exported model (INT4 DequantizeLinear / packed + decoded) equals the float
    model whose weights are replaced by the NumPy dequantized values (MatMul [K, N] and
    Gemm(transB=1) [N, K] weights, the latter stored transposed for w4). ORT runs with
    basic optimizations: its MatMulNBits fusion quantizes activations (accuracy level 4)."""
    if bits == 1 and not symmetric:
        pytest.skip("1-bit asymmetric: codes {0, 1} with zero point 0 or 1 - covered by 2")
    g = normalized(make())
    q = export_qdq(g, None, scheme, symmetric_weights=symmetric, group_size=16)
    ref = g.copy()
    for name, use in find_weights(g).items():
        w = g.const(name)
        qw = quantize_nbit(use.view2d(w), bits, 16, symmetric, midpoint=bits < 4)
        moved = (w.shape[use.out_axis],) + tuple(
            d for i, d in enumerate(w.shape) if i != use.out_axis)
        deq = np.moveaxis(qw.dequantize().reshape(moved), 0, use.out_axis)
        ref.tensors[name].data = deq.astype(np.float32)
    xs = samples(g, 2, seed=5)
    np.testing.assert_allclose(run(q, xs, basic=True), run(to_onnx(ref), xs),
                               rtol=1e-4, atol=1e-4)


def test_groups_beat_per_channel_and_packed_graph_folds_at_load(tmp_path):
    model = mlp((256, 128, 64), heavy=True)
    g = normalized(model)
    xs = samples(g, 4, seed=7)
    ref = run(model, xs)
    for scheme, group, gain_db in (("w4", 16, 3.0), ("w2", 8, 1.0)):
        per_channel = sqnr_db(ref, run(export_qdq(g, None, scheme), xs))
        grouped = sqnr_db(ref, run(export_qdq(g, None, scheme, group_size=group), xs))
        assert grouped > per_channel + gain_db, scheme
    path = str(tmp_path / "opt.onnx")
    session(export_qdq(g, None, "w2", group_size=32), optimized_path=path)
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    assert not {"BitShift", "Split", "Cast", "Mul"} & set(ops), ops  # decoded at load


@pytest.mark.parametrize("group_size", [None, 16])
def test_w4_matmul_weights_fuse_into_matmulnbits(group_size, tmp_path):
    path = str(tmp_path / "opt.onnx")
    session(export_qdq(normalized(encoder()), None, "w4", group_size=group_size),
            optimized_path=path)
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    assert ops["MatMulNBits"] == 6 and "DequantizeLinear" not in ops, ops
    xs = samples(normalized(encoder()), 4, seed=3)
    assert sqnr_db(run(encoder(), xs), run(onnx.load(path), xs)) > 15


def test_w4_uses_int4_dequantize_linear_at_opset_21():
    q = export_qdq(normalized(cnn()), None, "w4")
    assert q.opset_import[0].version == 21
    assert {t.data_type for t in q.graph.initializer} >= {TensorProto.INT4}
    q = export_qdq(normalized(cnn()), None, "w4", symmetric_weights=False)
    assert {t.data_type for t in q.graph.initializer} >= {TensorProto.UINT4}
    q = export_qdq(normalized(cnn()), None, "w4", per_channel=False)
    xs = samples(normalized(cnn()), 2)
    assert np.all(np.isfinite(run(q, xs)))


@pytest.mark.skipif(not (KWS.is_file() and KWS_DATA.is_file()), reason="needs ../shared")
def test_kws_int8_qdq_within_0_3_points_of_float():
    """2-fold over the 200 real keyword samples: calibrate on one half, evaluate the other."""
    from microquant.ir.onnx_io import load_onnx
    from microquant.passes import normalize

    data = np.load(KWS_DATA)
    x, y = data["x"], data["y"]
    g = normalize(load_onnx(KWS))
    name = g.inputs[0]
    idx = np.arange(len(y))
    float_hits = int8_hits = 0
    for cal, ev in ((idx[::2], idx[1::2]), (idx[1::2], idx[::2])):
        ranges = activation_ranges(g, {name: x[cal][:, None]}, "percentile")
        q = export_qdq(g, ranges, "int8")
        float_hits += int((run(to_onnx(g), x[ev][:, None]).argmax(-1) == y[ev]).sum())
        int8_hits += int((run(q, x[ev][:, None]).argmax(-1) == y[ev]).sum())
    assert int8_hits >= float_hits - 0.003 * len(y), (float_hits, int8_hits)
