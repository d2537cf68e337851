"""One pass over a file: face tracks from the video, log-mel features from the audio.

This is the expensive part of every method, so it is done once per file and
its result (an ``Extraction``) is what every estimator and ``avsync eval``
slides over. Decoding and colour conversion run in a reader thread while the
face models run in the caller's thread (both release the GIL), and the audio
is featurised in a third thread; memory is bounded by small queues and by
streaming the audio in chunks.
"""
from __future__ import annotations

import os
import queue
from collections import deque
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from avsync.audio.features import E2E_MEL, StreamingFeatures
from avsync.constants import MAX_ANALYSIS_FPS
from avsync.errors import AvsyncError, NoAudioError, NoVideoError, TruncatedMediaError
from avsync.media.decode import MediaInfo, is_truncated, iter_audio_chunks, iter_video_frames, probe
from avsync.media.shots import SHOT_FRAME_WIDTH, ShotDetector
from avsync.util import merge_spans

if TYPE_CHECKING:
    from avsync.face.tracker import FaceTrack, FaceTracker
    from avsync.models.stream import CropEmbedder

ProgressHook = Callable[[float], None]

#: A step between analysed frames longer than this many typical steps is a hole in the video.
GAP_FRAMES = 2.5
#: Analysed frames between calls of a ``CropEmbedder`` (it embeds whole chunks only).
EMBED_EVERY = 32


@dataclass
class Extraction:
    """Everything the estimators need from one file."""

    info: MediaInfo
    #: Presentation time (s) of each analysed video frame.
    times: np.ndarray
    #: Face tracks over the analysed frames.
    tracks: list[FaceTrack]
    #: Time (s) of audio sample 0, on the same clock as ``times``.
    audio_t0: float
    #: 40-bin log-mel at 100 frames/s (Sync-e2e, MFCC base); frame j at audio_t0 + j/100.
    mel40: np.ndarray
    #: Audio duration in seconds.
    audio_duration_s: float
    #: Analysed frames that begin a new shot (cuts); no face track crosses one.
    cuts: list[int] = field(default_factory=list)
    #: Spans (start_s, end_s, on the clock of ``times``) where packets failed to decode and were
    #: skipped (local damage, concealed as players do); merged and sorted.
    damaged: list = field(default_factory=list)
    #: The model whose visual encoder embedded the tracks' mouth crops while decoding
    #: (``models.stream.CropEmbedder``; its ``embedding_key``), None if the tracks hold crops or none.
    embedded_by: str | None = None

    @property
    def fps(self) -> float:
        """Analysis frame rate: analysed frames per second of the time they cover, holes left out.

        (A median of frame intervals would be wrong on containers with 1 ms
        timestamps, where 29.97 fps shows as steps of 33 and 34 ms; a plain
        count over the span would be wrong for a file with a hole in its video.)
        """
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return self.info.fps
        d = np.diff(self.times)
        steady = d < GAP_FRAMES * float(np.median(d))
        for a, b in self.damaged:  # frames lost to damage: count only the intervals clear of it
            steady &= (self.times[1:] < a) | (self.times[:-1] > b)
        return float(steady.sum() / d[steady].sum()) if steady.any() else self.info.fps

    @property
    def n_frames(self) -> int:
        return len(self.times)


def landmark_input_for(estimator) -> str:
    """How ``detect`` cuts the landmark network's input for ``estimator`` (``FaceTracker``): resampled from
    the frame's planes ("planes", the cheaper way) for one that reads only mouth crops, which needs the
    landmarks only to place them; converted exactly as the whole frame would be ("exact") for one that
    reads the lip landmarks themselves, as its training and calibration features were (what "planes" moved
    each on dev: ``FaceTracker.landmark_input``)."""
    return "planes" if getattr(estimator, "input_key", None) == "crops" else "exact"


def mesh_every_for(estimator) -> int:
    """How often the face landmarks run for ``estimator``: every frame for one that reads landmarks; for one
    that reads only mouth crops (it needs the landmarks only to place them), as often as its confidence was
    calibrated with (``mesh_every`` in its calibration's ``fitted_on``; 1 where it is not recorded), so that
    ``detect`` reads the crops its confidence was fitted on. ``AVSYNC_MESH_EVERY`` overrides it for crop
    readers (measurements, and calibrating a model for another setting)."""
    if getattr(estimator, "input_key", None) != "crops":
        return 1
    forced = os.environ.get("AVSYNC_MESH_EVERY")
    if forced:
        return max(1, int(forced))
    cal = getattr(estimator, "calibration", None)
    return max(1, int(((cal.fitted_on or {}) if cal is not None else {}).get("mesh_every", 1)))


def _audio_worker(path: str, result: dict) -> None:
    try:
        s40 = StreamingFeatures(E2E_MEL)  # what every model and the speech detector read
        t0, n = None, 0
        for start, chunk in iter_audio_chunks(path, damaged=result.setdefault("damaged", [])):
            if t0 is None:
                t0 = start
            n += len(chunk)
            s40.push(chunk)
        result.update(t0=t0, mel40=s40.finish(), duration=n / E2E_MEL.sr)
    except BaseException as exc:  # handed to the caller's thread
        result["error"] = exc


_END = object()


