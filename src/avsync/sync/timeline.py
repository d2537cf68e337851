"""The offset over time: fit the simplest model that explains a file's segment readings.

A file is read in spans of a few seconds of speech (segments), each giving an
offset and a confidence, or nothing where there is no speech or no face. Three
models of the offset over time compete:

* ``constant``  — one offset for the whole file (the usual case);
* ``linear``    — an offset that changes at a steady rate (clock or frame-rate
  mismatch between the audio and the picture: drift);
* ``piecewise`` — constant offsets that jump at change points (edits).

Segment readings have outliers (a short span is sometimes read wrong), so every
fit is robust: a reading costs ``min((r / sigma)^2, 4)`` — a squared error in
units of ``sigma`` that stops growing two sigmas out, so one wild reading can
never buy a change point. Each reading is weighted by its confidence.

``sigma`` is half a frame, or the scatter the readings themselves show if that is
larger (``reading_scatter``: the spread of the differences between consecutive
readings, which neither a steady drift nor a few jumps move). Real footage read
across cuts scatters by more than half a frame from shot to shot (each shot, or
each source, sits a little off on its own); with a fixed half-frame sigma almost
every reading of a drifting file then costs the cap under any model, the line
gains nothing by following the drift, and a staircase of pieces wins instead.

**The criterion** (stated, so that it can be checked): the model with the
smallest ``cost + penalty * parameters`` wins, where cost is the weighted sum
above, ``penalty = max(2, ln n)`` for ``n`` readings (the BIC's per-parameter
price), and a constant has 1 parameter, a line 2, and pieces one for their
first level and, for each change point, two (its level and its place) or
``CUT_CHANGE_PARAMS`` where it falls at a shot cut (the cut gives its place).
On top of it, a more complex model must matter in practice: a line only wins if
it moves the offset by at least one frame over the span read, and only from
``MIN_READINGS_LINEAR`` readings over ``MIN_DRIFT_SPAN_S`` seconds on; a change point
only if the offsets on its two sides differ by at least one frame and each side
holds at least two readings, or one at a cut (an edit between two shots of a few
seconds each leaves one reading a side). Ties go to the simpler model.

Everything here is pure numpy on times and offsets in seconds and ms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Readings further than this many sigmas from the fit cost the same (outliers).
OUTLIER_SIGMAS = 2.0

#: Largest number of constant pieces the piecewise model may use.
MAX_PIECES = 6

#: Fewest readings on each side of a change point.
MIN_READINGS_PER_PIECE = 2

#: Parameters a change point at a shot cut costs: its piece's level only, since the cut, not the fit, places
#: it (a change point elsewhere costs two: its level and its place). Either side of a change at a cut may
#: hold a single reading. Set on joins of train-split clips (``benchmarks/cut_changes.py``), never on dev.
CUT_CHANGE_PARAMS = 1.8

#: A line needs at least this many readings over at least this many seconds: drift
#: between a recorder's clocks builds up over minutes, and a handful of readings
#: over a short clip cannot tell it from one wrong reading.
MIN_READINGS_LINEAR = 6
MIN_DRIFT_SPAN_S = 30.0

#: The scatter of the readings is measured from this many readings on (fewer
#: consecutive differences cannot tell scatter from a jump).
MIN_READINGS_SCATTER = MIN_READINGS_LINEAR

#: Floor on a reading's weight, so a low-confidence reading still counts a little.
MIN_WEIGHT = 0.05

KINDS = ("constant", "linear", "piecewise")


@dataclass(frozen=True)
class Piece:
    """A stretch of the file with one offset."""

    start_s: float
    end_s: float
    offset_ms: float


@dataclass(frozen=True)
class Timeline:
    """The fitted offset over time. ``offset_at(t)`` gives the offset (ms) at time ``t`` (s)."""

    kind: str
    #: The representative offset: the constant; the line's value at the middle of
    #: the span read; the offset of the piece holding the most readings' weight.
    offset_ms: float
    #: The line's slope in ms per minute (0 for the other kinds).
    drift_ms_per_min: float
    change_points_s: tuple[float, ...]
    #: Weighted median absolute residual of the readings around the fit (ms).
    residual_ms: float
    #: Line: offset (ms) at t = 0; piecewise: see ``pieces``.
    intercept_ms: float = 0.0
    pieces: tuple[Piece, ...] = field(default_factory=tuple)
    #: The criterion's value for every kind that was tried (lower is better).
    scores: dict = field(default_factory=dict)
    #: The span read: from the first segment with a reading to the end of the last (s).
    span_s: tuple[float, float] = (0.0, 0.0)

    def offset_at(self, t_s) -> np.ndarray:
        t = np.asarray(t_s, dtype=np.float64)
        if self.kind == "linear":
            return self.intercept_ms + self.drift_ms_per_min * t / 60.0
        if self.kind == "piecewise":
            levels = np.array([p.offset_ms for p in self.pieces])
            return levels[np.searchsorted(np.asarray(self.change_points_s), t, side="right")]
        return np.full(t.shape, self.offset_ms)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "offset_ms": round(self.offset_ms, 2),
            "drift_ms_per_min": round(self.drift_ms_per_min, 3),
            "change_points_s": [round(c, 3) for c in self.change_points_s],
            "residual_ms": round(self.residual_ms, 2),
            "span_s": [round(self.span_s[0], 3), round(self.span_s[1], 3)],
            "pieces": [{"start_s": round(p.start_s, 3), "end_s": round(p.end_s, 3),
                        "offset_ms": round(p.offset_ms, 2)} for p in self.pieces],
        }


def robust_cost(residual_ms: np.ndarray, weights: np.ndarray, sigma_ms: float) -> float:
    """Weighted truncated-quadratic cost of residuals (ms) in units of ``sigma_ms``."""
    u = np.asarray(residual_ms, dtype=np.float64) / sigma_ms
    return float(np.sum(weights * np.minimum(u * u, OUTLIER_SIGMAS ** 2)))


def weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _level(y: np.ndarray, w: np.ndarray, sigma_ms: float) -> float:
    """Robust constant fit: weighted median, then the weighted mean of its inliers."""
    c = weighted_median(y, w)
    for _ in range(3):
        inl = np.abs(y - c) < OUTLIER_SIGMAS * sigma_ms
        if not inl.any():
            break
        c = float(np.average(y[inl], weights=w[inl]))
    return c


def _line(t: np.ndarray, y: np.ndarray, w: np.ndarray, sigma_ms: float) -> tuple[float, float]:
    """Robust line (intercept ms, slope ms/s): Theil–Sen start, then inlier least squares."""
    n = len(t)
    if n < 2 or np.ptp(t) <= 0:
        return _level(y, w, sigma_ms), 0.0
    i, j = np.triu_indices(n, k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    slope = weighted_median((y[j] - y[i])[ok] / dt[ok], (w[i] * w[j])[ok])
    icpt = weighted_median(y - slope * t, w)
    for _ in range(5):
        inl = np.abs(y - (icpt + slope * t)) < OUTLIER_SIGMAS * sigma_ms
        if inl.sum() < 2 or np.ptp(t[inl]) <= 0:
            break
        sw = np.sqrt(w[inl])
        a = np.stack([np.ones(inl.sum()), t[inl]], axis=1) * sw[:, None]
        (icpt, slope), *_ = np.linalg.lstsq(a, y[inl] * sw, rcond=None)
    return float(icpt), float(slope)


def reading_scatter(y: np.ndarray) -> float:
    """Robust standard deviation of one reading (ms), from consecutive readings' differences.

    ``1.4826 * median |y[i+1] - y[i]| / sqrt(2)``: the MAD of the differences,
    scaled to a Gaussian's sigma; a drift moves each difference by a fraction of
    a frame and a jump moves only one difference, so neither inflates it. NaN
    with fewer than ``MIN_READINGS_SCATTER`` readings.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) < MIN_READINGS_SCATTER:
        return float("nan")
    return float(1.4826 * np.median(np.abs(np.diff(y))) / np.sqrt(2.0))


