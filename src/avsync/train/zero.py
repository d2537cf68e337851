"""Fit where a learned model puts zero: its reading of footage known to be in sync (never the ``dev`` split).

    python -m avsync.train.zero MODEL [--clips N] [--out FILE.pt]

A model learns "in sync" from its training data. Real sources carry offsets of
their own (many sit a frame or so off), so a model trained on them can put its
zero a fraction of a frame away from true sync: ``pm-wild`` reads the GRID
speaker it was trained on about half a frame early. That bias is in every
answer, so it costs exact (±0.5 frame) accuracy everywhere and makes ``fix``
move in-sync audio.

GRID is recorded in a studio with audio and video in sync, so the model's
reading of GRID s1 clips (``train`` split; trials trimmed as the protocol's, at
several offsets, error = reading minus the trial's offset) measures its zero:
the median over clips of each clip's median error, in ms. The checkpoint records
it as ``zero`` (with what it was fitted on), and from then on the model hears,
at each lag, the audio that much further on (``models.scoring.EstimatorBase``),
so that its answer on in-sync footage is 0. Fitting a model that already has a zero measures what
is left and adds it.

The confidence is unaffected: it reads the shape of the score curve, not where
its peak lies, and its labels allow for each source's own offset.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: The speaker whose clips are known to be in sync (GRID: studio recordings).
ZERO_SPEAKER = "grid_s1"
#: Clips read (a seeded sample of the speaker's clips).
ZERO_CLIPS = 200
#: Trial offsets (frames) read per clip.
ZERO_OFFSETS = (-5, -3, -1, 0, 1, 3, 5)
#: Fewest clips a zero is fitted on.
MIN_CLIPS = 20


def fit_zero(clip: np.ndarray, error_ms: np.ndarray) -> tuple[float, dict]:
    """The zero (ms) from readings' clip indices and errors (ms, reading minus truth): the median over
    clips of each clip's median error, and a summary of the spread (``ValueError`` on fewer than
    ``MIN_CLIPS`` clips)."""
    clip = np.asarray(clip)
    error_ms = np.asarray(error_ms, dtype=np.float64)
    ok = np.isfinite(error_ms)
    per = np.array([np.median(error_ms[ok & (clip == c)]) for c in np.unique(clip[ok])])
    if len(per) < MIN_CLIPS:
        raise ValueError(f"cannot fit a zero on {len(per)} clips (at least {MIN_CLIPS})")
    zero = float(np.median(per))
    q25, q75 = np.percentile(per, [25, 75])
    # the median's standard error, from the clips' spread (1.2533 sd / sqrt(n) for a normal spread)
    se = float(1.2533 * 0.7413 * (q75 - q25) / np.sqrt(len(per)))
    return zero, {"clips": int(len(per)), "readings": int(ok.sum()), "clip_median_iqr_ms": [round(float(q25), 2),
                  round(float(q75), 2)], "standard_error_ms": round(se, 2)}


def zero_bank(data_dir: Path, n_clips: int = ZERO_CLIPS, seed: int = 0, speaker: str = ZERO_SPEAKER,
              mesh_every: int = 1, cache_base: Path | None = None) -> list:
    """A seeded sample of ``n_clips`` cached clips of ``speaker`` (``train`` split), extracted if need be
    (into ``cache_base``, default the training cache, a folder per landmark rate)."""
    from avsync.train.cache import DEFAULT_CACHE, build_cache, cache_dir, manifest_clips
    from avsync.train.loop import load_bank

    recs = [r for r in manifest_clips(Path(data_dir), ("train",)) if r.speaker == speaker]
    if not recs:
        raise ValueError(f"no train clips of {speaker} in {data_dir}")
    rng = np.random.default_rng(seed)
    recs = [recs[i] for i in sorted(rng.choice(len(recs), min(n_clips, len(recs)), replace=False))]
    cache = cache_dir(mesh_every, cache_base or DEFAULT_CACHE)
    return load_bank(build_cache(recs, cache, mesh_every=mesh_every), cache)


def measure_zero(estimator, bank: list, offsets=ZERO_OFFSETS) -> dict:
    """The zero of ``estimator`` (ms) measured on ``bank`` (clips known to be in sync), added to the zero it
    already applies, with what it was fitted on: the checkpoint's ``zero`` entry."""
    from avsync.train.calibrate import read_bank

    r = read_bank(estimator, bank, offsets=tuple(offsets), lengths_s=())
    fps = np.array([float(bank[int(c)].arr["fps"]) for c in r.clip]) if len(r.clip) else np.zeros(0)
    left, info = fit_zero(r.clip, r.error * 1000.0 / np.where(fps > 0, fps, np.nan) if len(fps) else r.error)
    before = float(getattr(estimator, "zero_ms", 0.0))
    return {"ms": round(before + left, 2),
            "fitted_on": {**info, "speaker": sorted(set(r.speakers)), "offsets_frames": list(offsets),
                          "residual_before_ms": round(left, 2), "zero_before_ms": before,
                          "rule": "median over clips of the clip's median error (reading - trial offset) on footage "
                                  "known to be in sync; at each lag the model then hears the audio this much further on"}}


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped learned model, or a checkpoint .pt")
    ap.add_argument("--clips", type=int, default=ZERO_CLIPS, help=f"{ZERO_SPEAKER} clips read (default {ZERO_CLIPS})")
    ap.add_argument("--out", type=Path, default=None, help="where to write the copy (default: in place; a shipped "
                    "model is then registered and exported again)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--dry-run", action="store_true", help="measure and print; write nothing")
    a = ap.parse_args()

    from avsync.api import load_model
    from avsync.extract import mesh_every_for
    from avsync.train.calibrate import write_model_meta

    est = load_model(a.model)
    if not hasattr(est, "meta"):
        ap.error(f"{a.model} is not a learned model: fit the zero of each learned model by name (a fusion's "
                 "members carry their own)")
    zero = measure_zero(est, zero_bank(a.data, a.clips, mesh_every=mesh_every_for(est)))
    print(json.dumps(zero, indent=1))
    if not a.dry_run:
        print(f"wrote {write_model_meta(a.model, {'zero': zero}, a.out)}")


if __name__ == "__main__":
    main()
