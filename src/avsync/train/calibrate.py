"""Fit an estimator's confidence on readings of held-out speakers (never the ``dev`` split).

    python -m avsync.train.calibrate MODEL [--speakers S ...] [--out FILE.pt]

A *reading* is what ``avsync detect`` would say about one trial: a held-out
clip, or a stretch of it from 0.6 s to its whole length, with its audio
shifted by k frames as the protocol does (trimmed, never padded). Each reading
gives the curve features of ``sync.confidence`` and an error in frames. A
reading is *right* when its error is within ±1.5 frames of the clip's own
offset, which is how the benchmark protocol's shift-consistent accuracy treats
sources that are a few frames off on their own.

A clip's own offset is what independent readers agree on (``consensus_offsets``):
each of the ``REFEREES`` (shipped models that read mouth pixels or lip landmarks,
trained on different speakers) and the model being calibrated reads the clip's
whole-length trials, and the median of their readings is the clip's offset when
most of them lie within ±1.5 frames of it. Where they do not agree the clip is
taken to be in sync, and its readings must be right in absolute terms. So a model
that misreads one face by the same amount at every trial offset (which its own
median error would call the source's offset) is still counted wrong there, and a
source that really is a few frames off does not count against a model that reads
it so. Referees trained on a clip's speaker do not vote on that clip.

A learned model's calibration is written into a copy of its checkpoint
(``--out``; ship it with ``avsync.train.ship``), or into a shipped model in place
(its ONNX export, which carries the metadata, is then made again); the model-free
method's and the fusions' go into ``models/registry.json``. The held-out clips
are extracted as ``detect`` extracts them for the model (``extract.mesh_every_for``:
``AVSYNC_MESH_EVERY=2`` calibrates a crop model for landmarks on every 2nd frame, and
records it, so that ``detect`` then runs it that way).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.audio.features import E2E_MEL
from avsync.models.inputs import PER_FRAME_KEYS
from avsync.sync.confidence import Calibration, curve_features, evidence_seconds, fit_calibration, support_z
from avsync.sync.offset import lag_grid, read_curve
from avsync.sync.speech import speech_mask

#: Held-out wild speakers of the ``train`` split that calibrate confidence (and validate) by default:
#: eight people, about a minute, from six sources (video-retalking, LRW, HDTF, MEAD, MSDWild, DINet).
CALIBRATION_SPEAKERS = (
    "vrt_face4_woman_blue_bg", "vrt_face5_woman_glasses_red", "lrw_man_glasses", "hdtf_RD_Radio2_woman_window",
    "MEAD_W040", "msdwild_demo1_woman_B_blonde_car", "BillSkarsgard(actor)", "dinet_test19_blonde_woman",
)
#: Trial offsets (frames) of the calibration readings.
OFFSETS = (-12, -8, -5, -3, -1, 0, 1, 3, 5, 8, 12)
#: Lengths (s) of the stretches read besides the whole clip.
LENGTHS_S = (0.6, 1.0, 2.0, 4.0)
#: Own offsets beyond this (frames) are not trusted where a clip's own offset comes from the model's
#: readings alone (``Readings.own_offsets``: validation metrics, and calibrating without referees).
MAX_OWN_OFFSET = 3.0
#: The shipped models whose readings decide a calibration clip's own offset (see module docstring): two
#: visual inputs (mouth crops, lip landmarks), two training sets (24 speakers; GRID s1 and six others).
REFEREES = ("pm-wild", "landmark-wild", "pm-small", "landmark-small")
#: Within this many frames of the truth (or the clip's own offset) counts as right.
RIGHT_FRAMES = 1.5


def crop_arrays(arr: dict, start: int, stop: int) -> dict:
    """Frames [start, stop) of a clip's arrays, with only the audio under those frames (a short clip)."""
    times = np.asarray(arr["times"])[start:stop]
    fps = float(arr["fps"])
    t_from, t_to = float(times[0]) - 0.5 / fps, float(times[-1]) + 0.5 / fps
    hop = 1.0 / E2E_MEL.fps
    t0 = float(arr["audio_t0"])
    mel = arr["mel40"]
    j0 = max(0, int(np.ceil((t_from - t0) / hop - 1e-9)))
    j1 = min(len(mel), int(np.ceil((t_to - t0) / hop - 1e-9)))
    out = {k: v[start:stop] for k, v in arr.items() if k in PER_FRAME_KEYS}
    return {**arr, **out, "times": times, "mel40": mel[j0 : max(j0, j1)], "audio_t0": t0 + j0 * hop}