def _split_cost(y: np.ndarray, w: np.ndarray, sigma_ms: float) -> float:
    return robust_cost(y - _level(y, w, sigma_ms), w, sigma_ms)


def _best_split(y, w, lo, hi, sigma_ms, min_jump_ms, at_cut):
    """Best single change point in readings [lo, hi): (gain, k) or None. ``at_cut[k]``: a shot cut lies
    between readings k - 1 and k, or k is the first or last (a piece of fewer than
    ``MIN_READINGS_PER_PIECE`` readings must be whole shots: cuts, or the file's ends, on both its sides)."""
    base = _split_cost(y[lo:hi], w[lo:hi], sigma_ms)
    best = None
    for k in range(lo + 1, hi):
        if k - lo < MIN_READINGS_PER_PIECE and not (at_cut[lo] and at_cut[k]):
            continue
        if hi - k < MIN_READINGS_PER_PIECE and not (at_cut[k] and at_cut[hi]):
            continue
        a, b = y[lo:k], y[k:hi]
        wa, wb = w[lo:k], w[k:hi]
        la, lb = _level(a, wa, sigma_ms), _level(b, wb, sigma_ms)
        if abs(la - lb) < min_jump_ms:
            continue
        gain = base - robust_cost(a - la, wa, sigma_ms) - robust_cost(b - lb, wb, sigma_ms)
        if best is None or gain > best[0]:
            best = (gain, k)
    return best


