#!/usr/bin/env python
"""Would a model's confidence calibration hold on speakers it was not fitted on? docs/CALIBRATION.md.

    python benchmarks/calibration_loso.py                      # pm-wild, landmarks on every frame and every 2nd
    python benchmarks/calibration_loso.py --model pm-small --mesh-every 1

The confidence of a learned model is fitted (``avsync.train.calibrate``) on the readings of a handful
of held-out ``train`` speakers, never on ``dev``. This page asks, on those same speakers only, how
well that procedure carries to a speaker it has not seen: leave one speaker out, fit on the others,
read the one left out, for each speaker in turn. It reports, at the ``reliable`` mark (confidence
>= 0.9), the share of readings marked and the share of those right, for all readings and for
whole-clip readings (what ``detect`` gives for a file), beside the shipped calibration read on the
same readings (which was fitted on all of them, or on the every-frame readings of an older tracker).

The clips are extracted anew with this checkout's tracker into ``$WORKDIR/calibration-cache-meshN``
(the training cache may hold extractions of an older tracker). Nothing here reads ``dev``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
#: The mark above which an answer is called reliable (``sync.confidence``).
RELIABLE = 0.9
#: L2 penalties of the logistic fit compared (the calibration's own is the first).
L2S = (1e-2, 1e-1, 1.0)


def at_mark(p: np.ndarray, right: np.ndarray) -> tuple[float, str]:
    """(share marked reliable, 'right/marked (share)') at the reliable mark."""
    sel = p >= RELIABLE
    n = int(sel.sum())
    return float(sel.mean()) if len(p) else 0.0, (f"{int(right[sel].sum())}/{n} ({right[sel].mean():.0%})" if n
                                                   else "0/0")


def rows_for(model: str, mesh_every: int, data: Path, workdir: Path, second: str = "") -> tuple[list[str], dict]:
    os.environ["AVSYNC_MESH_EVERY"] = str(mesh_every)
    from avsync.api import load_model
    from avsync.sync.confidence import fit_calibration
    from avsync.train.cache import build_cache, manifest_clips
    from avsync.train.calibrate import CALIBRATION_SPEAKERS, consensus_offsets, read_bank
    from avsync.train.loop import load_bank

    est = load_model(model)
    summary = getattr(est, "training_summary", None) or {}
    speakers = set(summary.get("val_speakers") or CALIBRATION_SPEAKERS)
    cache = workdir / f"calibration-cache-mesh{mesh_every}"
    recs = build_cache([r for r in manifest_clips(data, ("train",)) if r.speaker in speakers], cache,
                       mesh_every=mesh_every)
    bank = load_bank(recs, cache)
    r = read_bank(est, bank, second=load_model(second) if second else None)
    own = consensus_offsets(r, bank, name=model)
    x, whole = r.features, r.whole
    spk = np.array([r.speakers[c] for c in r.clip])
    rules = {"referees agree": r.right({c: v["offset"] for c, v in own.items()}),
             "model alone (≤ 3 frames)": r.right()}
    right = rules["referees agree"]
    info = {"readings": len(right), "right": float(right.mean()), "whole": int(whole.sum()),
            "speakers": len(set(spk)), "clips": len(recs)}
    out = []
    per_speaker = []
    for rule, right in rules.items():
        for l2 in L2S:
            p = np.zeros(len(right))
            for s in np.unique(spk):
                m = spk == s
                p[m] = fit_calibration(x[~m], right[~m], l2=l2).probability(x[m])
                if l2 == L2S[0] and rule == "referees agree":
                    mw = m & whole
                    med = f"{np.median(r.error[mw]):+.1f}" if mw.any() else "n/a"
                    offs = sorted({round(own[int(c)]["offset"], 1) for c in np.unique(r.clip[m])})
                    per_speaker.append(f"| {mesh_every} | {s} | {int(m.sum())} | {right[m].mean():.0%} | {med} | "
                                       f"{', '.join(f'{o:+.1f}' for o in offs)} | {at_mark(p[m], right[m])[1]} |")
            sa, ra = at_mark(p, right)
            sw, rw = at_mark(p[whole], right[whole])
            out.append(f"| {mesh_every} | {rule} | left-out speaker, L2 {l2:g} | {sa:.1%} | {ra} | {sw:.1%} | {rw} |")
    if r.support is not None:  # what a second opinion would add: its support of the answer as a fourth feature
        right = rules["referees agree"]
        xs = np.c_[x, r.support]
        p = np.zeros(len(right))
        for s in np.unique(spk):
            m = spk == s
            p[m] = fit_calibration(xs[~m], right[~m], l2=L2S[0]).probability(xs[m])
        sa, ra = at_mark(p, right)
        sw, rw = at_mark(p[whole], right[whole])
        out.append(f"| {mesh_every} | referees agree | left-out speaker, L2 {L2S[0]:g}, + `{second}`'s support of the "
                   f"answer (not shipped) | {sa:.1%} | {ra} | {sw:.1%} | {rw} |")
    if est.calibration is not None:
        right = rules["referees agree"]
        p = est.calibration.probability(x)
        sa, ra = at_mark(p, right)
        sw, rw = at_mark(p[whole], right[whole])
        fitted = (est.calibration.fitted_on or {}).get("mesh_every", 1)
        out.append(f"| {mesh_every} | referees agree | shipped calibration (fitted with landmarks every {fitted}) | "
                   f"{sa:.1%} | {ra} | {sw:.1%} | {rw} |")
    info["per_speaker"] = per_speaker
    return out, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pm-wild")
    ap.add_argument("--mesh-every", default="1,2", help="landmark rates to read with (comma-separated)")
    ap.add_argument("--second", default="landmark-wild",
                    help="also measure a second model's support of each answer as a fourth calibration feature "
                         "(sync.confidence.support_z; '' for none)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                    / "avsync-bench")
    ap.add_argument("--output", type=Path, default=REPO / "docs" / "CALIBRATION.md")
    args = ap.parse_args(argv)
    from avsync.train.calibrate import REFEREES

    t0 = time.time()
    rows, infos = [], {}
    for m in [int(v) for v in args.mesh_every.split(",")]:
        # one process per rate: the model and its settings load once per process
        code = ("import sys, json; sys.path.insert(0, %r); import calibration_loso as c; from pathlib import Path; "
                "rows, info = c.rows_for(%r, %d, Path(%r), Path(%r), %r); print(json.dumps([rows, info]))"
                % (str(Path(__file__).parent), args.model, m, str(args.data), str(args.workdir), args.second))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        import json

        got, info = json.loads(proc.stdout.strip().splitlines()[-1])
        rows += got
        infos[m] = info
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    cmd = shlex.join(["python", "benchmarks/calibration_loso.py", *(sys.argv[1:] if argv is None else argv)])
    info = next(iter(infos.values()))
    L = ["# Does the confidence calibration carry to unseen speakers? (held-out `train` speakers only)\n",
         "<!-- Generated by benchmarks/calibration_loso.py; do not edit by hand. -->\n",
         f"- **Command:** `{cmd}`; {(time.time() - t0) / 60:.1f} min. **Date:** "
         f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}. **Code:** commit `{commit}`. "
         f"**Machine:** {os.cpu_count()} cores; {platform.platform()}.",
         f"- **Model:** `{args.model}`. **Data:** its calibration speakers ({info['speakers']} held-out `train` "
         f"speakers, {info['clips']} clips), read as `avsync.train.calibrate` reads them (trial offsets and "
         "stretch lengths of the calibration); no `dev` clip. Readings per landmark rate: "
         + "; ".join(f"every {m}: {i['readings']} ({i['whole']} whole clips), {i['right']:.0%} right"
                     for m, i in infos.items()) + ".",
         f"- **Reading:** *left-out speaker* fits the calibration (logistic, `sync.confidence.fit_calibration`) on "
         f"all speakers but one and reads that one, for each in turn. Right = within ±1.5 frames of the clip's "
         f"own offset. *Own offset from*: **referees agree** (the calibration's rule, `train.calibrate."
         f"consensus_offsets`: the median whole-clip reading of the model and the shipped referees "
         f"{', '.join(f'`{m}`' for m in REFEREES)} not trained on the clip, where most of them agree within "
         f"±1.5 frames, else 0) or **model alone** (the rule before it: the model's own median whole-clip error, "
         f"trusted up to 3 frames). Reliable = confidence ≥ {RELIABLE:g}. The row *+ support* measures what a "
         f"second opinion would add (not shipped): the calibration with a fourth feature, how well `{args.second}`'s "
         "curve of the same stretch backs the answer (`sync.confidence.support_z`).\n",
         "| landmarks every N frames | own offset from | calibration | share marked reliable | right among them | "
         "whole-clip share marked | whole-clip right among them |",
         "|---|---|---|---:|---:|---:|---:|", *rows, "",
         f"Per left-out speaker (referees agree, L2 {L2S[0]:g}, the calibration's own). *Whole-clip error* is the "
         "median signed error of the model's whole-clip readings in frames; *own offset* is what the referees "
         "agreed on for the speaker's clips (0: no agreement, so the readings must be right in absolute terms).\n",
         "| landmarks every N frames | speaker | readings | right | whole-clip error (frames) | own offset (frames) | "
         "right among those marked reliable |", "|---|---|---:|---:|---:|---|---:|",
         *[row for i in infos.values() for row in i["per_speaker"]], ""]
    args.output.write_text("\n".join(L) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