@dataclass
class Readings:
    """Readings of an estimator on held-out clips (one row each)."""

    clip: np.ndarray  # index into the bank
    k: np.ndarray  # trial offset (frames)
    seconds: np.ndarray  # length of the stretch read
    whole: np.ndarray  # bool: the whole clip
    error: np.ndarray  # frames: reading - k
    features: np.ndarray  # (N, 3) curve features
    speakers: list
    #: (N,) a second estimator's ``support_z`` of each answer, where ``read_bank`` was given one (measurements)
    support: np.ndarray | None = None

    def right(self, own: dict[int, float] | None = None) -> np.ndarray:
        """Whether each reading is within ±1.5 frames of its clip's own offset: ``own`` (clip -> frames, e.g.
        ``consensus_offsets``), else ``own_offsets``."""
        own = self.own_offsets() if own is None else own
        ref = np.array([own.get(int(c), 0.0) for c in self.clip])
        return np.abs(self.error - ref) <= RIGHT_FRAMES

    def whole_errors(self) -> dict[int, float]:
        """Per clip: the median error (frames) of its whole-clip readings."""
        return {int(c): float(np.median(self.error[(self.clip == c) & self.whole]))
                for c in np.unique(self.clip[self.whole])}

    def own_offsets(self) -> dict[int, float]:
        """Per clip, from this model's readings alone: its median whole-clip error, 0 beyond ``MAX_OWN_OFFSET``."""
        med = self.whole_errors()
        return {int(c): (med[int(c)] if abs(med.get(int(c), 0.0)) <= MAX_OWN_OFFSET else 0.0)
                for c in np.unique(self.clip)}


def consensus(values) -> float | None:
    """The offset (frames) that most readers agree on: the median of ``values`` when more than half of them,
    and at least two, lie within ±``RIGHT_FRAMES`` of it; else None."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return None
    m = float(np.median(v))
    agree = int((np.abs(v - m) <= RIGHT_FRAMES).sum())
    return m if agree >= 2 and agree * 2 > len(v) else None


def consensus_offsets(readings: Readings, bank: list, referees=REFEREES, name: str | None = None) -> dict[int, dict]:
    """Per clip of ``bank``: the readers' whole-clip median errors and the offset they agree on (0 where they do
    not), as ``{clip: {"readers": {name: frames}, "offset": frames}}``. The readers are the model of
    ``readings`` (as ``name``) and each referee not trained on the clip's speaker."""
    from avsync.api import load_model

    votes: dict[int, dict[str, float]] = {c: {} for c in range(len(bank))}
    for c, e in readings.whole_errors().items():
        votes[c][name or "self"] = e
    for ref in referees:
        if ref == name:
            continue
        est = load_model(ref)
        trained = set((getattr(est, "training_summary", None) or {}).get("speakers", []))
        sub = [i for i, c in enumerate(bank) if c.rec.speaker not in trained]
        if not sub:
            continue
        r = read_bank(est, [bank[i] for i in sub], lengths_s=())
        for c, e in r.whole_errors().items():
            votes[sub[c]][ref] = e
    out = {}
    for c, v in votes.items():
        agreed = consensus(list(v.values()))
        out[c] = {"readers": {k: round(x, 2) for k, x in v.items()}, "offset": 0.0 if agreed is None else agreed}
    return out


def clip_inputs(estimator, arr: dict) -> dict:
    """A clip's arrays with ``estimator``'s per-frame visual embeddings of the whole clip added as ``v``, where
    it has them (``EstimatorBase.embed_arrays``), so that its trials and stretches are sliced from one encoding,
    as ``avsync eval`` slices a clip's streamed embeddings; other estimators get ``arr`` unchanged."""
    embed = getattr(estimator, "embed_arrays", None)
    v = embed(arr) if embed is not None else None
    return arr if v is None else {**arr, "v": v}


