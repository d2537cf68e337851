"""Pure metrics of the seed papers' evaluation protocols (no media, no models).

Errors are in frames of the clip's own rate. "Within ±1 frame" at clip level
means |predicted - truth| <= 1.5 frame durations (predictions fall between
frames); on integer-lag protocols (context windows, strict) it means <= 1.
"""
from __future__ import annotations

import numpy as np

#: Clip-level tolerances (frame durations): within ±1 frame, and exact.
CLIP_PM1 = 1.5
CLIP_EXACT = 0.5


def argbest(scores: np.ndarray, lags: np.ndarray) -> int:
    """Index of the best finite score; ties go to the lag nearest zero; -1 if none."""
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).any():
        return -1
    filled = np.where(np.isfinite(s), s, -np.inf)
    ties = np.flatnonzero(filled == filled.max())
    return int(ties[np.argmin(np.abs(lags[ties]))])


def clip_summary(errors_frames: np.ndarray, fps: np.ndarray, failures: int) -> dict:
    """Accuracy within ±1 frame and exact, MAE in ms, over clip-level errors."""
    e = np.asarray(errors_frames, dtype=np.float64)
    n = len(e)
    if n == 0:
        return {"n": 0, "failures": int(failures), "acc_pm1": None, "acc_exact": None, "mae_ms": None}
    ms = np.abs(e) * 1000.0 / np.asarray(fps, dtype=np.float64)
    return {
        "n": n,
        "failures": int(failures),
        # A failure counts as wrong.
        "acc_pm1": float((np.abs(e) <= CLIP_PM1).sum() / (n + failures)),
        "acc_exact": float((np.abs(e) <= CLIP_EXACT).sum() / (n + failures)),
        "mae_ms": float(ms.mean()),
        "median_error_frames": float(np.median(e)),
    }


def shift_consistent(errors_frames, clip_ids, tol: float = CLIP_PM1) -> np.ndarray:
    """Per trial: within ``tol`` frames of its clip's own offset, the median signed error over the
    clip's trials (the benchmark protocol's shift-consistent accuracy). A constant guess fails it."""
    e = np.asarray(errors_frames, dtype=np.float64)
    ids = np.asarray(clip_ids)
    out = np.zeros(len(e), bool)
    for c in np.unique(ids):
        sel = ids == c
        out[sel] = np.abs(e[sel] - np.median(e[sel])) <= tol + 1e-9
    return out


def reliability(errors_frames, confidence, reliable, consistent, n_all: int) -> dict:
    """How far the confidence can be trusted: the share of trials marked reliable (of ``n_all``, failures
    included), how many of those are right (absolute and shift-consistent), and a table of accuracy per
    confidence bin."""
    from avsync.sync.confidence import reliability_table

    e = np.asarray(errors_frames, dtype=np.float64)
    rel = np.asarray(reliable, bool)
    right = np.abs(e) <= CLIP_PM1
    cons = np.asarray(consistent, bool)
    return {
        "reliable_share": float(rel.sum() / n_all) if n_all else None,
        "reliable_n": int(rel.sum()),
        "reliable_acc_pm1": float(right[rel].mean()) if rel.any() else None,
        "reliable_acc_consistent": float(cons[rel].mean()) if rel.any() else None,
        "unreliable_acc_pm1": float(right[~rel].mean()) if (~rel).any() else None,
        "bins": [{**b, "accuracy_consistent": c["accuracy"]} for b, c in
                 zip(reliability_table(np.asarray(confidence, float), right),
                     reliability_table(np.asarray(confidence, float), cons))],
    }


def context_windows(per5: np.ndarray, n_context: int, sub: int = 5) -> np.ndarray:
    """Average 5-frame sub-window score rows into non-overlapping N-frame windows.

    ``per5`` is (S, L): the scores of the sub-windows starting at frames
    0..S-1 (S = n_frames - sub + 1). Window w covers frames [w*N, w*N + N) and
    averages the sub-windows starting in [w*N, w*N + N - sub]. Returns (W, L).
    """
    per5 = np.asarray(per5, dtype=np.float64)
    n_frames = per5.shape[0] + sub - 1
    n_win = n_frames // n_context
    out = np.full((n_win, per5.shape[1]), np.nan)
    for w in range(n_win):
        rows = per5[w * n_context : w * n_context + n_context - sub + 1]
        ok = np.isfinite(rows).all(1)
        if ok.any():
            out[w] = rows[ok].mean(0)
    return out


def window_accuracy(window_scores: np.ndarray, lags_frames: np.ndarray, truth_frames: float, tol: float) -> tuple[int, int]:
    """(correct, total) of arg-best window predictions within ``tol`` frames of the truth.

    Windows with no finite score count as wrong.
    """
    correct = 0
    for row in np.asarray(window_scores):
        i = argbest(row, lags_frames)
        if i >= 0 and abs(lags_frames[i] - truth_frames) <= tol + 1e-9:
            correct += 1
    return correct, len(window_scores)


def rmse(pred_frames: np.ndarray, truth_frames: np.ndarray) -> float:
    p, t = np.asarray(pred_frames, dtype=np.float64), np.asarray(truth_frames, dtype=np.float64)
    return float(np.sqrt(np.mean((p - t) ** 2))) if len(p) else float("nan")


def no_information_rmse(max_offset: int) -> float:
    """rMSE of always predicting 0 for offsets uniform on the integers -max..max."""
    k = np.arange(-max_offset, max_offset + 1)
    return float(np.sqrt(np.mean(k.astype(np.float64) ** 2)))


def per_offset_table(truths: np.ndarray, errors: np.ndarray) -> list[dict]:
    """Per true offset (frames): count, ±1 accuracy, mean signed and absolute error."""
    t, e = np.asarray(truths), np.asarray(errors, dtype=np.float64)
    rows = []
    for k in sorted(set(t.tolist())):
        sel = t == k
        rows.append({
            "offset_frames": k,
            "n": int(sel.sum()),
            "acc_pm1": float((np.abs(e[sel]) <= CLIP_PM1).mean()),
            "mean_error_frames": float(e[sel].mean()),
            "mean_abs_error_frames": float(np.abs(e[sel]).mean()),
        })
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))
