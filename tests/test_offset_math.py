"""Pure maths of the offset search (avsync.sync.offset); no media involved."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.sync.modelfree import windowed_corr
from avsync.sync.offset import lag_grid, prominence, read_curve, refine_peak, sample_series

# --- lag_grid -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_s, fps", [(0.6, 25.0), (15 / 29.97, 29.97), (0.5, 30.0), (1.0, 24.0)])
def test_lag_grid_symmetric_with_zero_and_quarter_frame_step(max_s, fps):
    g = lag_grid(max_s, fps)
    assert g.ndim == 1 and len(g) % 2 == 1
    np.testing.assert_allclose(g, -g[::-1], atol=1e-12)
    assert np.any(g == 0.0), "0 must be on the grid exactly"
    step = np.diff(g)
    np.testing.assert_allclose(step, 0.25 / fps, rtol=1e-9)
    assert g[-1] <= max_s + 1e-9
    assert g[-1] > max_s - 0.25 / fps  # reaches the range to within one step


def test_lag_grid_25fps_default_range_has_121_points():
    # +-15 frames at 25 fps on a quarter-frame grid: -0.6 .. 0.6 s in 10 ms steps.
    g = lag_grid(0.6, 25.0)
    assert len(g) == 121
    assert g[0] == pytest.approx(-0.6) and g[-1] == pytest.approx(0.6)
    assert g[60] == 0.0


# --- sample_series ---------------------------------------------------------------------------


def test_sample_series_linear_interpolation_and_nan_outside():
    series = np.array([0.0, 10.0, 20.0, 40.0])  # samples at t0 + j / rate
    t0, rate = 1.0, 4.0  # samples at 1.0, 1.25, 1.5, 1.75 s (exact in binary)
    times = np.array([0.99, 1.0, 1.125, 1.4375, 1.625, 1.75, 1.76, 3.0])
    out = sample_series(series, t0, rate, times)
    assert np.isnan(out[0]), "before the first sample"
    np.testing.assert_allclose(out[1:6], [0.0, 5.0, 17.5, 30.0, 40.0], atol=1e-9)
    assert np.isnan(out[6]) and np.isnan(out[7]), "after the last sample"


def test_sample_series_multichannel_keeps_trailing_shape():
    series = np.stack([np.arange(5.0), 100 + 2 * np.arange(5.0)], axis=1)  # (5, 2)
    out = sample_series(series, 0.0, 10.0, np.array([[0.05, 0.25], [-0.1, 0.4]]))
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[0, 0], [0.5, 101.0])
    np.testing.assert_allclose(out[0, 1], [2.5, 105.0])
    assert np.isnan(out[1, 0]).all()
    np.testing.assert_allclose(out[1, 1], [4.0, 108.0])


def test_sample_series_too_short_is_all_nan():
    out = sample_series(np.array([3.0]), 0.0, 10.0, np.array([0.0, 0.05]))
    assert np.isnan(out).all()


# --- masked correlation (windowed_corr over one window) -------------------------------------------------------------------------------


def masked_corr(x, y, min_count=3):
    """windowed_corr over a single window covering everything."""
    return windowed_corr(np.asarray(x, float), np.asarray(y, float)[:, None], np.array([0]), len(x), min_count)[0, 0]


def test_masked_corr_ignores_nan_entries():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 3.0 * x + 1.0
    y[[3, 7, 20]] = np.nan
    x[[10, 11]] = np.nan
    assert masked_corr(x, y) == pytest.approx(1.0)
    assert masked_corr(x, -y) == pytest.approx(-1.0)


def test_masked_corr_matches_numpy_on_the_common_entries():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y[::5] = np.nan
    m = np.isfinite(y)
    assert masked_corr(x, y) == pytest.approx(np.corrcoef(x[m], y[m])[0, 1])


def test_masked_corr_nan_when_too_few_or_flat():
    x = np.array([1.0, 2.0, np.nan, np.nan])
    y = np.array([2.0, 4.0, 1.0, 1.0])
    assert np.isnan(masked_corr(x, y))  # 2 common entries < min_count 3
    assert np.isnan(masked_corr(np.ones(10), np.arange(10.0)))  # flat x


# --- refine_peak ---------------------------------------------------------------------------------


@pytest.mark.parametrize("true_peak", [0.0, 0.013, -0.0042, 0.0049])
def test_refine_peak_recovers_a_parabola_vertex(true_peak):
    lags = lag_grid(0.1, 25.0)  # 10 ms steps
    scores = 2.0 - 300.0 * (lags - true_peak) ** 2
    i = int(np.argmax(scores))
    assert refine_peak(lags, scores, i) == pytest.approx(true_peak, abs=1e-9)


def test_refine_peak_at_the_edge_or_on_a_plateau_returns_the_grid_point():
    lags = np.linspace(-0.05, 0.05, 11)
    rising = np.linspace(0.0, 1.0, 11)
    assert refine_peak(lags, rising, 10) == pytest.approx(0.05)
    flat = np.ones(11)
    assert refine_peak(lags, flat, 4) == pytest.approx(lags[4])


# --- read_curve / prominence -----------------------------------------------------------------------


def test_read_curve_finds_a_clear_peak_with_positive_confidence():
    lags = lag_grid(0.6, 25.0)
    scores = np.exp(-((lags - 0.12) ** 2) / (2 * 0.02**2))
    r = read_curve(lags, scores, exclude_s=2 / 25.0)
    assert r.lag_s == pytest.approx(0.12, abs=1e-3)
    assert r.confidence > 0.9  # peak 1.0 over a rival far away near 0
    assert r.peak == pytest.approx(scores[r.index])


def test_read_curve_ties_go_to_the_lag_nearest_zero():
    lags = np.arange(-10, 11) * 0.01
    scores = np.zeros_like(lags)
    scores[lags.round(3) == -0.08] = 1.0
    scores[lags.round(3) == 0.03] = 1.0  # same height, nearer zero
    r = read_curve(lags, scores, exclude_s=0.02)
    assert lags[r.index] == pytest.approx(0.03)
    assert r.lag_s == pytest.approx(0.03)
    # A distant rival as high as the peak: no evidence either way.
    assert r.confidence == 0.0


def test_read_curve_symmetric_ties_prefer_zero_itself():
    lags = np.arange(-4, 5) * 0.01
    scores = np.ones_like(lags)
    r = read_curve(lags, scores, exclude_s=0.02)
    assert r.lag_s == 0.0
    assert r.confidence == 0.0  # flat curve: no confidence


def test_read_curve_all_nan_gives_zero_lag_and_zero_confidence():
    lags = lag_grid(0.2, 25.0)
    r = read_curve(lags, np.full(len(lags), np.nan), exclude_s=0.08)
    assert r.lag_s == 0.0
    assert r.confidence == 0.0
    assert np.isnan(r.peak)
    assert lags[r.index] == 0.0


def test_read_curve_nan_entries_are_skipped():
    lags = np.arange(-10, 11) * 0.01
    scores = -np.abs(lags - 0.05)
    scores[:5] = np.nan
    r = read_curve(lags, scores, exclude_s=0.02)
    assert r.lag_s == pytest.approx(0.05, abs=1e-9)
    assert np.isfinite(r.confidence) and r.confidence > 0


@pytest.mark.parametrize("direction", [+1, -1])
def test_read_curve_peak_at_the_range_edge(direction):
    lags = lag_grid(0.6, 25.0)
    scores = direction * lags  # monotone: best at one end of the search range
    r = read_curve(lags, scores, exclude_s=0.08)
    assert r.lag_s == pytest.approx(direction * 0.6)
    assert r.index == (len(lags) - 1 if direction > 0 else 0)
    assert np.isfinite(r.confidence) and r.confidence >= 0.0


def test_read_curve_confidence_scale_is_applied():
    lags = np.arange(-10, 11) * 0.01
    scores = -np.abs(lags)
    a = read_curve(lags, scores, exclude_s=0.02, scale=1.0)
    b = read_curve(lags, scores, exclude_s=0.02, scale=10.0)
    assert b.confidence == pytest.approx(10.0 * a.confidence)
    assert a.confidence == pytest.approx(0.03)  # peak 0 vs the best lag more than 0.02 away (-0.03)


def test_prominence_of_flat_curve_is_zero_and_ignores_peak_shoulders():
    lags = np.arange(-10, 11) * 0.01
    assert prominence(lags, np.zeros(21), 10, 0.02) == 0.0
    # Shoulders within exclude_s do not count as rivals.
    scores = np.zeros(21)
    scores[10], scores[9], scores[11] = 1.0, 0.95, 0.95
    scores[0] = 0.4
    assert prominence(lags, scores, 10, 0.015) == pytest.approx(0.6)
    # With a narrow exclusion the shoulder is the rival.
    assert prominence(lags, scores, 10, 0.005) == pytest.approx(0.05)
