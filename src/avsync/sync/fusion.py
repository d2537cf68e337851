"""Fusion of estimators: shipped models (and the model-free method) scoring together.

Every member scores the same windows and lags; each score row is standardised
over its lags (zero mean, unit deviation, NaN-aware) and the rows are averaged
with the fusion's weights. Members fail in different ways (a crop model on
faces lit or framed unlike its training data, a landmark model where the face
mesh is unsure, the model-free method on fluent speech where lips lead the
sound), so where they agree the peak stands out, and where one is flat the
others decide.

A fusion is named by its members joined with ``+`` (``pm-wild+landmark-wild``,
``pm-small+modelfree``) and listed in ``models/registry.json`` under
``fusions`` with its members and weights.
"""
from __future__ import annotations

import warnings

import numpy as np

#: Joins the members' names in a fusion's name.
JOIN = "+"


def standardise(rows: np.ndarray) -> np.ndarray:
    """Each row minus its mean over finite entries, divided by its deviation (rows of one value give 0)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        mu = np.nanmean(rows, axis=1, keepdims=True)
        sd = np.nanstd(rows, axis=1, keepdims=True)
    sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
    return (rows - mu) / sd


def fuse(rows: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted mean of the members' standardised rows; where some members have no score, the others'
    (weights renormalised over the members that scored)."""
    z = np.stack([standardise(r) for r in rows])  # (M, W, L)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, 1, 1) * np.isfinite(z)
    total = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.nan_to_num(z) * w).sum(0) / total
    return np.where(total > 0, out, np.nan)


class FusedEstimator:
    """Several estimators, fused per window (see module docstring)."""

    def __init__(self, members: list, weights: list[float]):
        if len(members) < 2 or len(members) != len(weights):
            raise ValueError("a fusion needs two or more members, one weight each")
        self.members, self.weights = list(members), [float(w) for w in weights]
        self.name = JOIN.join(m.name for m in members)
        self.description = "fusion of " + ", ".join(f"{m.name} ({w:g})" for m, w in zip(members, self.weights)) + \
            ": standardised score curves averaged"
        self.calibration = None  # from the registry (``api.load_model``)
        self.confidence_scale = 1.0
        summaries = [getattr(m, "training_summary", None) or {} for m in members]
        learned = [s for s in summaries if s]
        self.training_summary = {
            "speakers": sorted({x for s in summaries for x in s.get("speakers", [])}),
            "clips_sha256": sorted({x for s in summaries for x in s.get("clips_sha256", [])}),
            # speakers every learned member held out
            "val_speakers": sorted(set.intersection(*(set(s.get("val_speakers", [])) for s in learned))) if learned else [],
        }
        self.needs_crops = any(getattr(m, "needs_crops", False) for m in members)
        self.sha256 = JOIN.join(f"{getattr(m, 'sha256', m.name)}@{w:g}" for m, w in zip(members, self.weights))

    def prepare(self, ext, track_index: int) -> list:
        return [m.prepare(ext, track_index) for m in self.members]

    def prepare_arrays(self, arr: dict) -> list:
        return [m.prepare_arrays(arr) for m in self.members]

    def scores(self, prep, lags, starts, length) -> np.ndarray:
        return fuse([m.scores(p, lags, starts, length) for m, p in zip(self.members, prep)], self.weights)

    def file_curve(self, prep, lags, fps) -> np.ndarray:
        return fuse([m.file_curve(p, lags, fps) for m, p in zip(self.members, prep)], self.weights)[0]
