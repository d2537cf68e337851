"""Find and follow faces through a video with MediaPipe, in bounded memory.

Two MediaPipe models, both shipped inside the ``mediapipe`` wheel:

* the full-range BlazeFace detector, run on a downscaled frame at the start,
  whenever a face is lost, and once a second to notice new faces;
* the face-landmark network (468 points), run every frame on a region around
  each tracked face placed from its last landmarks (``face.landmark_model``:
  the network run directly, without MediaPipe's FaceMesh graph), so small
  faces in wide shots are seen at a useful size.

Each track keeps, per analysed frame, the ``KEY_INDICES`` landmarks in frame
pixels, or NaN where the face was not found; nothing is invented for frames
where a face is lost. Optionally it also keeps aligned mouth crops.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from avsync.constants import DETECT_LONG_SIDE, MOUTH_CROP_HW
from avsync.face.landmark_model import DETECTOR_ROI_SCALE, MIN_PRESENCE, ROI_SCALE, LandmarkModel, eye_angle
from avsync.face.landmarks import KEY_INDICES, LEFT_EYE_OUTER, N_LIP, RIGHT_EYE_OUTER
from avsync.native_logs import Silencer

# MediaPipe logs through glog/absl to stderr; keep the CLI output clean.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_KEY = list(KEY_INDICES)
#: Extra mesh points read only to place the face box (chin, jaw line, forehead).
_BOX_EXTRA = [152, 10, 234, 454, 58, 288]
_READ = _KEY + _BOX_EXTRA
#: While no face is tracked, or one is lost, the detector runs every this many frames.
_SEARCH_EVERY = 3
#: Searches that found nothing try the harder cases (tight crops, small faces) once in this many.
_HARD_SEARCH_EVERY = 3
#: Border added on each side (share of the frame) when looking for a face that fills the frame.
_PAD = 0.4


#: MediaPipe modules that ``import mediapipe`` runs but avsync never uses: ``drawing_utils`` imports
#: matplotlib.pyplot (about 0.4 s of start-up here), the audio tasks import sounddevice (which looks
#: for PortAudio with ``ctypes.util.find_library``, running ``ldconfig``: 0.1-0.5 s).
_UNUSED_MP = ("mediapipe.python.solutions.drawing_utils", "mediapipe.python.solutions.drawing_styles",
              "mediapipe.tasks.python.audio")


class _LoadOnUse(types.ModuleType):
    """Stands in for a module until one of its attributes is read; then the real module is loaded.

    (``importlib.util.LazyLoader`` cannot do this: the import system reads the
    module's ``__spec__`` when a package imports it, which loads it at once.)
    """

    def __getattr__(self, attr: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)  # also rebinds the parent package's attribute to it
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def import_mediapipe():
    """``import mediapipe`` without running its drawing utilities (matplotlib) or audio tasks (sounddevice)
    until someone uses them."""
    if "mediapipe" in sys.modules:
        import mediapipe

        return mediapipe
    stubs = {}
    for name in _UNUSED_MP:
        if name not in sys.modules:
            stubs[name] = sys.modules[name] = _LoadOnUse(name)
            stubs[name].__spec__ = None
    import mediapipe

    for name, stub in stubs.items():  # ``mp.solutions.drawing_utils`` works as before, loading on use
        parent, _, short = name.rpartition(".")
        if sys.modules.get(name) is stub:
            setattr(sys.modules[parent], short, stub)
    return mediapipe


@dataclass
class FaceTrack:
    """One face followed through the video."""

    track_id: int
    first_frame: int
    #: Per analysed frame (from ``first_frame``): (K, 3) key landmarks in pixels, NaN if lost.
    key: list = field(default_factory=list)
    #: Per analysed frame: aligned grey mouth crop (H, W) uint8, or None; only if crops are kept
    #: (grey: the learned models read luma, and a 30-min track holds a crop per frame).
    crops: list = field(default_factory=list)
    #: Per analysed frame (from ``first_frame``): face box side in pixels, NaN if lost.
    sizes: list = field(default_factory=list)
    #: Per analysed frame (from ``first_frame``): face box centre (x, y) in pixels, NaN if lost.
    centres: list = field(default_factory=list)
    #: The shot the track lives in (a track never crosses a cut).
    shot: int = 0
    #: Per analysed frame (from ``first_frame``): the visual encoder's (D,) embedding, float32, when the
    #: crops were embedded while the file was decoded (``models.stream.CropEmbedder``; ``crops`` is then empty).
    embedding: np.ndarray | None = None

    def landmarks(self, n_frames: int) -> np.ndarray:
        """(n_frames, K, 3) key landmarks over the whole analysed timeline."""
        out = np.full((n_frames, len(KEY_INDICES), 3), np.nan, dtype=np.float32)
        stop = min(n_frames, self.first_frame + len(self.key))
        if stop > self.first_frame:
            out[self.first_frame : stop] = np.stack(self.key[: stop - self.first_frame])
        return out

    def found(self, n_frames: int) -> np.ndarray:
        """(n_frames,) bool: where this face was found (from the per-frame sizes)."""
        out = np.zeros(n_frames, dtype=bool)
        stop = min(n_frames, self.first_frame + len(self.sizes))
        if stop > self.first_frame:
            out[self.first_frame : stop] = np.isfinite(np.asarray(self.sizes[: stop - self.first_frame], dtype=float))
        return out

    @property
    def n_found(self) -> int:
        return int(np.isfinite(np.asarray(self.sizes, dtype=float)).sum())

    def median_size(self) -> float:
        sizes = np.asarray(self.sizes, dtype=float)
        return float(np.nanmedian(sizes)) if np.isfinite(sizes).any() else 0.0

    def median_box(self) -> list[float] | None:
        """The median face box ``[x, y, w, h]`` in frame pixels (square: the mesh's extent), None if never found."""
        c = np.asarray(self.centres, dtype=float).reshape(-1, 2)
        ok = np.isfinite(c).all(1)
        if not ok.any():
            return None
        cx, cy = np.median(c[ok], axis=0)
        side = self.median_size()
        return [round(float(cx - side / 2), 1), round(float(cy - side / 2), 1), round(side, 1), round(side, 1)]

    def sliced(self, start: int, stop: int) -> "FaceTrack":
        """This track over analysed frames [start, stop), renumbered from 0."""
        lo = max(start, self.first_frame)
        a, b = lo - self.first_frame, max(lo, stop) - self.first_frame
        return FaceTrack(
            track_id=self.track_id,
            first_frame=lo - start,
            key=self.key[a:b],
            crops=self.crops[a:b] if self.crops else [],
            sizes=self.sizes[a:b],
            centres=self.centres[a:b],
            shot=self.shot,
            embedding=self.embedding[a:b] if self.embedding is not None else None,
        )


class _Active:
    """Tracking state of a live track (not stored in the result)."""

    def __init__(self, track: FaceTrack, box: tuple[float, float, float]):
        self.track = track
        self.box = box  # centre x, centre y, side (pixels)
        self.angle = 0.0  # the face's roll (radians, eyes' line) at the last mesh
        self.from_detector = True  # ``box`` is a detector's (a first look), not the last mesh's
        self.misses = 0
        self.pending: np.ndarray | None = None  # landmarks already found on this frame
        self.submitted = -1  # last frame given to the mesh
        self.last: tuple[int, np.ndarray, float] | None = None  # (frame, key landmarks, size) of the last mesh found
        self.skipped: list[tuple[int, Picture]] = []  # frames not meshed, waiting for the next mesh to place crops



class _Done:
    """A finished result with the interface of a Future."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def frame_to_rgb(frame) -> np.ndarray:
    """A PyAV frame as an RGB uint8 array, turned upright (fast path for yuv420p).

    Phone videos are stored sideways with a display matrix saying how to turn
    them; players honour it, and so does this (``frame.rotation``: degrees
    counterclockwise)."""
    rgb = None
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0:
        try:
            rgb = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
        except (ValueError, cv2.error):
            pass
    if rgb is None:
        rgb = frame.to_ndarray(format="rgb24")
    turn = _TURNS.get(int(round(getattr(frame, "rotation", 0) or 0)) % 360)
    return rgb if turn is None else cv2.rotate(rgb, turn)


def _plane(frame, i: int) -> np.ndarray:
    """Plane ``i`` of a PyAV frame as a (height, width) uint8 view of the decoder's buffer (no copy)."""
    pl = frame.planes[i]
    return np.frombuffer(pl, np.uint8).reshape(pl.height, pl.line_size)[:, : pl.width]


class Picture:
    """One video frame, converted to RGB only where it is looked at.

    Most frames are only looked at around the tracked faces: the landmark
    network's input, resampled from the planes of a 4:2:0 frame at its own
    small size (``sample``), and the grey mouth crop, resampled from the Y
    plane alone (``grey``). An RGB region (``warp``) is converted from the Y, U
    and V planes region by region into a frame-sized canvas, with the
    conversion of the whole frame (``COLOR_YUV2RGB_I420``: each 2x2 block has
    its own chroma sample, so a region aligned on the chroma grid gets exactly
    the whole frame's pixels), and warped from the canvas: bit for bit the
    warp of a whole-frame conversion. Frames the face detector reads are
    converted whole, once. Other pixel formats and rotated videos are
    converted whole at once.
    """

    def __init__(self, rgb: np.ndarray | None = None, frame=None):
        self._rgb = rgb  # the whole frame, once converted
        self._yuv = None
        self._canvas = None
        self._filled: list[tuple[int, int, int, int]] = []  # regions of the canvas converted so far
        if rgb is None:
            turned = int(round(getattr(frame, "rotation", 0) or 0)) % 360
            if (frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 4 == 0
                    and not turned):
                self._frame = frame  # keeps the decoder's buffers alive
                self._yuv = (_plane(frame, 0), _plane(frame, 1), _plane(frame, 2))
            else:
                self._rgb = frame_to_rgb(frame)
        self.height, self.width = (self._rgb.shape[:2] if self._rgb is not None else self._yuv[0].shape)

    @classmethod
    def of(cls, frame) -> "Picture":
        """A Picture of a PyAV frame, an RGB array or a Picture."""
        if isinstance(frame, Picture):
            return frame
        return cls(rgb=frame) if isinstance(frame, np.ndarray) else cls(frame=frame)

    def small(self, width: int) -> np.ndarray:
        """The whole frame shrunk to ``width`` pixels wide (if wider), in RGB, without converting it at full size.

        Bilinear, not area, sampling: a thumbnail for the cut detector, at a tenth of the cost.
        """
        h, w = self.height, self.width
        if w <= width:
            return self.rgb()
        size = (width // 2 * 2, max(4, round(h * width / w)) // 4 * 4)
        if self._rgb is not None or self._yuv is None:
            return cv2.resize(self.rgb(), size, interpolation=cv2.INTER_AREA)
        y, u, v = self._yuv
        sw, sh = size
        i420 = np.empty((sh * 3 // 2, sw), np.uint8)
        i420[:sh] = cv2.resize(y, (sw, sh), interpolation=cv2.INTER_LINEAR)
        q = sh // 4
        i420[sh : sh + q].reshape(sh // 2, sw // 2)[:] = cv2.resize(u, (sw // 2, sh // 2), interpolation=cv2.INTER_LINEAR)
        i420[sh + q : sh + 2 * q].reshape(sh // 2, sw // 2)[:] = cv2.resize(v, (sw // 2, sh // 2),
                                                                          interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)

    def rgb(self) -> np.ndarray:
        """The whole frame in RGB (converted once)."""
        if self._rgb is None:
            self._fill(0, 0, self.width, self.height)
            self._rgb = self._canvas
        return self._rgb

    def _fill(self, ix0: int, iy0: int, ix1: int, iy1: int) -> None:
        """Convert rows [iy0, iy1) x columns [ix0, ix1) into the canvas (even columns, rows in steps of 4)."""
        if self._canvas is None:
            self._canvas = np.empty((self.height, self.width, 3), np.uint8)  # pages are touched only where filled
        rh, rw = iy1 - iy0, ix1 - ix0
        y, u, v = self._yuv
        i420 = np.empty((rh * 3 // 2, rw), np.uint8)
        i420[:rh] = y[iy0:iy1, ix0:ix1]
        i420[rh : rh + rh // 4].reshape(rh // 2, rw // 2)[:] = u[iy0 // 2 : iy1 // 2, ix0 // 2 : ix1 // 2]
        i420[rh + rh // 4 :].reshape(rh // 2, rw // 2)[:] = v[iy0 // 2 : iy1 // 2, ix0 // 2 : ix1 // 2]
        self._canvas[iy0:iy1, ix0:ix1] = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        self._filled.append((ix0, iy0, ix1, iy1))

    def warp(self, m: np.ndarray, size: tuple[int, int], flags: int, border: int) -> np.ndarray:
        """``cv2.warpAffine(frame, m, size, ...)``, converting only the frame region the output samples."""
        if self._rgb is None:
            w, h = size
            a = np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])
            try:
                src = (np.linalg.inv(a) @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64))[:2]
            except np.linalg.LinAlgError:
                src = None
            if src is None or not np.isfinite(src).all():
                self.rgb()
            else:
                x0, y0 = src.min(1) - _WARP_MARGIN
                x1, y1 = src.max(1) + _WARP_MARGIN
                # clamped into the frame, never empty: a replicated border reads the frame's nearest edge
                ix0 = min(self.width - 2, max(0, int(np.floor(x0)))) // 2 * 2
                ix1 = min(self.width, max(ix0 + 2, -(-int(np.ceil(x1)) // 2) * 2))
                iy0 = min(self.height - 4, max(0, int(np.floor(y0)))) // 4 * 4
                iy1 = min(self.height, max(iy0 + 4, -(-int(np.ceil(y1)) // 4) * 4))
                if not any(a <= ix0 and b <= iy0 and ix1 <= c and iy1 <= d for a, b, c, d in self._filled):
                    self._fill(ix0, iy0, ix1, iy1)
        image = self._rgb if self._rgb is not None else self._canvas
        return cv2.warpAffine(image, m, size, flags=flags, borderMode=border)

    def grey(self, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``cvtColor(warp(m, size, INTER_AREA, BORDER_REPLICATE), COLOR_RGB2GRAY)``: a small grey image of the
        frame through ``m`` (the mouth crop).

        A 4:2:0 frame is resampled from its Y plane alone and mapped through ``_Y_TO_GREY``. Grey is
        0.299 R + 0.587 G + 0.114 B, and in the BT.601 conversion the U and V terms of that sum cancel to
        within 0.0006 of a level per level of chroma, so grey is a function of Y; bilinear resampling is
        linear, so resampling Y and then mapping it differs from mapping and then resampling only in
        rounding and where a colour channel clips (tests/test_tracker.py bounds both on real faces).
        ``warpAffine`` samples ``INTER_AREA`` bilinearly, as here.
        """
        if self._yuv is None:  # (a 4:2:0 frame converted whole for the detector still reads its Y plane)
            return cv2.cvtColor(self.warp(m, size, cv2.INTER_AREA, cv2.BORDER_REPLICATE), cv2.COLOR_RGB2GRAY)
        y = cv2.warpAffine(self._yuv[0], np.asarray(m, np.float64), size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        return cv2.LUT(y, _Y_TO_GREY)

    def sample(self, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``warp(m, size, INTER_LINEAR, BORDER_CONSTANT)`` for a network's input: a small RGB image resampled
        from the frame through ``m``, black outside it.

        A 4:2:0 frame is resampled from its planes, without converting the region it covers: Y through ``m``
        at the output's size, U and V through the same map at half of it (at the chroma grid's sample
        centres, half a luma pixel in from each 2 x 2 block's corner), and the small 4:2:0 image is then
        converted as the whole frame would be. Bilinear chroma read from the chroma grid, instead of from the
        whole frame's 2 x 2 blocks, is the only difference (tests/test_tracker.py holds it to a mean under 2
        grey levels and landmarks within 0.5% of the inter-ocular distance of those found on ``warp``'s
        input). The region around a face at
        720p is several times the 192 x 192 input; the CPU of each way is in docs/PROFILE.md
        (``benchmarks/profile_detect.py``).
        """
        w, h = size
        if self._rgb is not None or self._yuv is None or w % 2 or h % 4:
            return self.warp(m, size, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)
        y, u, v = self._yuv
        inv = cv2.invertAffineTransform(np.asarray(m, np.float64))  # output pixel -> frame pixel
        # chroma output pixel c sits at luma output 2c + 0.5, and frame luma p at chroma (p - 0.5) / 2
        cinv = inv.copy()
        cinv[:, 2] = (inv[:, :2] @ np.array([0.5, 0.5]) + inv[:, 2] - 0.5) / 2.0
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        i420 = np.empty((h * 3 // 2, w), np.uint8)
        # black outside the frame: Y 16, U and V 128 (the whole frame's conversion of them is 0, 0, 0)
        i420[:h] = cv2.warpAffine(y, inv, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=16)
        q = h // 4
        for plane, rows in ((u, i420[h : h + q]), (v, i420[h + q :])):
            rows.reshape(h // 2, w // 2)[:] = cv2.warpAffine(plane, cinv, (w // 2, h // 2), flags=flags,
                                                             borderMode=cv2.BORDER_CONSTANT, borderValue=128)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


def _y_to_grey() -> np.ndarray:
    """Grey of each luma level with neutral chroma, as OpenCV converts it (I420 to RGB, then RGB to grey)."""
    y = np.repeat(np.arange(256, dtype=np.uint8), 4).reshape(64, 16)  # a 64 x 16 luma plane, 4 pixels a level
    i420 = np.concatenate([y, np.full((32, 16), 128, np.uint8)])
    grey = cv2.cvtColor(cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(grey.reshape(-1)[::4])


#: Luma level -> grey level (``Picture.grey``).
_Y_TO_GREY = _y_to_grey()

#: Pixels converted around a warp's source area (bilinear sampling reads one more; slack for rounding).
_WARP_MARGIN = 4.0


#: Display-matrix rotation (degrees counterclockwise) -> the cv2 turn that makes the frame upright.
_TURNS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def _box(pts: np.ndarray) -> tuple[float, float, float]:
    """The face box (centre x, centre y, side) around mesh points."""
    x0, y0 = pts[:, :2].min(0)
    x1, y1 = pts[:, :2].max(0)
    return ((x0 + x1) / 2, (y0 + y1) / 2, float(max(x1 - x0, y1 - y0)))


def _iou(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[2] / 2, a[0] + a[2] / 2, a[1] + a[2] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[2] / 2, b[0] + b[2] / 2, b[1] + b[2] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] ** 2 + b[2] ** 2 - inter
    return inter / union if union > 0 else 0.0


def mouth_crop_matrix(key: np.ndarray, hw: tuple[int, int] = MOUTH_CROP_HW) -> np.ndarray:
    """The (2, 3) affine map from frame pixels to mouth-crop pixels used by ``mouth_crop``.

    Eyes level, mouth centre (mean of the lip points) at the crop centre, crop
    width 1.2 inter-ocular distances. ``m @ [x, y, 1]`` is a frame point's
    position in the crop.
    """
    h, w = hw
    le, re = key[LEFT_EYE_OUTER, :2], key[RIGHT_EYE_OUTER, :2]
    centre = key[:N_LIP, :2].mean(0)
    dx, dy = re - le
    iod = float(np.hypot(dx, dy)) or 1.0
    cos, sin = dx / iod, dy / iod
    scale = w / (1.2 * iod)
    # Rotate by -angle about the mouth centre, scale, then move it to the crop centre.
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]]) * scale
    m[:, 2] = np.array([w / 2, h / 2]) - m[:, :2] @ centre
    return m


def mouth_crop(rgb, key: np.ndarray, hw: tuple[int, int] = MOUTH_CROP_HW) -> np.ndarray:
    """An aligned mouth crop: eyes level, mouth centred, width 1.2 inter-ocular distances (an RGB array or a
    ``Picture``)."""
    h, w = hw
    m = mouth_crop_matrix(key, hw)
    return Picture.of(rgb).warp(m, (w, h), cv2.INTER_AREA, cv2.BORDER_REPLICATE)


def mouth_crop_grey(pic, key: np.ndarray, hw: tuple[int, int] = MOUTH_CROP_HW) -> np.ndarray:
    """The grey mouth crop the models read: ``mouth_crop`` in grey, from the luma plane of a 4:2:0 frame
    (``Picture.grey``) without converting any of it to RGB."""
    h, w = hw
    return Picture.of(pic).grey(mouth_crop_matrix(key, hw), (w, h))


class FaceTracker:
    """Stateful face tracker: feed it frames in order with ``update``."""

    def __init__(
        self,
        max_faces: int = 4,
        keep_crops: bool = False,
        redetect_every: int = 25,
        max_misses: int = 12,
        min_detection_confidence: float = 0.5,
        workers: int = 2,
        mesh_every: int = 1,
        landmark_input: str = "exact",
    ):
        if landmark_input not in ("exact", "planes"):  # checked before stderr is silenced below
            raise ValueError(f"landmark_input must be 'exact' or 'planes', not {landmark_input!r}")
        # MediaPipe's native log lines (fd 2, from its own threads) are hidden while the
        # tracker lives, for the library as for the CLI, unless AVSYNC_NATIVE_LOGS=1.
        self._quiet = Silencer()
        self._quiet.start()
        try:
            mp = import_mediapipe()  # heavy import, only when faces are needed
        except BaseException:
            self._quiet.stop()
            raise

        self._mp = mp
        self.max_faces = max_faces
        self.keep_crops = keep_crops
        self.redetect_every = redetect_every
        self.max_misses = max_misses
        #: Run the mesh on every this many frames of a steadily tracked face; the frames between get
        #: their landmarks interpolated between the meshes either side (their crops still come from
        #: their own pixels). 1 = every frame. Only for estimators that read crops, not landmarks.
        self.mesh_every = max(1, int(mesh_every))
        #: How the landmark network's 192 x 192 input is cut from a 4:2:0 frame: "exact", from the face
        #: region converted to RGB as the whole frame would be (``Picture.warp``); "planes", resampled from
        #: the Y, U and V planes without converting the region (``Picture.sample``: about a third less CPU,
        #: landmarks within 0.5% of the inter-ocular distance). Lip-landmark readers were trained and
        #: calibrated on "exact" landmarks, and "planes" moved them on dev (clip ±1: ``modelfree`` -3.5
        #: points, docs/ACCURACY-CHECK-modelfree.md; ``landmark-wild`` -0.6, ``landmark-small`` +1.9);
        #: crop readers, which use the landmarks only to place the crop, do not move (``pm-wild``,
        #: docs/ACCURACY-CHECK.md); see ``extract.landmark_input_for``.
        self.landmark_input = landmark_input
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )
        # the short-range model (faces within about 2 m of a phone camera: faces that fill the frame)
        self._near_detector = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=min_detection_confidence
        )
        self._hard_searches = 0
        self._tracks: list[FaceTrack] = []
        self._active: list[_Active] = []
        self._frame = 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="avsync-mesh") if workers > 1 else None
        self._inflight: tuple[int, np.ndarray, list] | None = None
        self._landmarks = LandmarkModel()
        self._shot = 0
        self._search_now = False  # the next frame starts a shot: look for faces at once

    # -- detection ------------------------------------------------------------
    def _detect(self, rgb: np.ndarray) -> list[tuple[float, float, float]]:
        """Face boxes (centre x, centre y, side), largest first.

        The full-range detector runs on the downscaled frame. Where it finds
        nothing, harder cases are tried (at most on every third search, to
        bound the cost on footage without faces): a face filling the frame and
        cut at the forehead or chin (VoxCeleb/LRS-style crops, selfies), by
        the short-range detector and by the frame padded on every side; and
        small faces in wide shots, by the full-range detector on four
        overlapping tiles at twice the resolution.
        """
        boxes = self._run_detector(self._detector, rgb)
        if boxes:
            return boxes
        self._hard_searches += 1
        if self._hard_searches % _HARD_SEARCH_EVERY != 1:
            return boxes
        boxes = self._run_detector(self._near_detector, rgb) or self._run_detector(self._detector, rgb, pad=_PAD)
        if not boxes:
            boxes = self._detect_tiles(rgb)
        return boxes

    def _run_detector(self, detector, rgb: np.ndarray, pad: float = 0.0) -> list[tuple[float, float, float]]:
        """One detector on the frame (padded by ``pad`` of its size on each side), boxes in frame pixels."""
        h, w = rgb.shape[:2]
        if pad:
            py, px = round(h * pad), round(w * pad)
            rgb = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_CONSTANT, value=(127, 127, 127))
        else:
            py = px = 0
        hh, ww = rgb.shape[:2]
        scale = min(1.0, DETECT_LONG_SIDE / max(hh, ww))
        small = cv2.resize(rgb, (round(ww * scale), round(hh * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        res = detector.process(small)
        boxes = []
        for det in res.detections or []:
            bb = det.location_data.relative_bounding_box
            side = max(bb.width * ww, bb.height * hh)
            if side < 12:  # too small to read lips from
                continue
            boxes.append(((bb.xmin + bb.width / 2) * ww - px, (bb.ymin + bb.height / 2) * hh - py, side))
        boxes.sort(key=lambda b: -b[2])
        return boxes

    def _detect_tiles(self, rgb: np.ndarray) -> list[tuple[float, float, float]]:
        """Small faces: the full-range detector on 2 x 2 overlapping tiles (frames larger than the detector's input)."""
        h, w = rgb.shape[:2]
        if max(h, w) <= DETECT_LONG_SIDE:
            return []
        th, tw = round(h * 0.6), round(w * 0.6)
        boxes: list[tuple[float, float, float]] = []
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                for cx, cy, side in self._run_detector(self._detector, rgb[y0 : y0 + th, x0 : x0 + tw]):
                    b = (cx + x0, cy + y0, side)
                    if all(_iou(b, o) < 0.3 for o in boxes):
                        boxes.append(b)
        boxes.sort(key=lambda b: -b[2])
        return boxes

    # -- mesh on a region -------------------------------------------------------
    def _mesh(self, box: tuple[float, float, float], angle: float, from_detector: bool,
              pic: Picture) -> np.ndarray | None:
        """The ``_READ`` mesh points (frame pixels) of the face in ``box`` at roll ``angle``, None if lost there.

        A detector's box gets a wider first look, and the landmarks found there place the final region.
        A face lost in the region placed from its last landmarks gets that wider look once more before
        it counts as a miss (as MediaPipe's FaceMesh graph looks again with its detector on a loss).
        """
        warp = pic.sample if self.landmark_input == "planes" else \
            partial(pic.warp, flags=cv2.INTER_LINEAR, border=cv2.BORDER_CONSTANT)

        cx, cy, side = box
        if from_detector:
            pts, presence = self._landmarks.run(warp, cx, cy, side * DETECTOR_ROI_SCALE, angle)
            if presence < MIN_PRESENCE:
                return None
            (cx, cy, side), angle = _box(pts[_READ]), eye_angle(pts)
        pts, presence = self._landmarks.run(warp, cx, cy, side * ROI_SCALE, angle)
        if presence < MIN_PRESENCE:
            return None if from_detector else self._mesh(box, angle, True, pic)
        return pts[_READ]

    def _submit(self, act: _Active, fi: int, pic: Picture):
        if self._pool is None:
            return _Done(self._mesh(act.box, act.angle, act.from_detector, pic))
        return self._pool.submit(self._mesh, act.box, act.angle, act.from_detector, pic)

    # -- per frame --------------------------------------------------------------
    def update(self, frame) -> None:
        """Process the next analysed frame (a PyAV VideoFrame or an RGB array).

        Frame i's mesh runs while frame i-1's result is read back, so each
        face's crop box comes from two frames back (80 ms at 25 fps): well
        inside the crop's margin.
        """
        pic = Picture.of(frame)
        fi = self._frame
        self._frame += 1

        # Look for faces: at the start, every `redetect_every` frames for new
        # ones, and every few frames while a face is lost (after a cut, say).
        any_lost = any(a.misses for a in self._active)
        if self._search_now or (not self._active and fi % _SEARCH_EVERY == 0) or (any_lost and fi % _SEARCH_EVERY == 0) or (
            fi % self.redetect_every == 0 and len(self._active) < self.max_faces
        ):
            self._search_now = False
            self._add_faces(pic, fi)
        jobs = []
        for act in self._active:
            if act.pending is not None:
                jobs.append((act, _Done(act.pending)))
                act.pending = None
            elif self.mesh_every > 1 and act.last is not None and not act.misses and \
                    fi - act.submitted < self.mesh_every:
                act.skipped.append((fi, pic))
                continue
            else:
                jobs.append((act, self._submit(act, fi, pic)))
            act.submitted = fi
        self.flush()
        self._inflight = (fi, pic, jobs)

    def _add_faces(self, pic: Picture, fi: int) -> None:
        for box in self._detect(pic.rgb()):
            match = max(self._active, key=lambda a: _iou(a.box, box), default=None)
            if match is not None and _iou(match.box, box) > 0.2:
                if match.misses:  # re-acquire a lost face where the detector sees it
                    match.box, match.angle, match.from_detector = box, 0.0, True
                continue
            if len(self._active) >= self.max_faces:
                continue
            # A detection becomes a track only once the mesh confirms a face there.
            cand = _Active(FaceTrack(track_id=-1, first_frame=fi, shot=self._shot), box)
            cand.pending = self._mesh(box, 0.0, True, pic)
            if cand.pending is None:
                continue
            cand.track.track_id = len(self._tracks)
            self._tracks.append(cand.track)
            self._active.append(cand)

    def flush(self) -> None:
        """Read back the frame still in the models (call once after the last ``update``)."""
        if self._inflight is None:
            return
        fi, pic, jobs = self._inflight
        self._inflight = None
        results = [(act, job.result()) for act, job in jobs]
        for act, pts in results:
            if act not in self._active:  # dropped while this frame was in flight
                continue
            tr = act.track
            between = [(j, p) for j, p in act.skipped if j < fi]
            act.skipped = [(j, p) for j, p in act.skipped if j > fi]
            if pts is not None and act.last is not None:
                self._interpolate(act, between, fi, pts[: len(_KEY)], _box(pts))
            while tr.first_frame + len(tr.key) < fi:  # frames before this one were lost
                self._append_lost(tr)
            if pts is None:
                act.last = None  # never interpolate across a miss
                act.misses += 1
                self._append_lost(tr)
                if act.misses > self.max_misses:
                    self._retire(act)
                continue
            act.misses = 0
            act.box = _box(pts)
            key = pts[: len(_KEY)]
            dx, dy = key[RIGHT_EYE_OUTER, :2] - key[LEFT_EYE_OUTER, :2]
            act.angle = float(np.arctan2(dy, dx))
            act.from_detector = False
            act.last = (fi, key, act.box[2], act.box[:2])
            self._append_found(tr, key, act.box[2], act.box[:2], pic)
        # Two live tracks on one face: keep the older one.
        for a in list(self._active):
            for b in self._active:
                if a is not b and a in self._active and b.track.track_id < a.track.track_id and _iou(a.box, b.box) > 0.5:
                    self._retire(a)
                    break

    def new_shot(self) -> None:
        """The next frame starts a new shot: every live track ends here, and faces are searched for afresh.

        Call it before ``update`` of the first frame after a cut.
        """
        self.flush()
        for act in list(self._active):
            self._retire(act)
        self._shot += 1
        self._search_now = True

    def _append_found(self, tr: FaceTrack, key: np.ndarray, size: float, centre, pic: Picture) -> None:
        tr.key.append(key)
        tr.sizes.append(size)
        tr.centres.append(tuple(centre))
        if self.keep_crops:
            tr.crops.append(mouth_crop_grey(pic, key))

    def _interpolate(self, act: _Active, between: list, fi: int, key: np.ndarray, box) -> None:
        """Frames skipped since the last mesh: landmarks interpolated linearly, crops cut from their own pixels."""
        k0, key0, size0, c0 = act.last
        size = box[2]
        tr = act.track
        for j, pic in between:
            if j <= k0:
                continue
            while tr.first_frame + len(tr.key) < j:
                self._append_lost(tr)
            w = (j - k0) / (fi - k0)
            centre = tuple(float(a + w * (b - a)) for a, b in zip(c0, box[:2]))
            self._append_found(tr, (key0 + w * (key - key0)).astype(np.float32), size0 + w * (size - size0), centre,
                               pic)

    def _retire(self, act: _Active) -> None:
        self._active.remove(act)

    def _append_lost(self, tr: FaceTrack) -> None:
        tr.key.append(np.full((len(KEY_INDICES), 3), np.nan, np.float32))
        tr.sizes.append(np.nan)
        tr.centres.append((np.nan, np.nan))
        if self.keep_crops:
            tr.crops.append(None)

    @property
    def n_frames(self) -> int:
        return self._frame

    @property
    def all_tracks(self) -> list[FaceTrack]:
        """Every track begun so far, live or ended, including any with no found frame yet (no copy)."""
        return self._tracks

    @property
    def live_tracks(self) -> list[FaceTrack]:
        """The tracks that may still grow (being followed now); every other track has ended."""
        return [a.track for a in self._active]

    @property
    def tracks(self) -> list[FaceTrack]:
        """Tracks with at least one found frame (a track can be dropped as a
        duplicate before its first frame is read back)."""
        return [t for t in self._tracks if t.n_found]

    def close(self) -> None:
        """Release the models; a frame still in flight is read back first."""
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._active = []
            try:
                self._detector.close()
                self._near_detector.close()
            finally:
                self._quiet.stop()

    def __del__(self):  # a tracker dropped without close() must not keep stderr silenced
        quiet = getattr(self, "_quiet", None)
        if quiet is not None:
            quiet.stop()


__all__ = ["FaceTrack", "FaceTracker", "Picture", "frame_to_rgb", "mouth_crop", "mouth_crop_grey"]
