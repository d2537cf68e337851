"""MediaPipe's face-landmark network, run directly with LiteRT on a region avsync chooses.

The face mesh is the costliest step per frame. MediaPipe's ``FaceMesh``
solution wraps the network ``face_landmark.tflite`` (shipped inside the
mediapipe wheel) in a graph with its own detector, region tracking and packet
plumbing; avsync already tracks the face region itself, so it runs the same
network directly (``ai_edge_litert``, Google's TFLite runtime, with XNNPACK):

* the region is MediaPipe's own: a square of ``ROI_SCALE`` times the face's
  extent, turned so that the eyes are level (from the last landmarks' outer
  eye corners, points 33 and 263), resized to the network's 192 x 192 input,
  RGB scaled to [0, 1];
* the network gives 468 points in that square and a face-presence logit; a
  presence below ``MIN_PRESENCE`` means the face is lost there.

Measured on a train clip against the ``FaceMesh`` solution (both following the
face from the previous frame's landmarks): points within 0.5% of the
inter-ocular distance on average (lips 0.5%, 95th percentile 1.1%); 2.0 ms a
call against 3.3 ms on the same crops (one thread; docs/PROFILE.md has the
figures in context).
"""
from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

#: The network's input side (pixels).
INPUT_SIDE = 192
#: The region's side over the face's extent (MediaPipe's landmark region: 1.5).
ROI_SCALE = 1.5
#: A first look from a detector's box (the landmarks found there place the region for a second, final
#: look): ``ROI_SCALE`` times the landmarks' extent over the detector's box side, whose median is 1.03
#: (5-95%: 0.96-1.11) on the first frames of the train split's 37 wild-speaker faces.
DETECTOR_ROI_SCALE = 1.55
#: Face presence (sigmoid of the network's flag) below which the face is lost (MediaPipe's default 0.5).
MIN_PRESENCE = 0.5
#: Outer eye corners (mesh indices) that set the region's angle.
EYE_OUTER = (33, 263)


@lru_cache(maxsize=1)
def model_path() -> Path:
    """``face_landmark.tflite`` inside the installed mediapipe package (found without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mediapipe is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "modules" / "face_landmark" / "face_landmark.tflite"
    if not path.is_file():
        raise ImportError(f"mediapipe has no face_landmark.tflite at {path}")
    return path


def roi_matrix(cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """The (2, 3) affine map from frame pixels to the network's input: a square of ``side`` pixels
    centred on (cx, cy), turned by -``angle`` (radians) so that a face at that angle comes out level."""
    s = INPUT_SIDE / side
    c, si = np.cos(-angle) * s, np.sin(-angle) * s
    a = np.array([[c, -si], [si, c]])
    t = INPUT_SIDE / 2 - a @ np.array([cx, cy])
    return np.column_stack([a, t])


def eye_angle(pts: np.ndarray) -> float:
    """The angle (radians) of the line from the right-of-image eye corner to the other, from 468 points."""
    d = pts[EYE_OUTER[1], :2] - pts[EYE_OUTER[0], :2]
    return float(np.arctan2(d[1], d[0]))


class LandmarkModel:
    """The face-landmark network, one interpreter per calling thread (interpreters are not thread-safe)."""

    def __init__(self, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter  # loaded with the tracker, never at ``import avsync``

        self._make = lambda: Interpreter(model_path=str(model_path()), num_threads=threads)
        self._local = threading.local()

    def _interpreter(self):
        it = getattr(self._local, "it", None)
        if it is None:
            it = self._make()
            it.allocate_tensors()
            inp = it.get_input_details()[0]["index"]
            outs = [o["index"] for o in it.get_output_details()]
            self._local.it = it = (it, inp, outs)
        return it

    def run(self, warp, cx: float, cy: float, side: float, angle: float) -> tuple[np.ndarray, float]:
        """The 468 points (x, y, z in frame pixels; z on x's scale) of the face in the region, and the
        face presence (0-1). ``warp(m, size)`` cuts the region from the frame with the affine map ``m``."""
        it, inp, outs = self._interpreter()
        m = roi_matrix(cx, cy, side, angle)
        crop = warp(m, (INPUT_SIDE, INPUT_SIDE))
        it.set_tensor(inp, (crop.astype(np.float32) * (1.0 / 255.0))[None])
        it.invoke()
        pts = it.get_tensor(outs[0]).reshape(-1, 3).astype(np.float64)
        flag = float(it.get_tensor(outs[1]).ravel()[0])
        inv = cv2.invertAffineTransform(m)
        out = np.empty_like(pts)
        out[:, :2] = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        out[:, 2] = pts[:, 2] * side / INPUT_SIDE
        return out.astype(np.float32), 1.0 / (1.0 + np.exp(-flag))
