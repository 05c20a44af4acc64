"""``load_calibration``: the .npz format and every user mistake as a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from microquant.errors import MicroquantError
from microquant.quant.calib_data import load_calibration, load_labels

SHAPE = (1, 4, 4, 2)


def write(tmp_path, **arrays):
    p = tmp_path / "data.npz"
    np.savez(p, **arrays)
    return p


def good(n=3, shape=SHAPE[1:], dtype=np.float32):
    return np.random.default_rng(0).normal(size=(n, *shape)).astype(dtype)


def load_one(p, name="in", shape=SHAPE):
    return load_calibration(p, [name], [shape])


def expect_error(match, p, names=("in",), shapes=(SHAPE,)):
    with pytest.raises(MicroquantError, match=match) as e:
        load_calibration(p, list(names), list(shapes))
    assert "\n" not in str(e.value)


def test_x_key_without_batch_dim(tmp_path):
    x = good()
    out = load_one(write(tmp_path, x=x, y=np.arange(3)))
    assert list(out) == ["in"]
    assert out["in"].shape == (3, *SHAPE) and out["in"].dtype == np.float32
    np.testing.assert_array_equal(out["in"].reshape(x.shape), x)


def test_named_key_with_batch_dim_and_float64(tmp_path):
    x = good(shape=SHAPE, dtype=np.float64)
    out = load_one(write(tmp_path, **{"in": x, "labels": np.zeros(3)}))
    assert out["in"].shape == (3, *SHAPE) and out["in"].dtype == np.float32


def test_multi_input(tmp_path):
    p = write(tmp_path, a=good(), b=good(shape=(5,)))
    out = load_calibration(p, ["a", "b"], [SHAPE, (1, 5)])
    assert out["a"].shape == (3, *SHAPE) and out["b"].shape == (3, 1, 5)


def test_missing_file(tmp_path):
    expect_error("not found", tmp_path / "nope.npz")


def test_corrupt_file(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"not a zip archive at all")
    expect_error("not a readable .npz", p)


def test_npy_instead_of_npz(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, good())
    expect_error("expected a .npz archive", p)


def test_no_arrays(tmp_path):
    expect_error("contains no arrays", write(tmp_path))


def test_wrong_key_names_expected(tmp_path):
    expect_error(
        r"no array for input 'in'; expected keys 'in' \(or 'x'\), found 'z'",
        write(tmp_path, z=good()),
    )


def test_x_not_accepted_for_multi_input(tmp_path):
    expect_error("no array for input 'a'", write(tmp_path, x=good()), ["a", "b"], [SHAPE, SHAPE])


def test_unexpected_extra_key(tmp_path):
    expect_error("unexpected array 'xx'", write(tmp_path, x=good(), xx=good()))


def test_wrong_shape_says_expected_and_got(tmp_path):
    expect_error(
        r"shape \(3, 4, 4, 3\), expected \(N, 1, 4, 4, 2\) or \(N, 4, 4, 2\)",
        write(tmp_path, x=good(shape=(4, 4, 3))),
    )


def test_integer_dtype_rejected(tmp_path):
    expect_error("dtype uint8, expected float32", write(tmp_path, x=good().astype(np.uint8)))


def test_zero_samples(tmp_path):
    expect_error("no samples", write(tmp_path, x=np.zeros((0, 4, 4, 2), np.float32)))


def test_scalar_array(tmp_path):
    expect_error("no samples", write(tmp_path, x=np.float32(1.0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf(tmp_path, bad):
    x = good()
    x[2, 1, 1, 0] = bad
    expect_error("1 NaN/Inf values .first in sample 2", write(tmp_path, x=x))


def test_sample_count_mismatch(tmp_path):
    p = write(tmp_path, a=good(3), b=good(4))
    expect_error("different sample counts .a: 3, b: 4", p, ["a", "b"], [SHAPE, SHAPE])


def test_labels(tmp_path):
    assert load_labels(write(tmp_path, x=good(), y=np.arange(3))).tolist() == [0, 1, 2]
    assert load_labels(write(tmp_path, x=good())) is None


@pytest.mark.skipif(not (SHARED / "data" / "kws01_calib.npz").is_file(), reason="no shared data")
def test_real_kws_data():
    out = load_calibration(SHARED / "data" / "kws01_calib.npz", ["input"], [(1, 49, 10, 1)])
    assert out["input"].shape == (200, 1, 49, 10, 1)
