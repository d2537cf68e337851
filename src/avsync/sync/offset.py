"""Pure maths of the offset search: lag grids, curves, peaks and confidence.

Sign convention throughout: a lag ``tau`` (seconds) scores the hypothesis that
the sound belonging to the picture at time ``t`` is heard at ``t + tau``. So the
best lag *is* ``offset_ms / 1000``: positive means the audio lags the video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.constants import LAG_STEP_FRACTION


def lag_grid(max_offset_s: float, fps: float, step_fraction: float = LAG_STEP_FRACTION) -> np.ndarray:
    """Symmetric lags (s) from -max to +max in steps of ``step_fraction`` frames, 0 included."""
    step = step_fraction / fps
    n = int(np.floor(max_offset_s / step + 1e-9))
    return np.arange(-n, n + 1) * step


def sample_series(series: np.ndarray, t0: float, rate: float, times: np.ndarray) -> np.ndarray:
    """Linearly interpolate a regularly sampled series (T, ...) at ``times`` (s).

    Sample j of ``series`` is at ``t0 + j / rate``; times outside it give NaN.
    """
    pos = (np.asarray(times, dtype=np.float64) - t0) * rate
    n = len(series)
    ok = (pos >= -1e-9) & (pos <= n - 1 + 1e-9)  # float slack at the ends
    lo = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    frac = np.clip(pos - lo, 0.0, 1.0)
    s = np.asarray(series, dtype=np.float64)
    if n < 2:
        return np.full(pos.shape + s.shape[1:], np.nan)
    frac = frac.reshape(pos.shape + (1,) * (s.ndim - 1))
    out = s[lo] * (1.0 - frac) + s[lo + 1] * frac
    out[~ok] = np.nan
    return out


def refine_peak(lags: np.ndarray, scores: np.ndarray, i: int) -> float:
    """Sub-step peak position by a parabola through the best score and its neighbours."""
    if i <= 0 or i >= len(scores) - 1:
        return float(lags[i])
    y0, y1, y2 = scores[i - 1], scores[i], scores[i + 1]
    if not np.all(np.isfinite([y0, y1, y2])):
        return float(lags[i])
    den = y0 - 2 * y1 + y2
    if den >= 0:  # not a maximum: flat or convex
        return float(lags[i])
    delta = 0.5 * (y0 - y2) / den
    step = lags[i + 1] - lags[i]
    return float(lags[i] + np.clip(delta, -0.5, 0.5) * step)


@dataclass(frozen=True)
class CurveReading:
    """What a score curve says: best lag (s), confidence, and the peak's score."""

    lag_s: float
    confidence: float
    peak: float
    index: int


def rival_index(lags: np.ndarray, scores: np.ndarray, best: int, exclude_s: float) -> int:
    """Index of the best finite score at least ``exclude_s`` from lag ``best`` (-1 if there is none)."""
    s = np.asarray(scores, dtype=np.float64)
    far = (np.abs(lags - lags[best]) > exclude_s) & np.isfinite(s)
    if not far.any():
        return -1
    return int(np.flatnonzero(far)[np.argmax(s[far])])


def prominence(lags: np.ndarray, scores: np.ndarray, best: int, exclude_s: float) -> float:
    """How far the best score stands above the best rival peak.

    The rival is the highest score at least ``exclude_s`` away from the best
    lag (the peak's own shoulders do not count). In the spirit of SyncNet's
    ``median - min`` of distances, but it also drops when a second, distant
    lag scores almost as well. 0 when there is no rival to compare with.
    """
    s = np.asarray(scores, dtype=np.float64)
    r = rival_index(lags, s, best, exclude_s)
    if r < 0 or not np.isfinite(s[best]):
        return 0.0
    return float(max(0.0, s[best] - s[r]))


def read_curve(lags: np.ndarray, scores: np.ndarray, exclude_s: float, scale: float = 1.0) -> CurveReading:
    """Arg-best of a score curve (higher is better), refined between grid points.

    Ties go to the lag nearest zero (no evidence against sync wins). The
    confidence is ``scale * prominence(..., exclude_s)``. A curve with no
    finite score gives lag 0 and confidence 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).any():
        return CurveReading(0.0, 0.0, float("nan"), int(np.argmin(np.abs(lags))))
    filled = np.where(np.isfinite(s), s, -np.inf)
    top = filled.max()
    ties = np.flatnonzero(filled >= top - 1e-12 * max(1.0, abs(top)))
    i = int(ties[np.argmin(np.abs(lags[ties]))])
    return CurveReading(refine_peak(lags, s, i), scale * prominence(lags, s, i, exclude_s), float(s[i]), i)