def read_bank(estimator, bank: list, offsets=OFFSETS, lengths_s=LENGTHS_S, seed: int = 0,
              stretches_per_length: int = 2, second=None) -> Readings:
    """Readings of ``estimator`` on every clip of ``bank`` (``train.loop.Clip``), trial by trial; with ``second``
    (another estimator), also how well its curve of each stretch backs the answer (``Readings.support``).

    A model's visual encoder runs once per clip (``clip_inputs``): a trial keeps frames of the clip and shifts
    only the audio, so its embeddings are the clip's, sliced. Within two frames of a trial's trimmed edge
    they see the clip's neighbouring frames, as a stretch of a longer file does in ``detect``."""
    from avsync.api import RIVAL_EXCLUSION_FRAMES
    from avsync.train.loop import shift_arrays

    rng = np.random.default_rng(seed)
    rows = []
    for ci, c in enumerate(bank):
        fps = float(c.arr["fps"])
        lags = lag_grid(15 / fps, fps)
        excl = RIVAL_EXCLUSION_FRAMES / fps
        base = clip_inputs(estimator, c.arr)
        base2 = clip_inputs(second, c.arr) if second is not None else None
        for k in offsets:
            if abs(k) * 3 >= c.n:
                continue
            trial = shift_arrays(base, k)
            trial2 = shift_arrays(base2, k) if second is not None else None
            n = len(trial["times"])
            spans = [(0, n, True)]
            for sec in lengths_s:
                m = int(round(sec * fps))
                if m + 2 > n:
                    continue
                for s in rng.integers(0, n - m + 1, size=stretches_per_length):
                    spans.append((int(s), int(s) + m, False))
            for a, b, whole in spans:
                arr = trial if whole else crop_arrays(trial, a, b)
                if not arr["found"].any():
                    continue
                prep = estimator.prepare_arrays(arr)
                curve = estimator.file_curve(prep, lags, fps)
                r = read_curve(lags, curve, excl)
                if not np.isfinite(r.peak):
                    continue
                ev = evidence_seconds(arr["found"], arr["times"], speech_mask(arr["mel40"]), float(arr["audio_t0"]),
                                      E2E_MEL.fps)
                sup = np.nan
                if second is not None:
                    arr2 = trial2 if whole else crop_arrays(trial2, a, b)
                    sup = support_z(lags, second.file_curve(second.prepare_arrays(arr2), lags, fps), r.lag_s, fps)
                rows.append((ci, k, (b - a) / fps, whole, r.lag_s * fps - k, curve_features(lags, curve, r.index, excl, ev),
                             sup))
    if not rows:
        return Readings(*(np.zeros(0) for _ in range(5)), np.zeros((0, 3)), [c.rec.speaker for c in bank])
    ci, k, sec, whole, err, feats, sup = zip(*rows)
    return Readings(np.array(ci), np.array(k), np.array(sec), np.array(whole, bool), np.array(err), np.stack(feats),
                    [c.rec.speaker for c in bank], np.array(sup) if second is not None else None)


def readings_metrics(r: Readings, prefix: str = "val") -> dict:
    """Metrics of whole-clip readings: absolute and shift-consistent accuracy within ±1 frame, exact, MAE."""
    w = r.whole
    out = {f"{prefix}_trials": int(w.sum())}
    if w.any():
        e = np.abs(r.error[w])
        out.update({f"{prefix}_acc_pm1": float((e <= RIGHT_FRAMES).mean()), f"{prefix}_acc_exact": float((e <= 0.5).mean()),
                    f"{prefix}_acc_consistent": float(r.right()[w].mean()), f"{prefix}_mae_frames": float(e.mean())})
    return out


def calibrate(readings: Readings, mesh_every: int = 1, own: dict[int, dict] | None = None) -> Calibration:
    """Fit the confidence of one estimator on its readings; ``mesh_every``: how often the landmarks ran in
    the extraction the readings were made from (recorded, and ``detect`` then runs them so:
    ``extract.mesh_every_for``). ``own``: the clips' own offsets agreed by referees (``consensus_offsets``);
    without it, each clip's own offset comes from the model's readings alone (``Readings.own_offsets``)."""
    if own is not None:
        offsets = {c: v["offset"] for c, v in own.items()}
        rule = (f"right = within ±{RIGHT_FRAMES} frames of the clip's own offset: the median whole-clip reading "
                f"of the model and the referees {list(REFEREES)} (those not trained on the clip) where most of them "
                f"agree within ±{RIGHT_FRAMES} frames, else 0")
    else:
        offsets = readings.own_offsets()
        rule = (f"right = within ±{RIGHT_FRAMES} frames of the clip's own offset (median whole-clip error, "
                f"trusted up to ±{MAX_OWN_OFFSET:g} frames)")
    right = readings.right(offsets)
    info = {
        "readings": int(len(right)), "right": float(right.mean()) if len(right) else None,
        "speakers": sorted(set(readings.speakers)), "clips": len(readings.speakers), "rule": rule,
        "own_offsets_frames": {readings.speakers[c] + f"#{c}": round(v, 2) for c, v in offsets.items()},
        "lengths_s": [*LENGTHS_S, "whole"], "offsets": list(OFFSETS), "mesh_every": int(mesh_every),
    }
    if own is not None:
        info["readers_frames"] = {readings.speakers[c] + f"#{c}": v["readers"] for c, v in own.items()}
    if len(right) < 20 or right.all() or not right.any():
        raise ValueError(f"cannot calibrate on {len(right)} readings with {int(right.sum())} right")
    return fit_calibration(readings.features, right, info)


