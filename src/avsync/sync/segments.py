"""The offset over time, part 1: cut a file into spans of speech and read each one.

A segment holds about ``TARGET_SPEECH_S`` seconds of speech with a face in view
(between ``MIN_SPEECH_S`` and ``MAX_SPEECH_S`` where the material allows), never
crosses a shot cut, and is read on its own, from the face whose lips agree best
with the voice in it. A stretch of at least ``GAP_S`` seconds without speech, or
without any face, becomes a segment of its own with no reading and a reason: it
is never forced to an offset.

The planning (``plan_segments``) is pure maths on per-frame masks; reading
(``read_face``) calls an estimator's ``scores`` for each face that is seen.
``speaking_seconds`` and ``pool_curves`` turn the chosen segments into the
file's representative curve: the faces' file curves, weighted by how much
speech each is the active speaker for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Speech (s) a segment aims to hold.
TARGET_SPEECH_S = 4.0
#: A last segment of a shot with less speech than this joins the one before it (if that stays <= MAX).
MIN_SPEECH_S = 2.0
#: Most speech (s) a segment holds.
MAX_SPEECH_S = 10.0
#: A stretch this long (s) with no speech, or no face, is a segment of its own, without a reading.
GAP_S = 2.0
#: A segment with less speech with a face than this (s) is not read.
MIN_READ_S = 0.6

NO_SPEECH = "no speech"
NO_FACE = "no face in view"
TOO_LITTLE = "too little speech with a face in view"


@dataclass(frozen=True)
class Span:
    """Analysed frames ``[start, stop)`` of one shot; ``reason`` is set where the span is not read."""

    start: int
    stop: int
    shot: int
    speech_s: float
    reason: str | None = None


@dataclass
class Segment:
    start_s: float
    end_s: float
    offset_ms: float | None
    confidence: float
    face: int | None
    shot: int
    speech_s: float
    reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "offset_ms": None if self.offset_ms is None else round(self.offset_ms, 1),
            "confidence": round(self.confidence, 2), "face": self.face, "shot": self.shot,
            "speech_s": round(self.speech_s, 2), "reason": self.reason,
        }


def plan_segments(heard: np.ndarray, seen: np.ndarray, shot: np.ndarray, frame_s: float,
                  target_s: float | None = None) -> list[Span]:
    """Spans of frames to read, and spans without evidence (with their reason).

    ``heard``: speech per frame; ``seen``: some face in view per frame; ``shot``:
    each frame's shot number (non-decreasing). Spans cover every frame once and
    aim at ``target_s`` (default ``TARGET_SPEECH_S``) seconds of speech each.
    """
    target = TARGET_SPEECH_S if target_s is None else float(target_s)
    heard, seen, shot = np.asarray(heard, bool), np.asarray(seen, bool), np.asarray(shot)
    n = len(heard)
    out: list[Span] = []
    gap = max(1, int(round(GAP_S / frame_s)))
    edges = [0, *(np.flatnonzero(np.diff(shot)) + 1).tolist(), n] if n else [0]
    for a, b in zip(edges[:-1], edges[1:]):
        out.extend(_plan_shot(heard, seen, a, b, int(shot[a]), frame_s, gap, target))
    return out


def _plan_shot(heard, seen, a, b, shot, frame_s, gap, target) -> list[Span]:
    usable = heard[a:b] & seen[a:b]
    spans: list[Span] = []
    start, count, i = a, 0, a
    while i < b:
        if not usable[i - a]:
            j = i  # the run of frames without evidence starting at i
            while j < b and not usable[j - a]:
                j += 1
            if j - i >= gap:
                if count:
                    spans.append(Span(start, i, shot, count * frame_s))
                elif i > start:  # a short evidence-free stretch before this long one joins it
                    i = start
                no_speech = (~heard[i - a : j - a]).sum() >= (~seen[i - a : j - a]).sum()
                spans.append(Span(i, j, shot, 0.0, NO_SPEECH if no_speech else NO_FACE))
                start, count = j, 0
            i = j
            continue
        count += 1
        i += 1
        if count * frame_s >= target:
            spans.append(Span(start, i, shot, count * frame_s))
            start, count = i, 0
    if start < b:
        if count == 0 and spans and spans[-1].reason is None:  # trailing frames with no evidence
            last = spans.pop()
            spans.append(Span(last.start, b, shot, last.speech_s))
        else:
            spans.append(Span(start, b, shot, count * frame_s))
    return [s if s.reason or s.speech_s >= MIN_READ_S else Span(s.start, s.stop, shot, s.speech_s, TOO_LITTLE)
            for s in _merge_short(spans, max(MAX_SPEECH_S, 2 * target))]


def _merge_short(spans: list[Span], most: float) -> list[Span]:
    """A read span with less than MIN_SPEECH_S of speech joins the read span it touches (the one before
    it first), as long as the two hold at most ``most`` seconds together."""
    spans = list(spans)
    k = 0
    while k < len(spans):
        sp = spans[k]
        if sp.reason is None and sp.speech_s < MIN_SPEECH_S:
            for j in (k - 1, k + 1):
                if 0 <= j < len(spans) and spans[j].reason is None and \
                        spans[j].speech_s + sp.speech_s <= most:
                    a, b = sorted((j, k))
                    spans[a:b + 1] = [Span(spans[a].start, spans[b].stop, sp.shot,
                                           spans[a].speech_s + spans[b].speech_s)]
                    k = a - 1
                    break
        k += 1
    return spans


def read_face(spans: list[Span], found: np.ndarray, fps: float, score, read) -> dict[int, object]:
    """One face's readings of the spans it is seen in: ``{span index: reading}``.

    ``score(start, length)`` gives the face's (L,) score curve over frames
    ``[start, start+length)``; ``read(curve, start, stop)`` turns it into an
    object with ``lag_s``, ``confidence`` and ``peak`` (NaN: nothing to read).
    """
    out = {}
    for k, sp in enumerate(spans):
        if sp.reason is not None or found[sp.start : sp.stop].sum() / fps < MIN_READ_S:
            continue
        r = read(score(sp.start, sp.stop - sp.start), sp.start, sp.stop)
        if np.isfinite(r.peak):
            out[k] = r
    return out


def choose(spans: list[Span], times: np.ndarray, fps: float, per_face: dict[int, dict]) -> list[Segment]:
    """Each span's segment: the reading of the face whose lips agree best with the voice there."""
    t0 = float(times[0]) if len(times) else 0.0
    out = []
    for k, sp in enumerate(spans):
        start_s = float(times[sp.start] - t0)
        end_s = float(times[sp.stop - 1] - t0 + 1.0 / fps)
        cands = [(r.confidence, r.peak, face, r) for face, reads in per_face.items() if (r := reads.get(k))]
        if not cands:
            out.append(Segment(start_s, end_s, None, 0.0, None, sp.shot, sp.speech_s, sp.reason or NO_FACE))
            continue
        _, _, face, r = max(cands, key=lambda c: (c[0], c[1]))
        out.append(Segment(start_s, end_s, r.lag_s * 1000.0, r.confidence, face, sp.shot, sp.speech_s))
    return out


