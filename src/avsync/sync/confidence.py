"""Confidence: the probability that an answer is right, read from the shape of its score curve.

Every estimator gives a score per candidate lag. Whether the best lag is the
true one shows in how the curve looks and in how much evidence went into it:

- ``prominence_z``: how far the peak stands above the best rival lag more than
  2 frames away, in units of the curve's own spread (scale-free, so one
  definition fits every estimator);
- ``peak_z``: how far the peak stands above the curve's median, same units;
- ``log_seconds``: log of the seconds of evidence (frames with a visible face
  while there is speech), since a long clip averages out chance peaks.

A ``Calibration`` maps these through a logistic model fitted per estimator on
readings of held-out speakers (never the ``dev`` split): ``probability`` is
then the estimated chance that the answer is within ±1 frame of the truth.
Everything here is pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avsync.sync.offset import prominence
from avsync.sync.speech import frame_speech

#: The curve features, in the order a calibration's coefficients use them.
FEATURES = ("prominence_z", "peak_z", "log_seconds")

#: Evidence below this (s) counts as this much in ``log_seconds`` (keeps the log finite).
MIN_EVIDENCE_S = 0.04


def curve_features(lags: np.ndarray, scores: np.ndarray, best: int, exclude_s: float, evidence_s: float) -> np.ndarray:
    """The ``FEATURES`` of one curve at its best index (zeros for the shape where the curve is flat or empty)."""
    s = np.asarray(scores, dtype=np.float64)
    lags = np.asarray(lags, dtype=np.float64)
    log_s = math.log(max(float(evidence_s), MIN_EVIDENCE_S))
    ok = np.isfinite(s)
    if ok.sum() < 3 or not np.isfinite(s[best]):
        return np.array([0.0, 0.0, log_s])
    sd = float(s[ok].std())
    if sd <= 1e-12:
        return np.array([0.0, 0.0, log_s])
    prom = prominence(lags, s, best, exclude_s)
    return np.array([prom / sd, (float(s[best]) - float(np.median(s[ok]))) / sd, log_s])


def support_z(lags: np.ndarray, scores: np.ndarray, lag_s: float, fps: float) -> float:
    """How well another estimator's curve backs an answer: its best score within ±1 frame of ``lag_s``, above its
    own median in units of its own spread (0 where that curve is flat or empty). A second opinion from a model
    that reads other evidence (lip landmarks beside mouth pixels) is high where it agrees with the answer."""
    s = np.asarray(scores, dtype=np.float64)
    lags = np.asarray(lags, dtype=np.float64)
    ok = np.isfinite(s)
    near = ok & (np.abs(lags - lag_s) <= 1.0 / fps + 1e-9)
    if ok.sum() < 3 or not near.any():
        return 0.0
    sd = float(s[ok].std())
    return 0.0 if sd <= 1e-12 else float((s[near].max() - float(np.median(s[ok]))) / sd)


def evidence_seconds(found: np.ndarray, times: np.ndarray, speech: np.ndarray, audio_t0: float, rate: float) -> float:
    """Seconds of video where the face is seen while the audio holds speech.

    ``found`` and ``times`` are per video frame; ``speech`` is a mask on an
    audio grid whose frame j lies at ``audio_t0 + j / rate``.
    """
    found = np.asarray(found, bool)
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2 or not found.any() or len(speech) == 0:
        return 0.0
    heard = frame_speech(times, speech, audio_t0, rate)
    dt = float(times[-1] - times[0]) / (len(times) - 1)
    return float((found & heard).sum() * dt)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass(frozen=True)
class Calibration:
    """A logistic model from curve features to the probability of a right answer."""

    coef: tuple[float, ...]
    intercept: float
    features: tuple[str, ...] = FEATURES
    #: What it was fitted on (readings, share right, speakers, label rule): for the record.
    fitted_on: dict | None = None

    def probability(self, x: np.ndarray) -> np.ndarray | float:
        x = np.asarray(x, dtype=np.float64)
        p = _sigmoid(x @ np.asarray(self.coef, dtype=np.float64) + self.intercept)
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self) -> dict:
        return {"coef": [float(c) for c in self.coef], "intercept": float(self.intercept),
                "features": list(self.features), "fitted_on": self.fitted_on or {}}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        feats = tuple(d.get("features", FEATURES))
        if feats != FEATURES:
            raise ValueError(f"calibration uses features {feats}, this avsync computes {FEATURES}")
        if len(d["coef"]) != len(feats):
            raise ValueError("calibration has the wrong number of coefficients")
        return cls(tuple(float(c) for c in d["coef"]), float(d["intercept"]), feats, d.get("fitted_on") or None)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method (IRLS) with an L2 penalty on the coefficients (not the intercept).

    ``x`` (N, F), ``y`` (N,) in {0, 1}. Returns (coef, intercept).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, f = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(a @ w)
        grad = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:f], float(w[f])


def fit_calibration(x: np.ndarray, right: np.ndarray, fitted_on: dict | None = None, l2: float = 1e-2) -> Calibration:
    """A ``Calibration`` fitted on readings' features ``x`` (N, 3) and whether each was right."""
    coef, b = fit_logistic(x, np.asarray(right, bool).astype(float), l2=l2)
    return Calibration(tuple(float(c) for c in coef), b, FEATURES, fitted_on)


def reliability_table(conf: np.ndarray, right: np.ndarray, edges=(0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)) -> list[dict]:
    """Per confidence bin [lo, hi): the number and share of answers, and the share right."""
    conf = np.asarray(conf, dtype=np.float64)
    right = np.asarray(right, bool)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf >= lo) & ((conf < hi) if hi < edges[-1] else (conf <= hi))
        n = int(sel.sum())
        rows.append({"lo": lo, "hi": hi, "n": n, "share": n / len(conf) if len(conf) else 0.0,
                     "accuracy": float(right[sel].mean()) if n else None,
                     "mean_confidence": float(conf[sel].mean()) if n else None})
    return rows
