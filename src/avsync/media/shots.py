"""Shot cuts, found by PySceneDetect on the frames avsync already decodes.

PySceneDetect's ``AdaptiveDetector`` compares each frame's HSV content with a
rolling average of its neighbours, so a camera pan or a fast gesture, which
changes many frames in a row, is not taken for a cut. It is fed the analysed
frames as they are decoded (no second decode of the file), shrunk to
``SHOT_FRAME_WIDTH`` pixels wide, which keeps its cost to about a millisecond a
frame without changing which cuts it finds on the clips we have measured.

``scenedetect`` is imported only when a ``ShotDetector`` is made, never by ``import avsync``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Frames are shrunk to this width (pixels) before the cut detector sees them.
SHOT_FRAME_WIDTH = 192

#: Shortest shot, in seconds: a "cut" sooner than this after the previous one is ignored (flashes, wipes).
MIN_SHOT_S = 0.5


@dataclass(frozen=True)
class Shot:
    start_s: float
    end_s: float

    def to_dict(self) -> dict:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3)}


class ShotDetector:
    """Feed analysed frames in order with ``push``; ``cut_frames()`` gives the indices that start a new shot.

    ``fps`` is the analysis frame rate (it sets the shortest shot in frames).
    """

    #: Frames the detector looks ahead: a cut at frame i is known once frame i + LOOKAHEAD is pushed.
    LOOKAHEAD = 2

    def __init__(self, fps: float):
        from scenedetect.detectors import AdaptiveDetector

        self._det = AdaptiveDetector(min_scene_len=max(2, int(round(MIN_SHOT_S * fps))),
                                     window_width=self.LOOKAHEAD)
        self._n = 0
        self._cuts: list[int] = []

    def push(self, rgb: np.ndarray) -> list[int]:
        """Add the next frame (H, W, 3) RGB uint8; returns the cuts it revealed (frame indices, at most
        ``LOOKAHEAD`` frames back)."""
        import cv2

        h, w = rgb.shape[:2]
        if w > SHOT_FRAME_WIDTH:
            rgb = cv2.resize(rgb, (SHOT_FRAME_WIDTH, max(2, round(h * SHOT_FRAME_WIDTH / w))),
                             interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        new = [c for c in self._det.process_frame(self._n, bgr) if c > 0]
        self._cuts.extend(new)
        self._n += 1
        return new

    def cut_frames(self) -> list[int]:
        """Indices of the frames that begin a new shot (flushes the detector's look-ahead)."""
        if self._n:
            self._cuts.extend(self._det.post_process(self._n - 1) or [])
        return sorted({c for c in self._cuts if 0 < c < self._n})


def shots_from_cuts(times: np.ndarray, cuts: list[int], frame_s: float) -> list[Shot]:
    """Shots as time spans relative to the first frame, from frame times and the frames that start shots."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return []
    t0 = times[0]
    edges = [0, *cuts, len(times)]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            out.append(Shot(float(times[a] - t0), float(times[b - 1] - t0 + frame_s)))
    return out


def shot_index(n_frames: int, cuts: list[int]) -> np.ndarray:
    """Per analysed frame, the number of the shot it belongs to."""
    idx = np.zeros(n_frames, dtype=np.int32)
    for c in cuts:
        idx[c:] += 1
    return idx
