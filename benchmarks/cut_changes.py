#!/usr/bin/env python
"""Sets the price of a change point at a shot cut (``sync.timeline.CUT_CHANGE_PARAMS``) on train-split joins.

    python benchmarks/cut_changes.py       # about 5 min on 2 cores; writes docs/CUT-CHANGES.md

An edit between two shots of a few seconds each leaves one segment reading on
a side of it, which the timeline's robust fit can always explain as one wrong
reading. The cut is evidence of its own that the offset may change there, so a
change point at a cut may leave one reading a side and is priced at fewer
parameters than one the fit has to place. How many, is set here, never on dev:

* **Edits** (the timeline must be ``piecewise``, the change at the cut):
  pairs of 8 s parts of different train speakers (25 fps), all scaled to
  512x512, the first in sync and the second shifted by k frames, written one
  after the other.
* **Drift over cuts**: every part once, one after the other, with the audio
  resampled by a known ppm: the cheaper change points at cuts must not turn a
  drift into a staircase (``linear`` expected, its rate within 20%; 0 ppm:
  ``constant``).
* **No edit** (``constant`` expected): two parts of one source at 0 and 0 (the
  same speaker, the same own offset), and parts of two different speakers at 0
  and 0 (whose own offsets may differ by a frame or two: a ``piecewise`` answer
  there is counted, and its jump shown, but it may be true).

Each file is read once with ``avsync.detect`` (default model); the timeline is
then refitted from its segments under each candidate price. Generated media
are cached in ``--workdir`` (``~/.cache/avsync-bench/cut_changes``), never in
the repository.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from run_benchmarks import DEFAULT_DATA, REPO, default_workdir, machine_info, machine_line

sys.path.insert(0, str(REPO / "tests"))
from mediagen import RATE, read_audio, read_video, write  # noqa: E402

OUT = REPO / "docs" / "CUT-CHANGES.md"
FPS = 25.0
PART_S = 8.0
SIDE = 512

T = "clips/train/"
RADIO2 = T + "OpenTalker__SadTalker__test__examples__source_image__RD_Radio2_000.mp4"
BOB = T + "OpenTalker__SadTalker__test__examples__source_image__WDA_BobMenendez_000.mp4"
MSD0 = T + "X-LANCE__MSDWILD__samples__demo1__speaking_mp4s__0.mp4"
MSD3 = T + "X-LANCE__MSDWILD__samples__demo1__speaking_mp4s__3.mp4"
CNN = T + "sstzal__DFRF__dataset__vids__cnn2_25fps.mp4"
SELFIE = T + "yiranran__Audio-driven-TalkingFace-HeadPose__Data__31.mp4"
VRT2 = T + "OpenTalker__video-retalking__2.mp4"
W040 = T + "filby89__spectre__samples__MEAD__W040_level_3_happy_029.mp4"

#: (clip, start s) parts; each is PART_S long (or the clip's length).
PARTS = {
    "radio2": (RADIO2, 0.0), "bob": (BOB, 0.0), "msd0": (MSD0, 0.0), "msd3": (MSD3, 6.0),
    "cnnA": (CNN, 0.0), "cnnB": (CNN, 20.0), "cnnC": (CNN, 40.0), "selfieA": (SELFIE, 0.0),
    "selfieB": (SELFIE, 12.0), "vrt2": (VRT2, 0.0), "w040": (W040, 0.0),
}
#: (first, second, k frames of the second); truth: piecewise.
EDITS = [("radio2", "bob", 7), ("bob", "cnnA", -4), ("cnnB", "selfieA", 11), ("selfieA", "radio2", -7),
         ("msd0", "cnnC", 4), ("vrt2", "bob", 7), ("w040", "msd3", -4), ("msd3", "selfieB", 4),
         ("cnnA", "w040", -7), ("selfieB", "vrt2", 11)]
#: One source, two parts at 0 and 0; truth: constant.
SAME = [("cnnA", "cnnB"), ("cnnB", "cnnC"), ("selfieA", "selfieB"), ("msd0", "msd3")]
#: Two speakers at 0 and 0 (their own offsets may differ).
OTHERS = [("radio2", "cnnA"), ("bob", "selfieA"), ("w040", "vrt2"), ("msd0", "bob"), ("cnnC", "radio2"),
          ("selfieB", "msd3")]
#: Drift over cuts: every part once, one after the other (about 85 s, a cut every 8 s), its audio resampled
#: by each ppm (it lags by ppm x 60 / 1000 ms per minute more); truth: linear (0 ppm: constant).
DRIFT_PARTS = ["radio2", "bob", "cnnA", "selfieA", "msd0", "w040", "cnnB", "vrt2", "selfieB", "msd3", "cnnC"]
DRIFT_PPM = (0, 1000, 2000, 4000)
#: Candidate prices of a change point at a cut (parameters); 2 is the price of one the fit places.
PRICES = (2.0, 1.9, 1.8, 1.75, 1.5, 1.0, 0.5)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_only(data: Path) -> None:
    with open(data / "manifest.tsv", newline="") as f:
        split = {r["path"]: r["split"] for r in csv.DictReader(f, delimiter="\t")}
    bad = [p for p, _ in PARTS.values() if split.get(p) != "train"]
    if bad:
        raise SystemExit(f"cut_changes.py: not train-split clips: {bad}")


def _square(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(rgb[y0 : y0 + s, x0 : x0 + s], (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def _part(data: Path, name: str, k: int, cache: dict):
    """The part's frames (512x512) and its audio shifted k frames late (k > 0: the audio lags)."""
    rel, start = PARTS[name]
    if rel not in cache:
        cache[rel] = (read_video(data / rel), read_audio(data / rel))
    frames, audio = cache[rel]
    t0 = frames[0][0]
    sel = [im for t, im in frames if start <= t - t0 < start + PART_S]
    n = len(sel)
    a0 = int(round((start - k / FPS) * RATE))
    a1 = a0 + int(round(n / FPS * RATE))
    out = np.zeros(a1 - a0, np.float32)
    lo, hi = max(a0, 0), min(a1, len(audio))
    if hi > lo:
        out[lo - a0 : hi - a0] = audio[lo:hi]
    return [_square(im) for im in sel], out


