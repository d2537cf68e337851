"""Find the training clips whose source carries an audio offset of its own, so training can re-align them.

    python -m avsync.train.align MODEL [--out configs/source-offsets.json]

Web and broadcast sources often sit 1-3 frames off. A model trained on such a
clip as if it were in sync learns that offset as sync. A model trained on all
of them still reads each clip at several trial offsets; where its errors agree
on one shift (the median error of the clip's trials, the protocol's
shift-consistent reading) by at least ``MIN_FRAMES`` although it was trained
to read that clip as in sync, the source is taken to carry that offset. A
config's ``source_offsets`` then moves those clips' audio by it (``train.loop.load_bank``).

Only the wild ``train`` clips are examined: GRID (studio recordings, in sync)
and the unlabelled LRC-AR pool are left as they are, and so are the speakers
the model held out (they calibrate confidence with shift-consistent labels).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

import numpy as np

from avsync.train.calibrate import OFFSETS, RIGHT_FRAMES, read_bank

#: A source is re-aligned when its clip's trials agree on a shift of at least this many frames...
MIN_FRAMES = 1.0
#: ... and at least this share of its trials lie within ±1.5 frames of that shift.
MIN_AGREEMENT = 0.8
#: Speakers never examined (see module docstring).
LEFT_AS_THEY_ARE = ("grid_s1", "lrcar_unlabelled")


def source_offsets(readings, bank, min_frames: float = MIN_FRAMES, min_agreement: float = MIN_AGREEMENT) -> dict:
    """``{sha256: {...}}`` for the clips of ``bank`` whose whole-clip readings agree on an own offset."""
    out = {}
    for ci, c in enumerate(bank):
        sel = (readings.clip == ci) & readings.whole
        if sel.sum() < 3:
            continue
        e = readings.error[sel]
        med = float(np.median(e))
        agree = float((np.abs(e - med) <= RIGHT_FRAMES).mean())
        if abs(med) >= min_frames and agree >= min_agreement:
            fps = float(c.arr["fps"])
            out[c.rec.sha256] = {"path": Path(c.rec.path).name, "speaker": c.rec.speaker,
                                 "offset_frames": round(med, 2), "offset_ms": round(med * 1000.0 / fps, 1),
                                 "agreement": round(agree, 2), "trials": int(sel.sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a trained checkpoint (.pt) or a shipped model name")
    ap.add_argument("--out", type=Path, default=Path("configs/source-offsets.json"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()

    from avsync.api import load_model
    from avsync.train.cache import DEFAULT_CACHE, build_cache, manifest_clips
    from avsync.train.loop import load_bank

    est = load_model(a.model)
    held = set(est.training_summary.get("val_speakers", []))
    recs = [r for r in manifest_clips(a.data, ("train",)) if r.speaker not in LEFT_AS_THEY_ARE and r.speaker not in held]
    bank = load_bank(build_cache(recs), DEFAULT_CACHE)
    readings = read_bank(est, bank, offsets=OFFSETS, lengths_s=())
    found = source_offsets(readings, bank)
    doc = {
        "what": "audio offsets of training sources (ms, > 0: audio late), applied by configs' source_offsets",
        "model": est.name, "model_sha256": getattr(est, "sha256", None),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "rule": f"median whole-clip error over trials at {list(OFFSETS)} frames of at least {MIN_FRAMES} frame(s), "
                f"with {MIN_AGREEMENT:.0%} of the trials within ±{RIGHT_FRAMES} frames of it",
        "examined": len(bank),
        "clips": found,
    }
    a.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    for v in found.values():
        print(f"{v['offset_frames']:+6.2f} frames ({v['offset_ms']:+.0f} ms), agreement {v['agreement']:.0%}: {v['path']}")
    print(f"{len(found)} of {len(bank)} clips carry an offset of their own -> {a.out}")


if __name__ == "__main__":
    main()