def speaking_seconds(segments: list[Segment]) -> dict[int, float]:
    """Seconds of speech (with a face in view) in the segments where each face is the active speaker."""
    out: dict[int, float] = {}
    for g in segments:
        if g.face is not None:
            out[g.face] = out.get(g.face, 0.0) + g.speech_s
    return out


def pool_curves(curves, weights) -> np.ndarray:
    """The weighted mean of several score curves over the same lags, lag by lag.

    Each file curve is already a mean of block scores per lag, on each face's own
    scale, so the faces pool as a weighted mean (weights normalised to 1), not a
    sum: the pooled curve stays on the faces' scale, and a face's share of it is
    its weight's share. At a lag where some curves have no score (NaN) the weights
    are renormalised over those that have one; NaN where none has. Faces with
    weight 0 do not enter at all.
    """
    c = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64).reshape(-1, 1)
    if c.shape[0] != w.shape[0]:
        raise ValueError(f"{c.shape[0]} curves but {w.shape[0]} weights")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and >= 0")
    w = w * np.isfinite(c)
    total = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.nan_to_num(c) * w).sum(0) / total
    return np.where(total > 0, out, np.nan)


#: Length (s) and hop (s) of the short windows that place a change point between two segments.
LOCATE_WINDOW_S = 1.0
LOCATE_HOP_S = 0.2


def locate_change(centres_s: np.ndarray, margin: np.ndarray) -> float | None:
    """Where the offset changes, from short windows across the two segments around a change.

    ``margin[k]`` is how much better window ``k`` (centred at ``centres_s[k]``)
    scores the later piece's offset than the earlier one's (NaN: no evidence).
    The change is put where the evidence before it favours the earlier offset,
    and after it the later one, the most: ``argmax_x sum_{c<x} -m + sum_{c>=x} m``.
    """
    c = np.asarray(centres_s, dtype=np.float64)
    m = np.nan_to_num(np.asarray(margin, dtype=np.float64), nan=0.0)
    if len(c) < 2 or not np.any(m):
        return None
    # The split before window k: windows < k count -m, windows >= k count +m.
    before = np.concatenate([[0.0], np.cumsum(-m)])
    after = np.concatenate([np.cumsum(m[::-1])[::-1], [0.0]])
    k = int(np.argmax(before + after))
    if k == 0:
        return float(c[0])
    if k == len(c):
        return float(c[-1])
    return float(0.5 * (c[k - 1] + c[k]))
