#!/usr/bin/env python
"""Throughput of ``avsync batch``: files per minute and seconds of video per second.

    python benchmarks/batch_throughput.py                    # dev clips up to 8.1 s: 1 and 2 local workers, Ray with 2
    python benchmarks/batch_throughput.py --max-seconds 30 --skip-ray

Each configuration runs the real command as a subprocess from scratch
(``--restart``), so start-up, model loading (once per worker) and writing the
report are counted; the wall clock is measured around the whole command. The
clips are the ``dev`` split's clips no longer than ``--max-seconds`` (in
manifest order); the seconds of video are the durations the report gives for
the files that succeeded.

The section is written to ``docs/BENCHMARKS-batch.md`` and spliced into
``docs/BENCHMARKS.md`` between its markers (``run_benchmarks.py`` includes the
same file when it regenerates the page, so the 20-minute model benchmark need
not be rerun for this section, nor this one for that).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_benchmarks import DEFAULT_DATA, REPO, machine_info, machine_line, splice_section

SECTION = REPO / "docs" / "BENCHMARKS-batch.md"
PAGE = REPO / "docs" / "BENCHMARKS.md"
BEGIN = "<!-- batch_throughput.py: begin -->"
END = "<!-- batch_throughput.py: end -->"
#: (label, engine, workers) of each configuration.
CONFIGS = (("local, 1 worker", "local", 1), ("local, 2 workers", "local", 2), ("Ray (local), 2 workers", "ray", 2))


def dev_clips(data: Path, max_s: float) -> list[Path]:
    with open(data / "manifest.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [data / r["path"] for r in rows if r["split"] == "dev" and float(r["duration_s"]) <= max_s]


def run_config(clips: list[Path], engine: str, workers: int, tmp: Path) -> dict:
    lst = tmp / "clips.txt"
    lst.write_text("\n".join(map(str, clips)) + "\n")
    report = tmp / f"{engine}-{workers}.csv"
    cmd = [sys.executable, "-m", "avsync", "batch", str(lst), "--report", str(report), "--workers", str(workers),
           "--engine", engine, "--restart"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    with open(report, newline="") as fh:
        rows = list(csv.DictReader(fh))
    video_s = sum(float(r["duration_s"]) for r in rows if r["duration_s"])
    return {"files": len(rows), "failed": sum(bool(r["error"]) for r in rows), "video_s": video_s, "wall_s": wall}


def section(results: list[tuple[str, dict]], m: dict, cmdline: str, n_clips: int, max_s: float) -> str:
    L = ["## 7. Batch throughput (`avsync batch`)\n",
         f"- **Command:** `{cmdline}` (repository root); each row is one run of `avsync batch LIST --report R "
         "--workers N [--engine ray] --restart` as a subprocess, timed from start to exit (start-up, model loading "
         "and the report included).",
         f"- **Date:** {m['date']}. **Machine:** {machine_line(m)}; load average (1/5/15 min) at the start: "
         f"{' / '.join(f'{x:.2f}' for x in m['load_start'])}. **Code:** avsync {m['avsync']}, commit {m['commit']}.",
         f"- **Data:** the {n_clips} `dev` clips of at most {max_s:g} s (`manifest.tsv` order), default model.",
         "- **One run per row.** Other work on the machine (see the load average) slows every row alike; "
         "with a load average well above the core count, treat the rows as provisional.\n",
         "| configuration | files | failed | video (s) | wall (s) | files/min | video s per s |",
         "|---|---|---|---|---|---|---|"]
    for label, r in results:
        L.append(f"| {label} | {r['files']} | {r['failed']} | {r['video_s']:.1f} | {r['wall_s']:.1f} | "
                 f"{r['files'] / r['wall_s'] * 60:.1f} | {r['video_s'] / r['wall_s']:.2f} |")
    L.append("\nEach worker uses one compute thread, so workers are the parallelism; Ray's row includes starting "
             "a local Ray for the run (a few seconds).\n")
    return "\n".join(L)


def splice(page: Path, text: str) -> None:
    """Put ``text`` between this script's markers of ``page``."""
    splice_section(page, text, BEGIN, END)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-seconds", type=float, default=8.1, help="longest dev clip taken (s)")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args(argv)
    cmdline = "python benchmarks/batch_throughput.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    m = machine_info()
    clips = dev_clips(args.data, args.max_seconds)
    results = []
    with tempfile.TemporaryDirectory(prefix="avsync-batch-bench-") as tmp:
        for label, engine, workers in CONFIGS:
            if engine == "ray" and args.skip_ray:
                continue
            print(f"{label} ...", file=sys.stderr, flush=True)
            results.append((label, run_config(clips, engine, workers, Path(tmp))))
            print(f"  {results[-1][1]}", file=sys.stderr, flush=True)
    text = section(results, m, cmdline, len(clips), args.max_seconds)
    SECTION.write_text(text + "\n")
    splice(PAGE, text)
    print(f"wrote {SECTION.relative_to(REPO)} and its section of {PAGE.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
