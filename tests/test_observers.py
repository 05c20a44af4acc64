"""Calibration observers on synthetic distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from microquant.errors import MicroquantError
from microquant.quant.observers import OBSERVERS, HistogramObserver, get_observer
from microquant.quant.observers.entropy import kl_divergence
from microquant.quant.observers.mse import expected_mse
from microquant.quant.primitives import choose_qparams, dequantize, quantize

RNG = np.random.default_rng(42)
GAUSS_OUTLIERS = np.r_[RNG.normal(size=400_000), [25.0, -22.0]].astype(np.float32)
UNIFORM = RNG.uniform(-1.0, 3.0, 200_000).astype(np.float32)
LAPLACE = RNG.laplace(size=200_000).astype(np.float32)


def observe(method: str, x: np.ndarray, chunks: int = 16) -> tuple[float, float]:
    obs = get_observer(method)
    for part in np.array_split(x, chunks):
        obs.update(part)
    return obs.range()


def measured_mse(x: np.ndarray, rng: tuple[float, float]) -> float:
    s, z = choose_qparams(*rng)
    return float(np.mean((dequantize(quantize(x, s, z), s, z) - x) ** 2))


def test_registry_lists_methods_on_error():
    assert set(OBSERVERS) == {"minmax", "percentile", "entropy", "mse"}
    with pytest.raises(MicroquantError, match="minmax.*percentile.*entropy.*mse"):
        get_observer("kl")


def test_minmax_keeps_outliers():
    assert observe("minmax", GAUSS_OUTLIERS) == (-22.0, 25.0)


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_clip_outliers(method):
    lo, hi = observe(method, GAUSS_OUTLIERS)
    assert 2.5 < hi < 8.0 and -8.0 < lo < -2.5, (lo, hi)
    # clipping the two outliers must beat keeping them on the bulk's error
    bulk = GAUSS_OUTLIERS[:-2]
    assert measured_mse(bulk, (lo, hi)) < 0.1 * measured_mse(bulk, (-22.0, 25.0))


def test_mse_clips_outliers_only_as_far_as_it_pays():
    """The MSE objective counts the outliers' clipping error too: it clips them partly
    and its range has the lowest error over all the data."""
    lo, hi = observe("mse", GAUSS_OUTLIERS)
    assert -22.0 < lo < -2.5 and 2.5 < hi < 25.0
    err = measured_mse(GAUSS_OUTLIERS, (lo, hi))
    for other in ("minmax", "percentile", "entropy"):
        assert err < measured_mse(GAUSS_OUTLIERS, observe(other, GAUSS_OUTLIERS)), other


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_uniform_all_methods_agree(method):
    lo, hi = observe(method, UNIFORM)
    assert lo == pytest.approx(-1.0, abs=0.02) and hi == pytest.approx(3.0, abs=0.02)


def test_percentile_matches_numpy():
    lo, hi = observe("percentile", LAPLACE)
    ref_lo, ref_hi = np.percentile(LAPLACE, [0.01, 99.99])
    assert lo == pytest.approx(ref_lo, rel=0.02) and hi == pytest.approx(ref_hi, rel=0.02)


def test_mse_beats_minmax_on_heavy_tails():
    r_mse, r_mm = observe("mse", LAPLACE), observe("minmax", LAPLACE)
    assert r_mse[1] < r_mm[1] and r_mse[0] > r_mm[0]
    assert measured_mse(LAPLACE, r_mse) < 0.9 * measured_mse(LAPLACE, r_mm)


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_relu_data_is_one_sided(method):
    x = np.maximum(RNG.normal(size=100_000), 0).astype(np.float32)
    lo, hi = observe(method, x)
    assert lo == 0.0 and 2.5 < hi <= float(x.max())


def test_entropy_ignores_relu_zero_spike():
    """Without excluding exact zeros the spike drags the threshold to ~1.7 (clips a lot)."""
    x = np.maximum(RNG.normal(size=100_000), 0).astype(np.float32)
    _, hi = observe("entropy", x)
    assert hi > 3.0


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_always_includes_zero_and_handles_empty_and_constant(method):
    obs = get_observer(method)
    assert obs.range() == (0.0, 0.0)
    obs.update(np.zeros(10, np.float32))
    assert obs.range() == (0.0, 0.0)
    obs.update(np.full(10, 2.5, np.float32))
    lo, hi = obs.range()
    assert lo == 0.0 and 0.0 < hi <= 2.5
    obs = get_observer(method)
    obs.update(np.full(10, -3.0, np.float32))
    lo, hi = obs.range()
    assert -3.0 <= lo < 0.0 and hi == 0.0


def test_adaptive_histogram_is_exact():
    """Streaming growth merges bins exactly: same counts as one np.histogram on the final grid."""
    x = RNG.normal(size=50_000) * np.repeat([0.1, 1.0, 30.0], [20_000, 20_000, 10_000])
    h = HistogramObserver(bins_per_side=256)
    for part in np.array_split(x.astype(np.float32), 10):
        h.update(part)
    assert int(h.counts.sum()) == x.size
    assert max(abs(x.min()), abs(x.max())) <= h.radius < 2 * max(abs(x.min()), abs(x.max()))
    ref, _ = np.histogram(x.astype(np.float32), bins=h.edges())
    assert np.abs(h.counts - ref).sum() <= 2  # only values within float rounding of an edge


def test_update_order_does_not_matter():
    parts = np.array_split(LAPLACE, 8)
    for method in ("percentile", "entropy", "mse"):
        a, b = get_observer(method), get_observer(method)
        for p in parts:
            a.update(p)
        for p in reversed(parts):
            b.update(p)
        assert a.range() == pytest.approx(b.range(), rel=1e-6), method


def test_kl_divergence_is_zero_when_quantization_is_lossless():
    hist = np.zeros(256)
    hist[::2] = 5.0  # 128 non-empty bins, one per level
    assert kl_divergence(hist, 256, 128) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(hist, 128, 64) > 0.0  # clipping half the mass costs something


def test_expected_mse_formula():
    c = np.array([-1.0, 0.0, 1.0, 4.0])
    h = np.array([1.0, 1.0, 1.0, 1.0])
    lo, hi = np.array([-1.0]), np.array([1.0])
    s = 2.0 / 255
    want = (3 * s * s / 12 + 9.0) / 4  # value 4 clipped to 1
    assert expected_mse(c, h, lo, hi)[0] == pytest.approx(want)