def _piecewise(y, w, sigma_ms, min_jump_ms, max_pieces, at_cut):
    """Binary segmentation: the sequence of split lists for 2..max_pieces pieces."""
    bounds = [0, len(y)]
    out = []
    while len(bounds) - 1 < max_pieces:
        cands = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            s = _best_split(y, w, lo, hi, sigma_ms, min_jump_ms, at_cut)
            if s is not None:
                cands.append(s)
        if not cands:
            break
        gain, k = max(cands)
        if gain <= 0:
            break
        bounds = sorted(bounds + [k])
        out.append(list(bounds))
    return out


def _merge_small_jumps(bounds, y, w, sigma_ms, min_jump_ms):
    """Drop change points whose neighbouring levels ended up closer than a frame."""
    changed = True
    while changed and len(bounds) > 2:
        changed = False
        levels = [_level(y[a:b], w[a:b], sigma_ms) for a, b in zip(bounds[:-1], bounds[1:])]
        for i in range(1, len(bounds) - 1):
            if abs(levels[i] - levels[i - 1]) < min_jump_ms:
                bounds = bounds[:i] + bounds[i + 1:]
                changed = True
                break
    return bounds


def fit_timeline(
    start_s,
    end_s,
    offset_ms,
    confidence,
    frame_ms: float,
    sigma_frames: float = 0.5,
    max_pieces: int = MAX_PIECES,
    shot=None,
    cut_change_params: float = CUT_CHANGE_PARAMS,
) -> Timeline | None:
    """Fit the offset over time to segment readings; None when no segment has a reading.

    ``start_s``, ``end_s``: each segment's span; ``offset_ms``: its reading (NaN
    or None: no reading); ``confidence``: its weight in [0, 1]. ``frame_ms`` sets
    the scale: sigma is ``sigma_frames`` frames or the readings' own scatter
    (``reading_scatter``), whichever is larger, and a line or a jump must amount to
    at least one frame to be preferred over a constant. ``shot``: each segment's shot
    (segments never cross a cut); a change point between readings of two shots
    costs ``cut_change_params`` (``CUT_CHANGE_PARAMS``) and may leave one reading on a side.
    """
    s = np.asarray(start_s, dtype=np.float64)
    e = np.asarray(end_s, dtype=np.float64)
    y = np.array([np.nan if v is None else v for v in offset_ms], dtype=np.float64)
    c = np.asarray(confidence, dtype=np.float64)
    g = np.zeros(len(y), np.int64) if shot is None else np.asarray(shot, dtype=np.int64)
    keep = np.isfinite(y)
    if not keep.any():
        return None
    order = np.argsort(0.5 * (s + e)[keep], kind="stable")
    s, e, y, c, g = s[keep][order], e[keep][order], y[keep][order], c[keep][order], g[keep][order]
    t = 0.5 * (s + e)
    w = np.clip(np.nan_to_num(c, nan=0.0), MIN_WEIGHT, 1.0)
    n = len(y)
    at_cut = np.ones(n + 1, dtype=bool)  # at_cut[k]: readings k - 1 and k lie in different shots (or k = 0, n)
    at_cut[1:n] = g[1:] != g[:-1]
    scatter = reading_scatter(y)
    sigma = max(sigma_frames * frame_ms, scatter if np.isfinite(scatter) else 0.0)
    penalty = max(2.0, float(np.log(n)))
    first, last = float(s[0]), float(e[-1])

    def resid(fit):
        return float(weighted_median(np.abs(y - fit), w))

    level = _level(y, w, sigma)
    scores = {"constant": robust_cost(y - level, w, sigma) + penalty * 1}
    best = Timeline("constant", level, 0.0, (), resid(level), intercept_ms=level,
                    pieces=(Piece(first, last, level),))
    best_score = scores["constant"]

    if n >= 2 * MIN_READINGS_PER_PIECE:
        icpt, slope = _line(t, y, w, sigma)
        fit = icpt + slope * t
        scores["linear"] = robust_cost(y - fit, w, sigma) + penalty * 2
        long_enough = n >= MIN_READINGS_LINEAR and last - first >= MIN_DRIFT_SPAN_S
        if long_enough and abs(slope) * (t[-1] - t[0]) >= frame_ms and scores["linear"] < best_score:
            mid = 0.5 * (first + last)
            best = Timeline("linear", icpt + slope * mid, slope * 60.0, (), resid(fit),
                            intercept_ms=icpt)
            best_score = scores["linear"]

    if n >= 2 * MIN_READINGS_PER_PIECE or at_cut[1:n].any():
        for bounds in _piecewise(y, w, sigma, frame_ms, max_pieces, at_cut):
            bounds = _merge_small_jumps(bounds, y, w, sigma, frame_ms)
            k = len(bounds) - 1
            if k < 2:
                continue
            spans = list(zip(bounds[:-1], bounds[1:]))
            levels = [_level(y[a:b], w[a:b], sigma) for a, b in spans]
            fit = np.concatenate([np.full(b - a, lv) for (a, b), lv in zip(spans, levels)])
            params = 1 + sum(cut_change_params if at_cut[b] else 2 for b in bounds[1:-1])
            score = robust_cost(y - fit, w, sigma) + penalty * params
            scores[f"piecewise{k}"] = score
            if score < best_score:
                # A change point sits in the gap between the last reading of one
                # piece and the first of the next (the middle of any overlap).
                cps = tuple(float(0.5 * (e[b - 1] + s[b])) if s[b] >= e[b - 1]
                            else float(0.5 * (t[b - 1] + t[b])) for _, b in spans[:-1])
                edges = (first,) + cps + (last,)
                pieces = tuple(Piece(edges[i], edges[i + 1], levels[i]) for i in range(k))
                weight = [float(w[a:b].sum()) for a, b in spans]
                best = Timeline("piecewise", levels[int(np.argmax(weight))], 0.0, cps, resid(fit),
                                pieces=pieces)
                best_score = score

    return Timeline(best.kind, best.offset_ms, best.drift_ms_per_min, best.change_points_s,
                    best.residual_ms, best.intercept_ms, best.pieces, scores, (first, last))


