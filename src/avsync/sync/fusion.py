"""Fusion of a learned model with the model-free method.

Both estimators score the same windows and lags; each score row is
standardised over its lags (zero mean, unit deviation, NaN-aware) and the two
are averaged with weight ``w`` on the learned one. The two methods fail in
different ways (the learned ones on faces unlike their training speakers, the
model-free one on fluent speech where lips lead the sound), so where they
agree the peak stands out, and where one is flat the other decides.
"""
from __future__ import annotations

import warnings

import numpy as np

#: Suffix that names the fusion of a shipped model with the model-free method.
SUFFIX = "+modelfree"


def standardise(rows: np.ndarray) -> np.ndarray:
    """Each row minus its mean over finite entries, divided by its deviation (rows of one value give 0)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        mu = np.nanmean(rows, axis=1, keepdims=True)
        sd = np.nanstd(rows, axis=1, keepdims=True)
    sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
    return (rows - mu) / sd


def fuse(learned: np.ndarray, modelfree: np.ndarray, weight: float) -> np.ndarray:
    """w * z(learned) + (1-w) * z(modelfree); where one is missing, the other alone."""
    a, b = standardise(learned), standardise(modelfree)
    out = weight * a + (1.0 - weight) * b
    out = np.where(np.isfinite(a) & ~np.isfinite(b), a, out)
    return np.where(~np.isfinite(a) & np.isfinite(b), b, out)


class FusedEstimator:
    """A learned estimator and the model-free one, fused per window (see module docstring)."""

    def __init__(self, learned, modelfree, weight: float = 0.5, confidence_scale: float = 1.0):
        self.learned, self.modelfree, self.weight = learned, modelfree, weight
        self.name = f"{learned.name}{SUFFIX}"
        self.description = f"fusion: {learned.name} and the model-free method, standardised curves averaged"
        #: Calibrated on held-out training speakers (``registry.json`` "fusions"), like each model's own.
        self.confidence_scale = confidence_scale
        self.training_summary = learned.training_summary
        self.needs_crops = getattr(learned, "needs_crops", False)
        self.sha256 = f"{getattr(learned, 'sha256', '')}+modelfree@{weight}:{confidence_scale}"

    def prepare(self, ext, track_index: int) -> tuple:
        return self.learned.prepare(ext, track_index), self.modelfree.prepare(ext, track_index)

    def prepare_arrays(self, arr: dict) -> tuple:
        return self.learned.prepare_arrays(arr), self.modelfree.prepare_arrays(arr)

    def scores(self, prep, lags, starts, length) -> np.ndarray:
        a = self.learned.scores(prep[0], lags, starts, length)
        b = self.modelfree.scores(prep[1], lags, starts, length)
        return fuse(a, b, self.weight)

    def file_curve(self, prep, lags, fps) -> np.ndarray:
        a = self.learned.file_curve(prep[0], lags, fps)
        b = self.modelfree.file_curve(prep[1], lags, fps)
        return fuse(a, b, self.weight)[0]
