"""``avsync eval``: run the seed papers' protocols over a folder or list of in-sync clips.

Each clip is decoded and tracked once (``extract``); every trial is then a
slice of that extraction (``slide.shift_extraction``), scored by the chosen
estimator. Clips are processed one at a time and the report is built from
what has been done, so an interrupted run still yields a (partial) report.
"""
from __future__ import annotations

import csv
import datetime as _dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avsync.api import DetectOptions, estimate, load_model
from avsync.constants import DEFAULT_MAX_OFFSET_FRAMES
from avsync.errors import AvsyncError, UsageError
from avsync.util import sha256_file
from avsync.eval import metrics as M
from avsync.eval.slide import crop_extraction, shift_extraction
from avsync.eval.trials import EXTENDED_OFFSETS, STANDARD_OFFSETS
from avsync.extract import extract, landmark_input_for, mesh_every_for
from avsync.sync.offset import lag_grid

MEDIA_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"}
PROTOCOLS = ("clip", "lrs2", "singing", "strict", "regression")


@dataclass(frozen=True)
class Clip:
    path: str
    speaker: str | None = None
    split: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class EvalOptions:
    """What to measure; checked before any work starts."""

    protocols: tuple[str, ...] = PROTOCOLS
    model: str | None = None  # None: the default model
    offsets: tuple[int, ...] = STANDARD_OFFSETS
    extended: bool = True
    seed: int = 0
    reps: int = 10
    lrs2_contexts: tuple[int, ...] = (5, 7, 9, 11, 13, 15)
    singing_contexts: tuple[int, ...] = (5, 7, 9, 11, 13, 15, 20, 25)
    strict_lengths: tuple[int, ...] = (5, 10, 15, 20)
    strict_max_offset: int = 5
    regression_trials: int = 10

    def check(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise UsageError(f"unknown protocol(s) {', '.join(bad)}; choose from {', '.join(PROTOCOLS)} or all")
        if self.reps < 1:
            raise UsageError("--reps must be at least 1")


# --------------------------------------------------------------------------- inputs
def read_manifest(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def collect_clips(inputs: list[str], split: str | None = None, manifest: Path | None = None) -> list[Clip]:
    """Clips from folders, list files, media files, and/or a manifest split."""
    rows = read_manifest(manifest) if manifest and manifest.exists() else []
    root = manifest.parent if manifest else None
    by_path = {str((root / r["path"]).resolve()): r for r in rows} if root else {}

    def clip_for(p: Path) -> Clip:
        r = by_path.get(str(p.resolve()))
        if r:
            return Clip(str(p), r.get("speaker_id_guess"), r.get("split"), r.get("kind"))
        return Clip(str(p))

    clips: list[Clip] = []
    if split:
        if not rows:
            raise UsageError(f"--split needs a manifest; none found at {manifest}")
        clips += [clip_for(root / r["path"]) for r in rows if r["split"] == split]
        if not clips:
            raise UsageError(f"no clips in split {split!r} of {manifest}")
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            clips += [clip_for(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in MEDIA_SUFFIXES]
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst", ".list"):
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line) if Path(line).is_absolute() else p.parent / line
                    clips.append(clip_for(q))
        elif p.exists():
            clips.append(clip_for(p))
        else:
            raise UsageError(f"not a file, folder or list: {item}")
    seen, unique = set(), []
    for c in clips:
        key = str(Path(c.path).resolve())
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def split_leaks(clips: list[Clip], estimator) -> tuple[list[Clip], list[tuple[Clip, str]]]:
    """Separate clips the estimator was trained on (by speaker or by file hash)."""
    summary = getattr(estimator, "training_summary", None) or {}
    speakers = set(summary.get("speakers", []))
    hashes = set(summary.get("clips_sha256", []))
    kept, refused = [], []
    for c in clips:
        if c.speaker and c.speaker in speakers:
            refused.append((c, f"speaker {c.speaker} is in the training data of {estimator.name}"))
        elif hashes and os.path.exists(c.path) and sha256_file(c.path) in hashes:
            refused.append((c, f"clip is in the training data of {estimator.name}"))
        else:
            kept.append(c)
    return kept, refused


# --------------------------------------------------------------------------- scoring
@dataclass
class _Acc:
    """Running totals, so an interrupted run still reports what it measured."""

    clip_err: list = field(default_factory=list)
    clip_truth: list = field(default_factory=list)
    clip_fps: list = field(default_factory=list)
    clip_fail: int = 0
    clip_conf: list = field(default_factory=list)  # confidence of each answered trial
    clip_reliable: list = field(default_factory=list)
    clip_id: list = field(default_factory=list)  # which clip each answered trial came from
    ext_err: list = field(default_factory=list)
    ext_truth: list = field(default_factory=list)
    ext_fps: list = field(default_factory=list)
    ext_fail: int = 0
    lrs2: dict = field(default_factory=dict)  # N -> [correct, total]
    singing: dict = field(default_factory=dict)
    strict: dict = field(default_factory=dict)  # N -> rep -> [exact, pm1, total]
    reg_pred: list = field(default_factory=list)
    reg_truth: list = field(default_factory=list)
    reg_fail: int = 0


def _face_index(ext, result) -> int:
    active = next(f.track_id for f in result.faces if f.active)
    return next(i for i, t in enumerate(ext.tracks) if t.track_id == active)


def _clip_protocol(ext, est, opts: EvalOptions, acc: _Acc, rec: dict, clip_no: int) -> None:
    errs, confs, rel = [], [], []
    for k in opts.offsets:
        if abs(k) * 3 >= ext.n_frames:
            continue
        try:
            r = estimate(shift_extraction(ext, k), est, DetectOptions())
            e = r.offset_frames - k
            acc.clip_err.append(e), acc.clip_truth.append(k), acc.clip_fps.append(r.fps)
            acc.clip_conf.append(r.confidence), acc.clip_reliable.append(r.reliable), acc.clip_id.append(clip_no)
            errs.append(e), confs.append(r.confidence), rel.append(r.reliable)
        except AvsyncError:
            acc.clip_fail += 1
            rec["failures"] += 1
    if errs:
        e = np.asarray(errs)
        rec.update(acc_pm1=float((np.abs(e) <= M.CLIP_PM1).mean()), mae_frames=float(np.abs(e).mean()),
                   median_error_frames=float(np.median(e)), trials=len(errs),
                   acc_consistent=float(M.shift_consistent(e, np.zeros(len(e), int)).mean()),
                   mean_confidence=float(np.mean(confs)), reliable_share=float(np.mean(rel)))
    if opts.extended:
        search_ms = (max(abs(k) for k in EXTENDED_OFFSETS) + 5) * 1000.0 / ext.fps
        for k in EXTENDED_OFFSETS:
            if abs(k) * 3 >= ext.n_frames:
                continue
            try:
                r = estimate(shift_extraction(ext, k), est, DetectOptions(max_offset_ms=search_ms))
                acc.ext_err.append(r.offset_frames - k), acc.ext_truth.append(k), acc.ext_fps.append(r.fps)
            except AvsyncError:
                acc.ext_fail += 1


def _window_protocols(ext, est, face: int, opts: EvalOptions, acc: _Acc) -> None:
    fps = ext.fps
    lags = lag_grid(DEFAULT_MAX_OFFSET_FRAMES / fps, fps, step_fraction=1.0)
    lags_f = np.round(lags * fps)
    for k in opts.offsets:
        if abs(k) * 3 >= ext.n_frames:
            continue
        trial = shift_extraction(ext, k)
        if trial.n_frames < 5:
            continue
        prep = est.prepare(trial, face)
        per5 = est.scores(prep, lags, np.arange(trial.n_frames - 4), 5)
        for name, contexts, tol in (("lrs2", opts.lrs2_contexts, 1.0), ("singing", opts.singing_contexts, 5.0)):
            if name not in opts.protocols:
                continue
            table = getattr(acc, name)
            for n in contexts:
                c, t = M.window_accuracy(M.context_windows(per5, n), lags_f, k, tol)
                tot = table.setdefault(n, [0, 0])
                tot[0] += c
                tot[1] += t


def _strict_protocol(ext, est, face: int, opts: EvalOptions, acc: _Acc, clip_no: int) -> None:
    fps = ext.fps
    kmax = opts.strict_max_offset
    lags = lag_grid(kmax / fps, fps, step_fraction=1.0)
    lags_f = np.round(lags * fps)
    for n in opts.strict_lengths:
        for rep in range(opts.reps):
            rng = np.random.default_rng([opts.seed, rep, clip_no, n])
            usable = ext.n_frames - kmax
            for s in range(0, usable - n + 1, n):
                k = int(rng.integers(-kmax, kmax + 1))
                window = crop_extraction(shift_extraction(ext, k), s, s + n)
                scores = est.scores(est.prepare(window, face), lags, np.array([0]), n)[0]
                i = M.argbest(scores, lags_f)
                tot = acc.strict.setdefault(n, {}).setdefault(rep, [0, 0, 0])
                if i >= 0:
                    tot[0] += int(lags_f[i] == k)
                    tot[1] += int(abs(lags_f[i] - k) <= 1)
                tot[2] += 1


def _regression_protocol(ext, est, opts: EvalOptions, acc: _Acc, clip_no: int) -> None:
    rng = np.random.default_rng([opts.seed, 7919, clip_no])
    for _ in range(opts.regression_trials):
        k = int(rng.integers(-DEFAULT_MAX_OFFSET_FRAMES, DEFAULT_MAX_OFFSET_FRAMES + 1))
        if abs(k) * 3 >= ext.n_frames:
            continue
        try:
            r = estimate(shift_extraction(ext, k), est, DetectOptions())
            acc.reg_pred.append(r.offset_frames), acc.reg_truth.append(k)
        except AvsyncError:
            acc.reg_fail += 1


# --------------------------------------------------------------------------- report
def _report(acc: _Acc, opts: EvalOptions, est, clips: list[dict], refused, partial: bool, command: str) -> dict:
    rep: dict = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": {"cores": os.cpu_count()},
        "model": est.name,
        "model_sha256": getattr(est, "sha256", None),
        "method": est.description,
        "partial": partial,
        "options": asdict(opts),
        "clips": clips,
        "refused": [{"path": c.path, "why": why} for c, why in refused],
        "protocols": {},
    }
    P = rep["protocols"]
    if "clip" in opts.protocols:
        P["clip"] = M.clip_summary(acc.clip_err, acc.clip_fps, acc.clip_fail)
        if acc.clip_err:
            consistent = M.shift_consistent(acc.clip_err, acc.clip_id)
            n_all = len(acc.clip_err) + acc.clip_fail
            P["clip"]["acc_consistent"] = float(consistent.sum() / n_all)
            P["clip"]["acc_exact_consistent"] = float(M.shift_consistent(acc.clip_err, acc.clip_id, M.CLIP_EXACT).sum() / n_all)
            P["clip"]["reliability"] = M.reliability(acc.clip_err, acc.clip_conf, acc.clip_reliable, consistent, n_all)
        P["clip"]["per_offset"] = M.per_offset_table(acc.clip_truth, acc.clip_err) if acc.clip_err else []
        if opts.extended:
            P["clip_extended"] = M.clip_summary(acc.ext_err, acc.ext_fps, acc.ext_fail)
            P["clip_extended"]["per_offset"] = M.per_offset_table(acc.ext_truth, acc.ext_err) if acc.ext_err else []
    for name, tol in (("lrs2", 1), ("singing", 5)):
        if name in opts.protocols:
            table = getattr(acc, name)
            P[name] = {"tolerance_frames": tol, "search_frames": DEFAULT_MAX_OFFSET_FRAMES, "contexts": [
                {"frames": n, "windows": t, "accuracy": (c / t if t else None)} for n, (c, t) in sorted(table.items())]}
    if "strict" in opts.protocols:
        rows = []
        for n, reps in sorted(acc.strict.items()):
            ex = [v[0] / v[2] for v in reps.values() if v[2]]
            pm = [v[1] / v[2] for v in reps.values() if v[2]]
            (em, es), (pmm, pms) = M.mean_std(ex), M.mean_std(pm)
            rows.append({"frames": n, "reps": len(ex), "windows_per_rep": int(np.mean([v[2] for v in reps.values()])),
                         "exact_mean": em, "exact_std": es, "pm1_mean": pmm, "pm1_std": pms})
        P["strict"] = {"offsets": [-opts.strict_max_offset, opts.strict_max_offset], "lengths": rows}
    if "regression" in opts.protocols:
        P["regression"] = {
            "n": len(acc.reg_pred), "failures": acc.reg_fail,
            "rmse_frames": M.rmse(acc.reg_pred, acc.reg_truth) if acc.reg_pred else None,
            "no_information_rmse_frames": M.no_information_rmse(DEFAULT_MAX_OFFSET_FRAMES),
            "no_information_rmse_sampled": M.rmse(np.zeros(len(acc.reg_truth)), acc.reg_truth) if acc.reg_truth else None,
        }
    return rep


def evaluate(
    clips: list[Clip],
    opts: EvalOptions = EvalOptions(),
    *,
    command: str = "",
    on_clip: Callable[[int, Clip, dict], None] | None = None,
) -> dict:
    """Run the protocols over ``clips``; returns the report (``partial`` if interrupted)."""
    opts.check()
    t0 = time.perf_counter()
    est = load_model(opts.model)
    kept, refused = split_leaks(clips, est)
    acc = _Acc()
    done: list[dict] = []
    partial = False
    try:
        for i, clip in enumerate(kept):
            rec = {"path": clip.path, "speaker": clip.speaker, "failures": 0}
            try:
                ext = extract(clip.path, keep_crops=getattr(est, "needs_crops", False), mesh_every=mesh_every_for(est),
                              landmark_input=landmark_input_for(est))
                base = estimate(ext, est, DetectOptions())
                face = _face_index(ext, base)
                rec.update(fps=round(ext.fps, 3), frames=ext.n_frames, base_offset_ms=base.offset_ms,
                           base_confidence=base.confidence)
            except AvsyncError as exc:
                rec.update(error=str(exc), error_type=type(exc).__name__)
                acc.clip_fail += sum(1 for k in opts.offsets) if "clip" in opts.protocols else 0
                done.append(rec)
                if on_clip:
                    on_clip(i, clip, rec)
                continue
            if "clip" in opts.protocols:
                _clip_protocol(ext, est, opts, acc, rec, i)
            if "lrs2" in opts.protocols or "singing" in opts.protocols:
                _window_protocols(ext, est, face, opts, acc)
            if "strict" in opts.protocols:
                _strict_protocol(ext, est, face, opts, acc, i)
            if "regression" in opts.protocols:
                _regression_protocol(ext, est, opts, acc, i)
            done.append(rec)
            if on_clip:
                on_clip(i, clip, rec)
    except KeyboardInterrupt:
        partial = True
    rep = _report(acc, opts, est, done, refused, partial, command)
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    return rep