def clock(t_s: float) -> str:
    """A time as m:ss, or h:mm:ss from an hour on."""
    t = int(round(max(t_s, 0.0)))
    h, m, sec = t // 3600, (t // 60) % 60, t % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _state(offset_ms: float, tolerance_ms: float) -> str:
    if abs(offset_ms) <= tolerance_ms:
        return "in sync"
    return f"{abs(offset_ms):.0f} ms {'late' if offset_ms > 0 else 'early'}"


#: Drift rates (ms per minute) of common frame-rate mix-ups: 1000/1001 (NTSC) is
#: 60 ms/min, 24 <-> 25 fps is 2,500 ms/min.
_RATE_MIXUPS = {"a 1000/1001 (NTSC) frame-rate mismatch": 60_000 * (1001 / 1000 - 1),
                "a 24/25 fps speed change": 60_000 * (25 / 24 - 1)}


def describe(d: dict, tolerance_ms: float) -> str | None:
    """The offset over time in words, for a ``Timeline.to_dict()``; None for a constant offset."""
    if d is None or d["kind"] == "constant":
        return None
    if d["kind"] == "linear":
        t0, t1 = d["span_s"]
        rate = d["drift_ms_per_min"]
        a = d["offset_ms"] + rate * (t0 - 0.5 * (t0 + t1)) / 60.0
        b = d["offset_ms"] + rate * (t1 - 0.5 * (t0 + t1)) / 60.0
        minutes = (t1 - t0) / 60.0
        over = f"{minutes:.0f} min" if minutes >= 2 else f"{t1 - t0:.0f} s"
        why = "likely a clock or frame-rate mismatch between the audio and the picture"
        for name, r in _RATE_MIXUPS.items():
            if abs(abs(rate) - r) <= 0.1 * r:
                why = f"likely {name}"
        ra, rb = round(a), round(b)
        if ra >= 0 and rb >= 0:
            span = f"{ra} ms to {rb} ms late"
        elif ra <= 0 and rb <= 0:
            span = f"{-ra} ms to {-rb} ms early"
        else:
            span = f"{abs(ra)} ms {'late' if ra > 0 else 'early'} to {abs(rb)} ms {'late' if rb > 0 else 'early'}"
        return f"audio drifts from {span} over {over} ({rate:+.1f} ms/min): {why}"
    pieces = d["pieces"]
    words = _state(pieces[0]["offset_ms"], tolerance_ms)
    for p in pieces[1:]:
        words += f" until {clock(p['start_s'])}, then {_state(p['offset_ms'], tolerance_ms)}"
    n = len(pieces) - 1
    return f"audio is {words}: {'an edit' if n == 1 else f'{n} edits'}"
