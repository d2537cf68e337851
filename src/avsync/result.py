"""The result of ``avsync.detect``: numbers, and the sentence that explains them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from avsync.sync.timeline import describe


@dataclass
class FaceInfo:
    track_id: int
    frames_found: int
    coverage: float  # fraction of analysed frames with this face
    first_s: float
    last_s: float
    face_px: float  # median face size in pixels
    offset_ms: float | None
    confidence: float
    active: bool  # the active speaker: the face with the most speaking_s (the answer pools every face with any)
    shot: int = 0  # the shot the face is seen in (a track never crosses a cut)
    box: list[float] | None = None  # median face box [x, y, w, h] in frame pixels
    speaking_s: float = 0.0  # seconds of speech in segments where this face is the active speaker


@dataclass
class WindowEstimate:
    start_s: float
    end_s: float
    offset_ms: float | None
    offset_frames: float | None
    confidence: float


@dataclass
class SyncResult:
    """How far the audio is from the picture. ``offset_ms > 0``: the audio lags."""

    path: str
    offset_ms: float
    offset_frames: float
    fps: float
    duration_s: float
    confidence: float
    in_sync: bool
    tolerance_ms: float
    tolerance_frames: float
    reliable: bool
    method: str
    model: str
    search_ms: float
    #: Seconds of speech with a face the answer is read from visible: the evidence the answer rests on.
    evidence_s: float = 0.0
    #: Why the confidence is low, in words (None when the answer is reliable).
    caution: str | None = None
    #: Spans [start_s, end_s] (from the first frame) where the file is damaged: packets that
    #: could not be decoded were skipped, as players do, and sync was judged from the rest.
    damaged: list[list[float]] = field(default_factory=list)
    faces: list[FaceInfo] = field(default_factory=list)
    windows: list[WindowEstimate] | None = None
    #: Shots as [{start_s, end_s}] (times from the first frame).
    shots: list[dict] = field(default_factory=list)
    #: The offset over time: spans of a few seconds of speech, each read on its own
    #: ([{start_s, end_s, offset_ms, confidence, face, shot, speech_s, reason}]; offset_ms None with a reason
    #: where there is no speech or no face).
    segments: list[dict] = field(default_factory=list)
    #: The fitted model of the offset over time (sync/timeline.py), None when no segment could be read.
    timeline: dict | None = None
    curve: dict | None = None
    #: With ``detect(similarity=True)``: the active face's window-by-lag scores
    #: (``times_s`` of each 5-frame window's centre, ``lags_ms``, ``scores`` W x L, NaN: no face).
    similarity: dict | None = None

    @property
    def syncnet_offset_frames(self) -> int:
        """SyncNet's sign and rounding: positive means the audio leads."""
        return -int(round(self.offset_frames)) + 0

    @property
    def correction_ms(self) -> float:
        """How far to advance the audio to fix it (negative: delay it)."""
        return self.offset_ms

    def sentence(self) -> str:
        ms = round(abs(self.offset_ms))
        frames = abs(self.offset_frames)
        fps = f"{self.fps:.2f}".rstrip("0").rstrip(".")
        if ms == 0:
            where = "audio and video line up (0 ms)"
        else:
            word = "late" if self.offset_ms > 0 else "early"
            where = f"audio is {ms} ms {word} ({frames:.1f} frames at {fps} fps)"
        verdict = "in sync" if self.in_sync else "out of sync"
        tol = f"±{self.tolerance_ms:.0f} ms"
        text = f"{where}; confidence {self.confidence:.2f} -> {verdict} (tolerance {tol})"
        over_time = describe(self.timeline, self.tolerance_ms)
        if over_time:
            text += f"; {over_time}"
        if not self.reliable:
            text += f"; low confidence ({self.caution or 'weak evidence'}): treat with caution"
        if self.damaged:
            spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in self.damaged)
            text += f"; caution: the file is damaged at {spans} (skipped; judged from the rest)"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["syncnet_offset_frames"] = self.syncnet_offset_frames
        d["correction_ms"] = self.correction_ms
        d["sentence"] = self.sentence()
        return _finite(d)


def _finite(obj):
    """JSON has no NaN: map non-finite floats to None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