def build(data: Path, workdir: Path, name: str, parts: list[tuple[str, int]], cache: dict,
          ppm: int = 0) -> tuple[Path, float]:
    dst = workdir / f"{name}.mkv"
    starts = []
    frames, audio, n = [], [], 0
    for p, k in parts:
        v, a = _part(data, p, k, cache)
        starts.append(n / FPS)
        frames += [((n + i) / FPS, im) for i, im in enumerate(v)]
        audio.append(a)
        n += len(v)
    if not dst.exists():
        tmp = dst.with_name(f".{dst.stem}.part.mkv")
        a = np.concatenate(audio)
        if ppm:  # resampled longer, then cut to its length: it lags more and more
            import soxr

            a = soxr.resample(a, RATE, RATE * (1 + ppm * 1e-6)).astype(np.float32)[: len(a)]
        write(tmp, frames, FPS, a)
        os.replace(tmp, dst)
    return dst, starts[1]


def refit(segs: list[dict], price: float | None, frame_ms: float):
    """The timeline of ``segs`` with a change at a cut priced at ``price`` (None: cuts not used, as before)."""
    from avsync.sync.timeline import fit_timeline

    kw = {} if price is None else dict(shot=[g["shot"] for g in segs], cut_change_params=price)
    return fit_timeline([g["start_s"] for g in segs], [g["end_s"] for g in segs], [g["offset_ms"] for g in segs],
                        [g["confidence"] for g in segs], frame_ms, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    data = args.data.resolve()
    train_only(data)
    workdir = (args.workdir or default_workdir() / "cut_changes").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.time()

    import avsync
    from avsync.constants import frame_ms

    model = avsync.load_model()
    cases, cache = [], {}
    plan = ([("edit", f"{a}+{b}{k:+d}", [(a, 0), (b, k)], k) for a, b, k in EDITS]
            + [("same", f"{a}+{b}", [(a, 0), (b, 0)], 0) for a, b in SAME]
            + [("others", f"{a}+{b}", [(a, 0), (b, 0)], 0) for a, b in OTHERS]
            + [("drift", f"all parts, {ppm} ppm", [(p, 0) for p in DRIFT_PARTS], ppm) for ppm in DRIFT_PPM])
    for kind, name, parts, k in plan:
        path, cut_s = build(data, workdir, name.replace(", ", "-").replace(" ", ""), parts, cache,
                            ppm=k if kind == "drift" else 0)
        r = avsync.detect(path, model=model).to_dict()
        segs = [dict(g, shot=g.get("shot", 0)) for g in r["segments"] if g.get("offset_ms") is not None]
        cases.append(dict(kind=kind, name=name, k=k, cut_s=cut_s, segments=segs,
                          shots=r.get("shots", []), offset_ms=r["offset_ms"]))
        log(f"{name}: {len(segs)} readings, shots {len(r.get('shots', []))}, "
            f"timeline {r['timeline']['kind'] if r.get('timeline') else None}")
    (workdir / "results.json").write_text(json.dumps(cases, indent=1))

    fm = frame_ms(FPS)
    rows = []
    for price in (None, *PRICES):
        right = {"edit": 0, "same": 0, "others": 0, "drift": 0}
        cp_ok = jumps = 0
        jump_list = []
        for c in cases:
            tl = refit(c["segments"], price, fm)
            piecewise = tl is not None and tl.kind == "piecewise"
            if c["kind"] == "drift":
                truth = c["k"] * 60.0 / 1000.0
                right["drift"] += (tl.kind == "constant") if c["k"] == 0 else \
                    (tl.kind == "linear" and abs(tl.drift_ms_per_min - truth) <= 0.2 * truth)
            elif c["kind"] == "edit":
                right["edit"] += piecewise
                if piecewise and any(abs(cp - c["cut_s"]) <= 1.0 for cp in tl.change_points_s):
                    cp_ok += 1
                    lv = [p.offset_ms for p in tl.pieces]
                    jumps += abs((lv[-1] - lv[0]) / fm - c["k"]) <= 1.5
            else:
                right[c["kind"]] += not piecewise
                if piecewise and c["kind"] == "others":
                    lv = [p.offset_ms for p in tl.pieces]
                    jump_list.append(f"{c['name']} {(lv[-1] - lv[0]) / fm:+.1f}")
        rows.append((price, right, cp_ok, jumps, jump_list))

    n = {k: sum(c["kind"] == k for c in cases) for k in ("edit", "same", "others", "drift")}
    L = ["# The price of a change point at a shot cut (train-split joins)", "",
         "<!-- Generated by benchmarks/cut_changes.py; do not edit by hand. -->", "",
         f"- **Command:** `python benchmarks/cut_changes.py` (repository root), "
         f"{(time.time() - began) / 60:.1f} min.",
         f"- **Date:** {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. **Machine:** {machine_line(machine_info())}; code {machine_info()['commit']}.",
         "- **Data:** `train` split of `../shared/data` only (the script refuses other splits): parts of "
         f"{PART_S:g} s of {len(PARTS)} train clips scaled to {SIDE}x{SIDE}, 25 fps, joined two by two; "
         "each file read once with `avsync.detect` (default model) and its segments refitted under each price.",
         f"- **Cases:** {n['edit']} edits between two speakers (k frames at the cut: "
         f"{', '.join(f'{k:+d}' for *_, k in EDITS)}), {n['same']} joins of one source at 0 and 0, "
         f"{n['others']} joins of two speakers at 0 and 0, and the {len(DRIFT_PARTS)} parts one after the other "
         f"(a cut every {PART_S:g} s) with their audio resampled by {', '.join(map(str, DRIFT_PPM))} ppm "
         "(right: `constant` at 0 ppm, else `linear` with its rate within 20%).", "",
         "| price of a change at a cut (parameters) | edits found (`piecewise`) | change at the cut (±1 s) | "
         "jump within ±1 frame of k | one source: `constant` | two speakers at 0/0: `constant` | "
         "two speakers at 0/0 read piecewise (jump, frames) | drift over cuts right |",
         "|---|---|---|---|---|---|---|---|"]
    for price, right, cp_ok, jumps, jl in rows:
        label = "cuts not used (before)" if price is None else f"{price:g}"
        L.append(f"| {label} | {right['edit']}/{n['edit']} | {cp_ok}/{n['edit']} | {jumps}/{n['edit']} | "
                 f"{right['same']}/{n['same']} | {right['others']}/{n['others']} | {'; '.join(jl) or '—'} | "
                 f"{right['drift']}/{n['drift']} |")
    from avsync.sync.timeline import CUT_CHANGE_PARAMS

    L += ["", f"**Shipped:** `CUT_CHANGE_PARAMS = {CUT_CHANGE_PARAMS:g}`. The rule: the price with the most "
          "edits, one-source joins and drift cases right, the largest (most conservative) of those tied. A join "
          "of two speakers read as two levels may be true: each source can sit a frame or two off on its own.",
          ""]
    tmp = args.output.with_suffix(".md.part")
    tmp.write_text("\n".join(L))
    os.replace(tmp, args.output)
    log(f"wrote {args.output}")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
