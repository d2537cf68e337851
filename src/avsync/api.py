"""The public API: ``detect``, ``correct``, ``load_model``.

The CLI (and later the web and batch front ends) call these and nothing deeper.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from avsync.constants import (
    DEFAULT_MAX_OFFSET_FRAMES,
    DEFAULT_TOLERANCE_FRAMES,
    MAX_SEARCH_MS,
    SINGING_SEGMENT_S,
    SINGING_TOLERANCE_FRAMES,
    MIN_JUDGE_SECONDS,
    MIN_SPEECH_SECONDS,
    SIMILARITY_WINDOW_FRAMES,
    frame_ms,
)
from avsync.audio.features import E2E_MEL
from avsync.errors import ModelError, NoFaceError, NoSpeechError, TooShortError, UsageError
from avsync.result import FaceInfo, SyncResult, WindowEstimate
from avsync.sync.confidence import curve_features, evidence_seconds
from avsync.sync.offset import lag_grid, read_curve, rival_index
from avsync.media.shots import shot_index, shots_from_cuts
from avsync.sync.segments import (
    LOCATE_HOP_S,
    LOCATE_WINDOW_S,
    choose,
    locate_change,
    plan_segments,
    pool_curves,
    read_face,
    speaking_seconds,
)
from avsync.sync.speech import frame_speech, speech_mask
from avsync.sync.timeline import fit_timeline

if TYPE_CHECKING:  # decoding (PyAV, OpenCV) and the models load only when a file is analysed
    from avsync.extract import Extraction, ProgressHook

#: Confidence at or above which an answer is marked reliable. A calibrated
#: estimator's confidence is the probability, fitted on held-out speakers of
#: the train split (``train.calibrate``), that its answer is within ±1 frame.
RELIABLE_CONFIDENCE = 0.9

#: A rival peak must be this many frames from the best lag to count against it.
RIVAL_EXCLUSION_FRAMES = 2.0

#: Below this much speech with a visible face (s), a weak answer is put down to too little evidence.
LITTLE_EVIDENCE_S = 2.0

#: A rival within this many curve deviations of the peak is named as the reason for a weak answer.
CLOSE_RIVAL_Z = 0.5


def available_models() -> list[str]:
    """Names ``load_model`` accepts (besides a path to a checkpoint file)."""
    from avsync.models.registry import fusions, registry

    return ["modelfree", *sorted(registry()), *sorted(fusions())]


def default_model() -> str:
    """The estimator used when none is named (``models/registry.json``)."""
    from avsync.models.registry import default_model as _default

    return _default()


def _known(name: str) -> bool:
    return name in available_models() or (name.endswith(".pt") and os.path.isfile(name))


def load_model(name: str | None = None):
    """An estimator by name (see ``available_models``), or from a checkpoint path (``*.pt``).

    ``None`` gives the default. A shipped two-stream model runs on onnxruntime where its ONNX
    export is shipped (``models.onnx``; ``AVSYNC_RUNTIME=torch`` forces torch); other learned
    models import torch here, never at ``import avsync``.
    """
    name = name or default_model()
    if name == "modelfree":
        from avsync.sync.modelfree import ModelFreeEstimator

        return _calibrated(ModelFreeEstimator(), name)
    if not _known(name):
        raise ModelError(f"unknown model {name!r}; available: {', '.join(available_models())} or a .pt checkpoint")
    from avsync.models.registry import fusions

    if name in fusions():
        from avsync.sync.fusion import FusedEstimator

        spec = fusions()[name]
        return _calibrated(FusedEstimator([load_model(m) for m in spec["members"]], spec["weights"]), name)
    from avsync.models.onnx import runtime_for

    if not name.endswith(".pt") and runtime_for(name) == "onnx":  # a shipped model's ONNX export: no torch
        return _onnx_estimator(name)
    try:
        from avsync.models.checkpoint import estimator_from_file, registered_path
    except ImportError as exc:
        raise ModelError(f"model {name!r} needs torch ({exc}); install it: pip install 'avsync[torch]'") from None
    from avsync.models.registry import registry
    from avsync.util import sha256_file

    if name.endswith(".pt"):
        est = estimator_from_file(name)
        est.sha256 = sha256_file(name)
    else:  # registered_path has just checked the file against the registry's sha256
        est = estimator_from_file(registered_path(name))
        est.sha256 = registry()[name]["sha256"]
    return est


@functools.lru_cache(maxsize=16)
def _onnx_estimator(name: str):
    """A shipped model on onnxruntime, loaded (and its files' sha256 checked) once per process: a loop over
    many files (``avsync batch``, ``avsync eval``) pays for the sessions once. Its methods keep no state
    between calls (``prepare`` returns everything a file needs)."""
    from avsync.models.onnx import OnnxEstimator

    return OnnxEstimator(name)


def _calibrated(estimator, name: str):
    """Attach the registry's confidence calibration of the model-free method or a fusion, if fitted."""
    from avsync.models.registry import calibration
    from avsync.sync.confidence import Calibration

    cal = calibration(name)
    estimator.calibration = Calibration.from_dict(cal) if cal else None
    return estimator


@dataclass(frozen=True)
class DetectOptions:
    """Options of ``detect``, checked before any work starts."""

    max_offset_ms: float | None = None  # default: DEFAULT_MAX_OFFSET_FRAMES frames
    tolerance_frames: float | None = None  # None: DEFAULT_TOLERANCE_FRAMES, or SINGING_TOLERANCE_FRAMES
    window_frames: int | None = None
    max_faces: int = 4
    model: str | None = None  # None: default_model()
    face: int | None = None  # read only this face track (its number in ``faces``)
    singing: bool = False  # longer segments and the singing protocol's ±5-frame tolerance
    similarity: bool = False  # keep the active face's similarity matrix (windows x lags)

    @property
    def tolerance(self) -> float:
        if self.tolerance_frames is not None:
            return self.tolerance_frames
        return SINGING_TOLERANCE_FRAMES if self.singing else DEFAULT_TOLERANCE_FRAMES

    def check(self) -> None:
        if self.max_offset_ms is not None and not (0 < self.max_offset_ms <= MAX_SEARCH_MS):
            raise UsageError(f"--max-offset-ms must be in (0, {MAX_SEARCH_MS:.0f}], got {self.max_offset_ms}")
        if self.tolerance_frames is not None and self.tolerance_frames < 0:
            raise UsageError("--tolerance-frames must be >= 0")
        if self.window_frames is not None and self.window_frames < 3:
            raise UsageError("--window-frames must be at least 3")
        if not 1 <= self.max_faces <= 16:
            raise UsageError("--max-faces must be between 1 and 16")
        if self.face is not None and self.face < 0:
            raise UsageError("--face must be a face number (>= 0) from the result's faces")
        if self.model is not None and not _known(self.model):
            raise ModelError(f"unknown model {self.model!r}; available: {', '.join(available_models())} "
                             "or a .pt checkpoint")


def detect(
    path: str | os.PathLike,
    *,
    max_offset_ms: float | None = None,
    tolerance_frames: float | None = None,
    window_frames: int | None = None,
    max_faces: int = 4,
    model=None,
    face: int | None = None,
    singing: bool = False,
    similarity: bool = False,
    progress: ProgressHook | None = None,
    extraction: Extraction | None = None,
) -> SyncResult:
    """Measure the audio-to-lip offset of a video.

    Returns a ``SyncResult`` whose ``offset_ms > 0`` means the audio lags the
    picture. Raises a specific ``AvsyncError`` for unusable input. A
    precomputed ``extraction`` (from ``avsync.extract.extract``) skips decoding.
    ``model`` is a name, a checkpoint path, or an estimator from ``load_model``
    (to load it once for many files). ``similarity=True`` adds ``result.similarity``:
    the active face's score in every 5-frame window at every candidate lag.
    """
    loaded = model if hasattr(model, "file_curve") else None
    opts = DetectOptions(max_offset_ms, tolerance_frames, window_frames, max_faces, None if loaded else model,
                         face, singing, similarity)
    opts.check()
    if extraction is None:  # a missing or unreadable file is reported before any model loads
        from avsync.media.decode import probe

        probe(path)
    estimator = loaded or load_model(opts.model)
    crops = getattr(estimator, "needs_crops", False)
    if extraction is None:
        from avsync.extract import extract, landmark_input_for, mesh_every_for

        embedder = None
        if getattr(estimator, "input_key", None) == "crops" and hasattr(estimator, "embedding_key"):
            from avsync.models.stream import CropEmbedder  # crops embedded as they are cut, never all held

            embedder = CropEmbedder(estimator)
        extraction = extract(path, max_faces=opts.max_faces, keep_crops=crops, progress=progress,
                             mesh_every=mesh_every_for(estimator), embedder=embedder,
                             landmark_input=landmark_input_for(estimator))
    ext = extraction
    return estimate(ext, estimator, opts)


def _face_infos(ext: Extraction) -> list[dict]:
    out = []
    for i, tr in enumerate(ext.tracks):
        found = tr.found(ext.n_frames)
        idx = np.flatnonzero(found)
        if idx.size == 0:
            continue
        out.append(
            dict(index=i, track=tr, found=found, first=ext.times[idx[0]], last=ext.times[idx[-1]],
                 size=tr.median_size())
        )
    return out


def estimate(ext: Extraction, estimator, opts: DetectOptions) -> SyncResult:
    """Read the offset from an extraction with an estimator (pure given its inputs)."""
    fps = ext.fps
    name = os.path.basename(ext.info.path)
    duration = float(ext.times[-1] - ext.times[0] + 1.0 / fps) if ext.n_frames else 0.0
    if ext.n_frames < 3 or duration < MIN_JUDGE_SECONDS:
        raise TooShortError(f"video is too short to judge sync ({duration:.2f} s < {MIN_JUDGE_SECONDS} s): {name}")
    min_frames = int(np.ceil(MIN_JUDGE_SECONDS * fps))
    faces = [f for f in _face_infos(ext) if f["found"].sum() >= min_frames]
    if opts.face is not None:
        numbers = [f["track"].track_id for f in faces]
        if opts.face not in numbers:
            raise UsageError(f"--face {opts.face}: no such face in {name} (faces: "
                             f"{', '.join(map(str, numbers)) or 'none'})")
        faces = [f for f in faces if f["track"].track_id == opts.face]
    if not faces:
        raise NoFaceError(f"no face found in the video: cannot read lips ({name})")
    speech = speech_mask(ext.mel40)
    if speech.sum() / E2E_MEL.fps < MIN_SPEECH_SECONDS:
        raise NoSpeechError(f"no speech found in the audio: cannot judge sync ({name})")

    max_s = (opts.max_offset_ms / 1000.0) if opts.max_offset_ms else DEFAULT_MAX_OFFSET_FRAMES / fps
    lags = lag_grid(max_s, fps)
    def rank(r):  # how well a face's lips agree with the voice over the whole file
        return r[2].confidence, np.nan_to_num(r[2].peak, nan=-np.inf)

    heard = frame_speech(ext.times, speech, ext.audio_t0, E2E_MEL.fps)
    seen = np.any([f["found"] for f in faces], axis=0)
    spans = plan_segments(heard, seen, shot_index(ext.n_frames, ext.cuts), 1.0 / fps,
                          target_s=SINGING_SEGMENT_S if opts.singing else None)
    per_face: dict[int, dict] = {}

    readings, best, active_prep = [], None, None
    for f in faces:  # only the curves are kept (a long file can hold hundreds of faces), and the best face's input
        prep = estimator.prepare(ext, f["index"])
        curve = estimator.file_curve(prep, lags, fps)
        evidence = evidence_seconds(f["found"], ext.times, speech, ext.audio_t0, E2E_MEL.fps)
        readings.append((f, curve, _read(lags, curve, fps, estimator, evidence)))
        per_face[f["track"].track_id] = read_face(
            spans, f["found"], fps,
            lambda a, n, prep=prep: estimator.scores(prep, lags, np.array([a]), n)[0],
            lambda c, a, b, f=f: _read(lags, c, fps, estimator, float((f["found"][a:b] & heard[a:b]).sum() / fps)))
        if best is None or rank(readings[-1]) > rank(best):
            best, active_prep = readings[-1], (prep if opts.window_frames or opts.similarity else None)

    segments = choose(spans, ext.times, fps, per_face)
    speaking = speaking_seconds(segments)
    # The file's reading pools every face that is the active speaker somewhere, weighted by its speaking
    # time (a speaker's evidence is split over tracks at each cut); the active face is the one that speaks
    # most. With no segment naming a face: the single face whose lips agree best with the voice.
    voiced = [r for r in readings if speaking.get(r[0]["track"].track_id, 0.0) > 0]
    curve = pool_curves([r[1] for r in voiced], [speaking[r[0]["track"].track_id] for r in voiced]) \
        if voiced else np.full(len(lags), np.nan)
    if np.isfinite(curve).any():
        active = max(voiced, key=lambda r: (speaking[r[0]["track"].track_id], rank(r)))
        heard_by = np.any([r[0]["found"] for r in voiced], axis=0)
        reading = _read(lags, curve, fps, estimator,
                        evidence_seconds(heard_by, ext.times, speech, ext.audio_t0, E2E_MEL.fps))
    else:
        active, curve, reading = best, best[1], best[2]
    f = active[0]
    if (opts.window_frames or opts.similarity) and active is not best:
        active_prep = estimator.prepare(ext, f["index"])
    offset_ms = reading.lag_s * 1000.0
    # Frames and the tolerance are reported in the file's own frame rate; the
    # analysis rate (at most MAX_ANALYSIS_FPS) is an internal detail.
    file_fps = ext.info.fps if ext.info.fps and ext.info.fps > 0 else fps
    tol_ms = opts.tolerance * frame_ms(file_fps)

    timeline = fit_timeline([g.start_s for g in segments], [g.end_s for g in segments],
                            [g.offset_ms for g in segments], [g.confidence for g in segments], frame_ms(fps),
                            shot=[g.shot for g in segments])
    if timeline is not None and timeline.kind == "piecewise":
        timeline = _place_changes(ext, estimator, timeline, spans, segments, faces, fps)
    face_list = [
        FaceInfo(
            track_id=r[0]["track"].track_id,
            frames_found=int(r[0]["found"].sum()),
            coverage=float(r[0]["found"].mean()),
            first_s=float(r[0]["first"] - ext.times[0]),
            last_s=float(r[0]["last"] - ext.times[0]),
            face_px=round(r[0]["size"], 1),
            offset_ms=round(r[2].lag_s * 1000.0, 1) if np.isfinite(r[2].peak) else None,
            confidence=round(r[2].confidence, 2),
            active=r is active,
            shot=r[0]["track"].shot,
            box=r[0]["track"].median_box(),
            speaking_s=round(speaking.get(r[0]["track"].track_id, 0.0), 2),
        )
        for r in readings
    ]
    windows = None
    if opts.window_frames:  # given in the file's frames
        n = max(3, int(round(opts.window_frames * fps / file_fps)))
        windows = _windows(ext, estimator, active_prep, lags, n, fps, f["found"], speech, file_fps)
    sim = _similarity(ext, estimator, active_prep, lags, f) if opts.similarity else None
    confidence = round(reading.confidence, 2)
    return SyncResult(
        path=ext.info.path,
        offset_ms=round(offset_ms, 1),
        offset_frames=round(offset_ms / frame_ms(file_fps), 2),
        fps=round(file_fps, 3),
        duration_s=round(duration, 3),
        confidence=confidence,
        in_sync=bool(round(abs(offset_ms)) <= tol_ms + 1e-6),  # as displayed (whole ms)
        tolerance_ms=round(tol_ms, 1),
        tolerance_frames=opts.tolerance,
        reliable=confidence >= RELIABLE_CONFIDENCE,  # as displayed
        evidence_s=round(reading.evidence_s, 2),
        caution=reading.caution if confidence < RELIABLE_CONFIDENCE else None,
        method=estimator.description,
        model=estimator.name,
        search_ms=round(max_s * 1000.0, 1),
        damaged=[[round(a - ext.times[0], 2), round(b - ext.times[0], 2)] for a, b in ext.damaged],
        faces=face_list,
        windows=windows,
        shots=[s.to_dict() for s in shots_from_cuts(ext.times, ext.cuts, 1.0 / fps)],
        segments=[g.to_dict() for g in segments],
        timeline=timeline.to_dict() if timeline is not None else None,
        curve={"lags_ms": np.round(lags * 1000.0, 2).tolist(), "scores": np.round(curve, 5).tolist()},
        similarity=sim,
    )


def _place_changes(ext, estimator, timeline, spans, segments, faces, fps):
    """Place each change point of a piecewise timeline to a fraction of a second.

    Segments are a few seconds long, so the fit only knows a change lies between
    two of them. Where both are read from the same face in the same shot, short
    windows across the two score the two offsets, and the change goes where the
    evidence switches from one to the other (``segments.locate_change``). Where
    the two segments lie in different shots, the change is put at the cut.
    """
    from dataclasses import replace

    from avsync.sync.timeline import Piece

    t0 = float(ext.times[0])
    read = [k for k, g in enumerate(segments) if g.offset_ms is not None]
    by_id = {f["track"].track_id: f for f in faces}
    cps = list(timeline.change_points_s)
    preps: dict[int, dict] = {}
    for i, cp in enumerate(cps):
        left = [k for k in read if segments[k].end_s <= cp + 1e-6]
        right = [k for k in read if segments[k].start_s >= cp - 1e-6]
        if not left or not right:
            continue
        kl, kr = left[-1], right[0]
        if spans[kl].shot != spans[kr].shot:
            cps[i] = segments[next(k for k, sp in enumerate(spans) if sp.shot == spans[kr].shot)].start_s  # the cut
            continue
        if segments[kl].face != segments[kr].face or segments[kl].face not in by_id:
            continue
        a, b = spans[kl].start, spans[kr].stop
        w = max(3, int(round(LOCATE_WINDOW_S * fps)))
        starts = np.arange(a, max(a + 1, b - w + 1), max(1, int(round(LOCATE_HOP_S * fps))))
        face = segments[kl].face
        if face not in preps:  # the face's input, prepared once for all its change points
            preps[face] = estimator.prepare(ext, by_id[face]["index"])
        prep = preps[face]
        lv = np.array([timeline.pieces[i].offset_ms, timeline.pieces[i + 1].offset_ms]) / 1000.0
        sc = estimator.scores(prep, lv, starts, w)
        where = locate_change(ext.times[np.minimum(starts + w // 2, ext.n_frames - 1)] - t0, sc[:, 1] - sc[:, 0])
        if where is not None:
            cps[i] = float(np.clip(where, segments[kl].start_s, segments[kr].end_s))
    edges = [timeline.pieces[0].start_s, *cps, timeline.pieces[-1].end_s]
    pieces = tuple(Piece(edges[j], edges[j + 1], p.offset_ms) for j, p in enumerate(timeline.pieces))
    return replace(timeline, change_points_s=tuple(cps), pieces=pieces)


def _similarity(ext, estimator, prep, lags, face) -> dict:
    """The active face's audio-visual similarity: the score of each 5-frame window (one per frame) at each lag."""
    n = SIMILARITY_WINDOW_FRAMES
    starts = np.arange(0, max(1, ext.n_frames - n + 1))
    per = estimator.scores(prep, lags, starts, n)
    mid = np.minimum(starts + n // 2, ext.n_frames - 1)
    return {"track_id": face["track"].track_id, "window_frames": n,
            "times_s": np.round(ext.times[mid] - ext.times[0], 4).tolist(),
            "lags_ms": np.round(lags * 1000.0, 2).tolist(),
            "scores": np.round(per, 5).tolist()}


@dataclass(frozen=True)
class Reading:
    """One curve read: the best lag (s), its confidence, the peak score, and why confidence is low."""

    lag_s: float
    confidence: float
    peak: float
    evidence_s: float
    caution: str | None


def _read(lags, curve, fps, estimator, evidence_s: float) -> Reading:
    """The offset and confidence of a curve: calibrated probability where the estimator has a
    calibration (``sync.confidence``), else its scaled prominence (checkpoints from before calibrations)."""
    excl = RIVAL_EXCLUSION_FRAMES / fps
    r = read_curve(lags, curve, excl)
    cal = getattr(estimator, "calibration", None)
    if cal is not None:
        conf = cal.probability(curve_features(lags, curve, r.index, excl, evidence_s))
    else:
        conf = r.confidence * getattr(estimator, "confidence_scale", 1.0)
    caution = None
    if np.isfinite(r.peak) and conf < RELIABLE_CONFIDENCE:
        caution = low_confidence_reason(lags, curve, r.index, excl, evidence_s)
    return Reading(r.lag_s, float(conf), r.peak, evidence_s, caution)


def low_confidence_reason(lags, curve, best: int, exclude_s: float, evidence_s: float) -> str:
    """What made a reading weak, in words: too little speech with a face, a rival offset, or weak agreement."""
    if evidence_s < LITTLE_EVIDENCE_S:
        return f"only {evidence_s:.1f} s of speech with a visible face"
    j = rival_index(lags, curve, best, exclude_s)
    s = np.asarray(curve, dtype=np.float64)
    ok = np.isfinite(s)
    if j >= 0 and ok.sum() > 2:
        spread = float(s[ok].std()) or 1.0
        if (s[best] - s[j]) / spread < CLOSE_RIVAL_Z:
            word = "late" if lags[j] > 0 else "early"
            return f"audio {abs(lags[j]) * 1000:.0f} ms {word} scores almost as well"
    return "the lips and the voice agree only weakly"


def _windows(ext, estimator, prep, lags, n, fps, found, speech, file_fps) -> list[WindowEstimate]:
    starts = np.arange(0, max(1, ext.n_frames - n + 1), n)
    per = estimator.scores(prep, lags, starts, n)
    out = []
    for s, row in zip(starts, per):
        ev = evidence_seconds(found[s : s + n], ext.times[s : s + n], speech, ext.audio_t0, E2E_MEL.fps)
        r = _read(lags, row, fps, estimator, ev)
        ok = np.isfinite(r.peak)
        end = min(s + n, ext.n_frames) - 1
        out.append(
            WindowEstimate(
                start_s=round(float(ext.times[s] - ext.times[0]), 3),
                end_s=round(float(ext.times[end] - ext.times[0] + 1.0 / fps), 3),
                offset_ms=round(r.lag_s * 1000.0, 1) if ok else None,
                offset_frames=round(r.lag_s * file_fps, 2) if ok else None,
                confidence=round(r.confidence, 2),
            )
        )
    return out