def calibration_bank(estimator, data_dir: Path, speakers: list[str] | None = None) -> list:
    """The cached clips of the held-out speakers that calibrate ``estimator``.

    By default: the speakers its training held out for validation, else
    ``CALIBRATION_SPEAKERS``. Speakers it was trained on are refused. The clips are extracted
    with the landmarks as often as ``detect`` runs them for this model (``mesh_every_for``).
    """
    from avsync.extract import mesh_every_for
    from avsync.train.cache import build_cache, cache_dir, manifest_clips
    from avsync.train.loop import load_bank

    summary = getattr(estimator, "training_summary", None) or {}
    speakers = list(speakers or summary.get("val_speakers") or CALIBRATION_SPEAKERS)
    seen = set(speakers) & set(summary.get("speakers", []))
    if seen:
        raise ValueError(f"{estimator.name} was trained on {sorted(seen)}: calibrate on held-out speakers")
    # Read as detect reads it: with the landmarks as often as detect runs them for this model.
    mesh_every = mesh_every_for(estimator)
    cache = cache_dir(mesh_every)
    recs = build_cache([r for r in manifest_clips(Path(data_dir), ("train",)) if r.speaker in set(speakers)], cache,
                       mesh_every=mesh_every)
    return load_bank(recs, cache)


def write_model_meta(model: str, updates: dict, out: Path | None = None) -> Path:
    """Write a learned model's checkpoint with ``updates`` to its metadata: a checkpoint ``.pt`` to ``out``
    (default: in place), or a shipped model (by name) in place, registered again with its ONNX export,
    which carries the metadata, made again. Returns the path written."""
    from avsync.models.checkpoint import register, registered_path, rewrite_meta
    from avsync.models.registry import registry

    is_file = model.endswith(".pt")
    had_onnx = not is_file and bool(registry()[model].get("onnx"))
    src = Path(model) if is_file else registered_path(model)
    out = out or src
    rewrite_meta(src, out, updates)
    if out == src and not is_file:
        register(out)  # a shipped model rewritten in place: record its new sha256
        if had_onnx:
            from avsync.models.onnx import export_shipped

            export_shipped([model])
    return out


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped model, NAME+modelfree, modelfree, or a checkpoint .pt")
    ap.add_argument("--speakers", nargs="*", default=None,
                    help="held-out train speakers (default: the model's validation speakers, else CALIBRATION_SPEAKERS)")
    ap.add_argument("--out", type=Path, default=None, help="for a learned model: where to write the calibrated copy "
                    "(default: in place; a shipped model is then registered again)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()

    from avsync.api import load_model
    from avsync.models.registry import registry, set_calibration

    from avsync.extract import mesh_every_for

    est = load_model(a.model)
    bank = calibration_bank(est, a.data, a.speakers)
    readings = read_bank(est, bank)
    cal = calibrate(readings, mesh_every=mesh_every_for(est), own=consensus_offsets(readings, bank, name=a.model))
    metrics = readings_metrics(readings)
    print(json.dumps({"metrics": metrics, "calibration": cal.to_dict()}, indent=1))
    if a.model.endswith(".pt") or a.model in registry():
        old = {k: v for k, v in est.meta.get("metrics", {}).items() if not k.startswith("val_") and k != "confidence_scale"}
        out = write_model_meta(a.model, {"calibration": cal.to_dict(), "metrics": {**old, **metrics}}, a.out)
        print(f"wrote {out}")
    else:
        set_calibration(a.model, cal.to_dict())
        print(f"registry.json: calibration of {a.model}")


if __name__ == "__main__":
    main()
