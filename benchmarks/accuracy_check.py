#!/usr/bin/env python
"""Does a speed change move accuracy? ``avsync eval`` on the dev split, one model, run by run: docs/ACCURACY-CHECK.md.

    python benchmarks/accuracy_check.py                     # run the variants whose reports are not cached
    python benchmarks/accuracy_check.py --before FILE.json  # the 'before' report of an earlier run

Each variant is ``python -m avsync eval --split dev --model MODEL`` in a subprocess
with some environment settings, its report cached in ``$WORKDIR/accuracy-check-KEY.json``
(``--rerun`` runs them again). The variants of issue 11:

- before: torch, the face mesh on every frame (``AVSYNC_RUNTIME=torch AVSYNC_MESH_EVERY=1``; the code
  paths of the change are bit-identical to the old ones there), or ``--before`` a report of the old code;
- onnx: the model on onnxruntime, the mesh on every frame;
- onnx + mesh every 2: also the face mesh on every other frame (crops placed by interpolated landmarks).

The page puts the clip-level table (section 1 of docs/BENCHMARKS.md reads the same protocol on trial
files), the LRS2 context windows and the strict protocol side by side, with each figure's change
from 'before'; the rule is that none may move by more than 1 point.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()

VARIANTS = (
    ("before", "before: torch, mesh on every frame", {"AVSYNC_RUNTIME": "torch", "AVSYNC_MESH_EVERY": "1"}),
    ("onnx", "this checkout: onnxruntime, the mesh on every frame", {"AVSYNC_MESH_EVERY": "1"}),
    ("onnx-mesh2", "landmarks on every 2nd frame, the shipped confidence (tried, not shipped)",
     {"AVSYNC_MESH_EVERY": "2"}),
)
#: Largest allowed change of an accuracy figure (points).
MAX_MOVE = 1.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_eval(model: str, env: dict, report: Path, data: Path) -> None:
    cmd = [sys.executable, "-m", "avsync", "eval", "--split", "dev", "--manifest", str(data / "manifest.tsv"),
           "--model", model, "--report", str(report)]
    full = dict(os.environ, PYTHONPATH=str(REPO / "src"), **env)
    t = time.perf_counter()
    subprocess.run(cmd, env=full, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    log(f"  {report.name}: {(time.perf_counter() - t) / 60:.1f} min")


def figures(rep: dict) -> list[tuple[str, float | None]]:
    P = rep["protocols"]
    out = []
    c = P.get("clip", {})
    out += [("clip: within ±1 frame", c.get("acc_pm1")), ("clip: exact (±0.5 frame)", c.get("acc_exact")),
            ("clip: shift-consistent ±1", c.get("acc_consistent")),
            ("clip: marked reliable", (c.get("reliability") or {}).get("reliable_share")),
            ("clip: reliable and right (±1)", (c.get("reliability") or {}).get("reliable_acc_pm1"))]
    e = P.get("clip_extended", {})
    out.append(("clip ±20/±25: within ±1 frame", e.get("acc_pm1")))
    for r in P.get("lrs2", {}).get("contexts", []):
        out.append((f"LRS2 windows, {r['frames']} frames", r.get("accuracy")))
    for r in P.get("strict", {}).get("lengths", []):
        out.append((f"strict, {r['frames']} frames: ±1 (mean of reps)", r.get("pm1_mean")))
    for r in P.get("singing", {}).get("contexts", []):
        out.append((f"singing windows (±5), {r['frames']} frames", r.get("accuracy")))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pm-wild")
    p.add_argument("--before", type=Path, default=None, help="a report of the old code to use as 'before'")
    p.add_argument("--variants", default=",".join(k for k, _, _ in VARIANTS),
                   help="which to show (default: all): " + ", ".join(k for k, _, _ in VARIANTS))
    p.add_argument("--report", action="append", default=[], metavar="LABEL=FILE",
                   help="an earlier report shown as a column after 'before' (repeatable), e.g. the code just "
                        "before the change under test")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL=FILE",
                   help="a report shown as a column after the variants (repeatable), e.g. a setting tried and "
                        "not shipped")
    p.add_argument("--rerun", action="store_true", help="run the evals again even when their reports are cached")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                   / "avsync-bench")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "ACCURACY-CHECK.md")
    args = p.parse_args(argv)
    chosen = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    reports = {}
    for key, label, env in chosen:
        if key == "before" and args.before:
            reports[key] = (f"before: `{args.before.name}`", json.loads(args.before.read_text()), {})
            for i, item in enumerate(args.report):
                label, _, file = item.partition("=")
                reports[f"report{i}"] = (f"{label}: `{Path(file).name}`", json.loads(Path(file).read_text()), {})
            continue
        path = args.workdir / f"accuracy-check-{args.model}-{key}.json"
        if args.rerun or not path.exists():
            log(f"eval {args.model}, {label}")
            run_eval(args.model, env, path, args.data)
        reports[key] = (label, json.loads(path.read_text()), env)
    for i, item in enumerate(args.extra):
        label, _, file = item.partition("=")
        reports[f"extra{i}"] = (f"{label}: `{Path(file).name}`", json.loads(Path(file).read_text()), {})
    cmdline = shlex.join(["python", "benchmarks/accuracy_check.py", *(sys.argv[1:] if argv is None else argv)])
    keys = list(reports)
    base = reports[keys[0]][1]
    L = ["# Accuracy before and after the speed changes (`avsync eval`, dev split)\n",
         "<!-- Generated by benchmarks/accuracy_check.py; do not edit by hand. -->\n",
         f"- **Command:** `{cmdline}`. **Date:** {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
         f"- **Model:** `{args.model}`. **Split:** `dev` ({len(base.get('clips', []))} clips), the protocols of "
         "`avsync eval` (docs/BENCHMARKS.md section 4). Rule: no figure moves by more than "
         f"{MAX_MOVE:g} point from the first column.",
         "- **Runs:** " + "; ".join(f"{lab} (`{rep.get('command', '')}`"
                                    + (", " + " ".join(f"{k}={v}" for k, v in env.items()) if env else "")
                                    + f", {rep.get('date', '')}, {rep.get('seconds', 0) / 60:.1f} min)"
                                    for lab, rep, env in reports.values()) + ".\n"]
    head = "| figure | " + " | ".join(reports[k][0] for k in keys) + " |"
    L += [head, "|---|" + "---:|" * len(keys)]
    worst = {k: 0.0 for k in keys[1:]}
    drop = {k: 0.0 for k in keys[1:]}  # the largest loss alone
    step = {k: 0.0 for k in keys[1:]}  # against the column just before (the change that column adds)
    for name, b in figures(base):
        cells = ["n/a" if b is None else f"{100 * b:.1f}%"]
        for k in keys[1:]:
            v = dict(figures(reports[k][1])).get(name)
            if v is None or b is None:
                cells.append("n/a")
                continue
            d = 100 * (v - b)
            if not name.startswith("clip: marked reliable"):  # a share of trials, not an accuracy
                worst[k] = max(worst[k], abs(d))
                drop[k] = max(drop[k], -d)
                prev = dict(figures(reports[keys[keys.index(k) - 1]][1])).get(name)
                if prev is not None:
                    step[k] = max(step[k], abs(100 * (v - prev)))
            cells.append(f"{100 * v:.1f}% ({d:+.1f})")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append("")
    for k in keys[1:]:
        ok = worst[k] <= MAX_MOVE
        L.append(f"- **{reports[k][0]}**: largest move of an accuracy figure {worst[k]:.1f} point(s) from the "
                 f"first column (largest drop {drop[k]:.1f}): "
                 + ("**within** the 1-point rule" if ok else "**over** the 1-point rule")
                 + (f"; from the column before it (the change this column adds): {step[k]:.1f} point(s), "
                    + ("**within**." if step[k] <= MAX_MOVE else "**over**.") if keys.index(k) > 1 else "."))
    L.append("")
    args.output.write_text("\n".join(L))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
