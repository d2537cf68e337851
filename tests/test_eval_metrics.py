"""Pure metrics of the evaluation protocols, on hand-made score curves (no media)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.eval import metrics as M

LAGS = np.arange(-15, 16, dtype=float)


def curve_peaking_at(k: float, width: float = 2.0) -> np.ndarray:
    return np.exp(-0.5 * ((LAGS - k) / width) ** 2)


def test_argbest_plain_peak_and_edges():
    assert LAGS[M.argbest(curve_peaking_at(4), LAGS)] == 4
    assert LAGS[M.argbest(curve_peaking_at(-15), LAGS)] == -15  # range edge
    assert LAGS[M.argbest(curve_peaking_at(15), LAGS)] == 15


def test_argbest_ties_go_to_the_lag_nearest_zero():
    s = np.zeros_like(LAGS)
    s[[2, 14, 20]] = 1.0  # lags -13, -1, +5
    assert LAGS[M.argbest(s, LAGS)] == -1


def test_argbest_flat_curve_is_zero_and_all_nan_is_none():
    assert LAGS[M.argbest(np.ones_like(LAGS), LAGS)] == 0
    assert M.argbest(np.full_like(LAGS, np.nan), LAGS) == -1
    s = curve_peaking_at(7)
    s[22] = np.nan  # the true peak is missing: next best wins
    assert LAGS[M.argbest(s, LAGS)] in (6, 8)


def test_clip_summary_tolerances_and_failures():
    err = np.array([0.0, 0.5, 0.51, 1.5, 1.51, -3.0])
    fps = np.full(len(err), 25.0)
    s = M.clip_summary(err, fps, failures=2)
    assert s["n"] == 6 and s["failures"] == 2
    assert s["acc_exact"] == pytest.approx(2 / 8)  # 0 and 0.5
    assert s["acc_pm1"] == pytest.approx(4 / 8)  # up to 1.5 inclusive
    assert s["mae_ms"] == pytest.approx(np.abs(err).mean() * 40.0)
    assert M.clip_summary([], [], failures=3)["acc_pm1"] is None


def test_context_windows_average_sub_windows():
    # 12 frames -> 8 five-frame sub-windows; windows of 6 frames -> 2 windows.
    per5 = np.zeros((8, len(LAGS)))
    per5[0:2, 20] = 1.0  # sub-windows starting at 0 and 1 vote for +5
    per5[6:8, 10] = 1.0  # those starting at 6 and 7 vote for -5
    w = M.context_windows(per5, 6)
    assert w.shape == (2, len(LAGS))
    assert LAGS[M.argbest(w[0], LAGS)] == 5
    assert LAGS[M.argbest(w[1], LAGS)] == -5
    # A window of 5 frames is its own sub-window.
    assert np.array_equal(M.context_windows(per5, 5)[0], per5[0])


def test_window_accuracy_counts_tolerance_and_empty_windows():
    rows = np.stack([curve_peaking_at(3), curve_peaking_at(4), curve_peaking_at(6), np.full_like(LAGS, np.nan)])
    c, t = M.window_accuracy(rows, LAGS, truth_frames=4, tol=1)
    assert (c, t) == (2, 4)  # 3 and 4 are within ±1; 6 is not; the NaN window is wrong
    c5, _ = M.window_accuracy(rows, LAGS, truth_frames=4, tol=5)
    assert c5 == 3


def test_rmse_and_no_information_rate():
    assert M.rmse([1, -1, 3], [0, 0, 0]) == pytest.approx(np.sqrt(11 / 3))
    # Always predicting 0 for offsets uniform on -15..15: sqrt(mean k^2) = sqrt(80) = 8.94.
    assert M.no_information_rmse(15) == pytest.approx(np.sqrt(80.0))
    assert M.no_information_rmse(15) == pytest.approx(8.94, abs=0.01)


def test_per_offset_table_and_mean_std():
    rows = M.per_offset_table(np.array([-2, -2, 4]), np.array([0.2, -3.0, 1.0]))
    assert [r["offset_frames"] for r in rows] == [-2, 4]
    assert rows[0]["acc_pm1"] == pytest.approx(0.5)
    assert rows[0]["mean_error_frames"] == pytest.approx(-1.4)
    m, s = M.mean_std([0.5, 0.7])
    assert (m, s) == (pytest.approx(0.6), pytest.approx(0.1))