def _video_worker(path: str, max_fps: float, q: queue.Queue, stop: threading.Event, damaged: list,
                  shots: ShotDetector) -> None:
    """Decode the analysed frames and feed the cut detector, in this thread (off the tracker's): each item is
    ``(time_s, Picture, cuts the frame revealed)``; the last is ``(_END, the cuts of the detector's look-ahead)``."""
    from avsync.face.tracker import Picture

    try:
        for _, t, frame in iter_video_frames(path, max_fps=max_fps, damaged=damaged):
            pic = Picture.of(frame)  # converted to RGB only where the face models look
            item = (t, pic, shots.push(pic.small(SHOT_FRAME_WIDTH)))
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        q.put((_END, shots.cut_frames()))
    except BaseException as exc:
        q.put(exc)


def extract(
    path: str | os.PathLike,
    max_faces: int = 4,
    keep_crops: bool = False,
    progress: ProgressHook | None = None,
    mesh_every: int = 1,
    embedder: CropEmbedder | None = None,
    landmark_input: str = "exact",
) -> Extraction:
    """Decode ``path`` once: face tracks per analysed frame, and audio features.

    ``mesh_every`` > 1 runs the face mesh on every so many frames of a tracked face and
    interpolates the landmarks between (``FaceTracker``); see ``mesh_every_for``.
    ``landmark_input``: how the landmark network's input is cut from the frame (``FaceTracker``);
    see ``landmark_input_for``.
    ``embedder`` (``models.stream.CropEmbedder``) embeds the mouth crops as they are cut and
    drops them, so memory does not grow with a crop per frame; the tracks then hold
    ``embedding`` instead of ``crops`` (what ``avsync detect`` does; ``avsync eval`` and
    training keep the crops, which they slice and augment).
    """
    info = probe(path)
    if info.cover_art_only:
        raise NoVideoError(f"{os.path.basename(str(path))} is audio with a still image (cover art): "
                           "no video to read lips from")
    if not info.has_video:
        raise NoVideoError(f"no video stream in {os.path.basename(str(path))}: nothing to read lips from")
    if not info.has_audio:
        raise NoAudioError(f"no audio stream in {os.path.basename(str(path))}: nothing to sync against")

    audio: dict = {}
    at = threading.Thread(target=_audio_worker, args=(str(path), audio), daemon=True)
    at.start()

    q: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    video_damage: list = []
    shots = ShotDetector(fps=min(info.fps or MAX_ANALYSIS_FPS, MAX_ANALYSIS_FPS))
    vt = threading.Thread(target=_video_worker, args=(str(path), MAX_ANALYSIS_FPS, q, stop, video_damage, shots),
                          daemon=True)
    vt.start()
    from avsync.face.tracker import FaceTracker  # OpenCV and MediaPipe load here, not at ``import avsync``

    tracker = FaceTracker(max_faces=max_faces, keep_crops=keep_crops, mesh_every=mesh_every,
                          landmark_input=landmark_input)
    held: deque = deque()
    cuts: set[int] = set()
    times: list[float] = []
    total = info.duration_s or 0.0
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            if item[0] is _END:
                cuts.update(item[1])
                break
            t, pic, new_cuts = item
            times.append(t)
            # The cut detector looks a few frames ahead, so the tracker is fed
            # that many frames behind, and told of a cut before its first frame.
            cuts.update(new_cuts)
            held.append(pic)
            if len(held) > ShotDetector.LOOKAHEAD:
                _track(tracker, held, cuts)
            if embedder is not None and len(times) % EMBED_EVERY == 0:
                embedder.feed(tracker.all_tracks, tracker.n_frames, tracker.live_tracks)
            if progress is not None and total > 0 and len(times) % 25 == 0:
                progress(min(1.0, (t - info.video_start_s) / total))
        while held:
            _track(tracker, held, cuts)
    except BaseException:
        if embedder is not None:
            embedder.abort()
        raise
    finally:
        stop.set()
        tracker.close()
        vt.join(timeout=5)
    if embedder is not None:
        embedder.finish(tracker.all_tracks, len(times))
    at.join()
    if "error" in audio:
        err = audio["error"]
        raise err if isinstance(err, AvsyncError) else TruncatedMediaError(f"audio could not be decoded: {err}")
    if progress is not None:
        progress(1.0)
    ext = Extraction(
        info=info,
        times=np.asarray(times, dtype=np.float64),
        tracks=tracker.tracks,
        audio_t0=float(audio["t0"]),
        mel40=audio["mel40"],
        audio_duration_s=float(audio["duration"]),
        cuts=sorted(cuts),
        damaged=merge_spans(video_damage + audio.get("damaged", [])),
        embedded_by=embedder.key if embedder is not None else None,
    )
    _check_complete(ext)
    return ext


def _track(tracker: FaceTracker, held: deque, cuts: set[int]) -> None:
    """Give the tracker the oldest held frame, starting a new shot first if a cut begins there."""
    if tracker.n_frames in cuts:
        tracker.new_shot()
    tracker.update(held.popleft())


def _check_complete(ext: Extraction) -> None:
    """A file whose streams stop well short of its declared duration is truncated.

    Each stream's end is taken on the container's clock, so a stream that
    starts late (audio recorded from 3 s on, say) is not mistaken for a cut one.
    """
    declared = ext.info.duration_s
    if declared <= 0 or len(ext.times) == 0:
        return
    origin = min(ext.info.video_start_s, ext.info.audio_start_s)
    video_end = ext.times[-1] + 1.0 / max(ext.fps, 1.0)
    audio_end = ext.audio_t0 + ext.audio_duration_s
    short = min(video_end, audio_end) - origin
    if is_truncated(short, declared):
        raise TruncatedMediaError(
            f"file is truncated: streams end at {short:.1f} s of a declared {declared:.1f} s: {ext.info.path}"
        )
