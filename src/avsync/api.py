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
    MIN_JUDGE_SECONDS,
    MIN_SPEECH_SECONDS,
    frame_ms,
)
from avsync.audio.features import E2E_MEL
from avsync.errors import ModelError, NoFaceError, NoSpeechError, TooShortError, UsageError
from avsync.result import FaceInfo, SyncResult, WindowEstimate
from avsync.sync.confidence import curve_features, evidence_seconds
from avsync.sync.offset import lag_grid, read_curve, rival_index
from avsync.sync.speech import speech_mask

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
    tolerance_frames: float = DEFAULT_TOLERANCE_FRAMES
    window_frames: int | None = None
    max_faces: int = 4
    model: str | None = None  # None: default_model()

    def check(self) -> None:
        if self.max_offset_ms is not None and not (0 < self.max_offset_ms <= MAX_SEARCH_MS):
            raise UsageError(f"--max-offset-ms must be in (0, {MAX_SEARCH_MS:.0f}], got {self.max_offset_ms}")
        if self.tolerance_frames < 0:
            raise UsageError("--tolerance-frames must be >= 0")
        if self.window_frames is not None and self.window_frames < 3:
            raise UsageError("--window-frames must be at least 3")
        if not 1 <= self.max_faces <= 16:
            raise UsageError("--max-faces must be between 1 and 16")
        if self.model is not None and not _known(self.model):
            raise ModelError(f"unknown model {self.model!r}; available: {', '.join(available_models())} "
                             "or a .pt checkpoint")


def detect(
    path: str | os.PathLike,
    *,
    max_offset_ms: float | None = None,
    tolerance_frames: float = DEFAULT_TOLERANCE_FRAMES,
    window_frames: int | None = None,
    max_faces: int = 4,
    model: str | None = None,
    progress: ProgressHook | None = None,
    extraction: Extraction | None = None,
) -> SyncResult:
    """Measure the audio-to-lip offset of a video.

    Returns a ``SyncResult`` whose ``offset_ms > 0`` means the audio lags the
    picture. Raises a specific ``AvsyncError`` for unusable input. A
    precomputed ``extraction`` (from ``avsync.extract.extract``) skips decoding.
    """
    opts = DetectOptions(max_offset_ms, tolerance_frames, window_frames, max_faces, model)
    opts.check()
    if extraction is None:  # a missing or unreadable file is reported before any model loads
        from avsync.media.decode import probe

        probe(path)
    estimator = load_model(opts.model)
    crops = getattr(estimator, "needs_crops", False)
    if extraction is None:
        from avsync.extract import extract, mesh_every_for

        extraction = extract(path, max_faces=opts.max_faces, keep_crops=crops, progress=progress,
                             mesh_every=mesh_every_for(estimator))
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
    if not faces:
        raise NoFaceError(f"no face found in the video: cannot read lips ({name})")
    speech = speech_mask(ext.mel40)
    if speech.sum() / E2E_MEL.fps < MIN_SPEECH_SECONDS:
        raise NoSpeechError(f"no speech found in the audio: cannot judge sync ({name})")

    max_s = (opts.max_offset_ms / 1000.0) if opts.max_offset_ms else DEFAULT_MAX_OFFSET_FRAMES / fps
    lags = lag_grid(max_s, fps)
    def rank(r):  # the active face is the one whose lips agree best with the voice
        return r[2].confidence, np.nan_to_num(r[2].peak, nan=-np.inf)

    readings, best, best_prep = [], None, None
    for f in faces:  # only the curves are kept (a long file can hold hundreds of faces), and the best face's input
        prep = estimator.prepare(ext, f["index"])
        curve = estimator.file_curve(prep, lags, fps)
        evidence = evidence_seconds(f["found"], ext.times, speech, ext.audio_t0, E2E_MEL.fps)
        readings.append((f, curve, _read(lags, curve, fps, estimator, evidence)))
        if best is None or rank(readings[-1]) > rank(best):
            best, best_prep = readings[-1], (prep if opts.window_frames else None)
    f, curve, reading = best
    offset_ms = reading.lag_s * 1000.0
    tol_ms = opts.tolerance_frames * frame_ms(fps)

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
            active=r is best,
        )
        for r in readings
    ]
    windows = None
    if opts.window_frames:
        windows = _windows(ext, estimator, best_prep, lags, opts.window_frames, fps, f["found"], speech)
    confidence = round(reading.confidence, 2)
    return SyncResult(
        path=ext.info.path,
        offset_ms=round(offset_ms, 1),
        offset_frames=round(offset_ms / frame_ms(fps), 2),
        fps=round(fps, 3),
        duration_s=round(duration, 3),
        confidence=confidence,
        in_sync=bool(round(abs(offset_ms)) <= tol_ms + 1e-6),  # as displayed (whole ms)
        tolerance_ms=round(tol_ms, 1),
        tolerance_frames=opts.tolerance_frames,
        reliable=confidence >= RELIABLE_CONFIDENCE,  # as displayed
        evidence_s=round(reading.evidence_s, 2),
        caution=reading.caution if confidence < RELIABLE_CONFIDENCE else None,
        method=estimator.description,
        model=estimator.name,
        search_ms=round(max_s * 1000.0, 1),
        faces=face_list,
        windows=windows,
        curve={"lags_ms": np.round(lags * 1000.0, 2).tolist(), "scores": np.round(curve, 5).tolist()},
    )


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


def _windows(ext, estimator, prep, lags, n, fps, found, speech) -> list[WindowEstimate]:
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
                offset_frames=round(r.lag_s * fps, 2) if ok else None,
                confidence=round(r.confidence, 2),
            )
        )
    return out
