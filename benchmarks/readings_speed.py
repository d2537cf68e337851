#!/usr/bin/env python
"""What one visual encoding per clip saves in a model's held-out readings (``train.calibrate.read_bank``).

    python benchmarks/readings_speed.py                 # pm-wild on the calibration speakers
    python benchmarks/readings_speed.py --model landmark-wild

Reads the held-out calibration speakers of the ``train`` split (never ``dev``) twice, as training's
validation and calibration read them: once with the clip's visual embeddings sliced per trial and stretch
(what ``read_bank`` does), once with every trial and stretch encoded afresh (``embed_arrays`` turned off,
what it did before). Prints wall and CPU seconds of each, how far the readings moved, and the whole-clip
shift-consistent accuracy of each, as a markdown table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pm-wild")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()

    from avsync.api import load_model
    from avsync.train.cache import DEFAULT_CACHE, build_cache, manifest_clips
    from avsync.train.calibrate import CALIBRATION_SPEAKERS, read_bank
    from avsync.train.loop import load_bank

    recs = [r for r in manifest_clips(a.data, ("train",)) if r.speaker in set(CALIBRATION_SPEAKERS)]
    bank = load_bank(build_cache(recs, DEFAULT_CACHE), DEFAULT_CACHE)
    est = load_model(a.model)
    once, w1, c1 = timed(lambda: read_bank(est, bank))
    est.embed_arrays = lambda arr: None
    fresh, w0, c0 = timed(lambda: read_bank(est, bank))
    d = np.abs(once.error - fresh.error)[once.whole]
    print(f"`{a.model}`, {len(bank)} clips of {len(CALIBRATION_SPEAKERS)} calibration speakers, "
          f"{len(once.error)} readings ({int(once.whole.sum())} whole-clip)\n")
    print("| | once per clip | per trial and stretch |\n|---|---:|---:|")
    print(f"| wall (s) | {w1:.1f} | {w0:.1f} |\n| CPU (s) | {c1:.1f} | {c0:.1f} |")
    print(f"| whole-clip shift-consistent ±1 | {once.right()[once.whole].mean():.1%} | "
          f"{fresh.right()[fresh.whole].mean():.1%} |")
    print(f"\nwhole-clip readings moved: median {np.median(d):.3f} frame; {int((d > 1.5).sum())} of {len(d)} "
          "by more than 1.5 frames (another peak)")


if __name__ == "__main__":
    main()
