"""The model-free estimator: lip opening against audio band envelopes.

For every candidate lag, the inner-lip gap (pose- and size-normalised) is
correlated with the log energy of five speech bands sampled at the video
frames' times plus the lag; the five correlations are averaged. Open mouths go
with loud voiced sound in every band, so the curve peaks where the two
streams line up. Long files are scored in overlapping blocks whose curves are
averaged, so slow drifts in either signal do not dominate.

Choices here were made on the ``train`` split (GRID s1 plus others); see
docs/BENCHMARKS.md for the ``dev`` figures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.audio.features import E2E_MEL, mel_band_centres
from avsync.constants import SPEECH_BAND_HZ
from avsync.face.landmarks import LIP_FEATURE_NAMES, lip_features, normalise_lips
from avsync.sync.offset import sample_series

#: Lip feature used (see LIP_FEATURE_NAMES).
_LIP_FEATURE = LIP_FEATURE_NAMES.index("inner_gap")


@dataclass(frozen=True)
class ModelFreeConfig:
    n_bands: int = 5
    band_lo_hz: float = SPEECH_BAND_HZ[0]
    band_hi_hz: float = SPEECH_BAND_HZ[1]
    #: Blocks (in frames at 25 fps-equivalent seconds) for long files.
    block_s: float = 8.0
    min_frames: int = 8


def band_envelopes(mel40: np.ndarray, cfg: ModelFreeConfig = ModelFreeConfig()) -> np.ndarray:
    """Log energy of ``cfg.n_bands`` geometric bands from a 40-bin log-mel, (T, n_bands)."""
    centres = mel_band_centres(E2E_MEL)
    edges = np.geomspace(cfg.band_lo_hz, cfg.band_hi_hz, cfg.n_bands + 1)
    power = np.exp(mel40.astype(np.float64))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (centres > lo) & (centres < hi)
        out.append(np.log(power[:, sel].sum(1) + 1e-8))
    return np.stack(out, axis=1)


def windowed_corr(v: np.ndarray, s: np.ndarray, starts: np.ndarray, length: int, min_count: int) -> np.ndarray:
    """Pearson correlation of v (T,) with each column of s (T, B) inside windows.

    Windows are ``[start, start+length)``; NaNs are skipped. Returns (W, B),
    NaN where a window has fewer than ``min_count`` usable frames or is flat.
    """
    m = np.isfinite(s) & np.isfinite(v)[:, None]
    x = np.where(m, v[:, None], 0.0)
    y = np.where(m, s, 0.0)

    def wsum(a):
        c = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])
        stop = np.minimum(starts + length, len(a))
        return c[stop] - c[starts]

    n = wsum(m.astype(np.float64))
    sx, sy = wsum(x), wsum(y)
    sxx, syy, sxy = wsum(x * x), wsum(y * y), wsum(x * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = cov / np.sqrt(vx * vy)
    r[(n < min_count) | ~(vx > 1e-12) | ~(vy > 1e-12)] = np.nan
    return r


class ModelFreeEstimator:
    """Correlation of lip opening with speech-band envelopes (no learned weights)."""

    name = "modelfree"
    description = "inner-lip gap x 5 speech-band envelopes, correlation over lags"
    #: Confidence = this x (peak - best rival more than 2 frames away), in
    #: units of the band-mean correlation: 1.0 means a 0.1 correlation margin.
    confidence_scale = 10.0

    def __init__(self, config: ModelFreeConfig = ModelFreeConfig()):
        self.config = config
        self._env_of: tuple[np.ndarray, np.ndarray] | None = None  # (mel40, its envelopes)

    def _envelopes(self, mel40: np.ndarray) -> np.ndarray:
        """Band envelopes of an extraction's audio, computed once for all its faces."""
        if self._env_of is None or self._env_of[0] is not mel40:
            self._env_of = (mel40, band_envelopes(mel40, self.config))
        return self._env_of[1]

    # Features are computed once per extraction and reused for every lag and window.
    def prepare(self, ext, track_index: int) -> dict:
        key = ext.tracks[track_index].landmarks(ext.n_frames)
        return self.prepare_arrays({"lips": normalise_lips(key), "mel40": ext.mel40, "audio_t0": ext.audio_t0,
                                    "times": ext.times})

    def prepare_arrays(self, arr: dict) -> dict:
        """The same from per-frame arrays: normalised ``lips`` (T, 40, >=2), ``mel40``, ``audio_t0``, ``times``."""
        return {
            "lip": lip_features(arr["lips"])[:, _LIP_FEATURE],
            "env": self._envelopes(arr["mel40"]),
            "t0": float(arr["audio_t0"]),
            "rate": E2E_MEL.fps,
            "times": arr["times"],
        }

    def scores(self, prep: dict, lags: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Score (W, L): for each window start and lag, the mean of the band correlations."""
        out = np.full((len(starts), len(lags)), np.nan)
        # Short windows (the 5-frame LRS2 protocol) need all but one frame usable.
        min_count = min(self.config.min_frames, max(3, length - 1))
        for j, tau in enumerate(lags):
            s = sample_series(prep["env"], prep["t0"], prep["rate"], prep["times"] + tau)
            r = windowed_corr(prep["lip"], s, starts, length, min_count)
            valid = np.isfinite(r).all(1)
            out[valid, j] = r[valid].mean(1)
        return out

    def file_curve(self, prep: dict, lags: np.ndarray, fps: float) -> np.ndarray:
        """One curve for the whole file: the mean of overlapping block curves.

        Only the span where this face was seen is scored (in a long file most
        faces appear for a few seconds).
        """
        seen = np.flatnonzero(np.isfinite(prep["lip"]))
        if seen.size == 0:
            return np.full(len(lags), np.nan)
        lo, hi = seen[0], seen[-1] + 1
        prep = {**prep, "lip": prep["lip"][lo:hi], "times": prep["times"][lo:hi]}
        n = hi - lo
        block = max(self.config.min_frames, int(round(self.config.block_s * fps)))
        if n <= block:
            starts = np.array([0])
            block = n
        else:
            hop = block // 2
            starts = np.unique(np.minimum(np.arange(0, n - block + hop, hop), n - block))
        per = self.scores(prep, lags, starts, block)
        ok = np.isfinite(per).all(1)
        if not ok.any():
            return np.full(len(lags), np.nan)
        return per[ok].mean(0)
