#!/usr/bin/env python
"""Speed of ``avsync detect`` as a user meets it, before and after a change: docs/SPEED.md.

    python benchmarks/speed.py --baseline b53ec81          # this checkout against a commit, median of 3
    python benchmarks/speed.py --baseline b53ec81 --quick  # smoke run: 1 run each, short steady input
    python benchmarks/speed.py --skip-long --skip-batch    # the fast rows only

Every figure is a whole process (``python -m avsync ...`` as a subprocess, the
venv's Python), median of ``--reps`` runs: wall time, CPU time (user + system
of the child, from ``os.wait4``) and the child's own peak RSS. The baseline
is the same commands run from a temporary ``git worktree`` of ``--baseline``
(its ``src`` first on ``PYTHONPATH``), interleaved with this checkout's runs so
that both see the same machine load. ``ffmpeg -i FILE -f null -`` (the
static binary of ``imageio_ffmpeg``) is timed in the same run as the decode
floor.

Rows: start-up (``--help`` and a missing file), a 5 s dev clip, a 9 s 720p dev
clip, the steady state on a >= 3 min 720p25 talking head (the 9 s clip
concatenated, as section 2 of docs/BENCHMARKS.md builds it), peak RSS on the
1-hour dev concatenation of section 3 (``--skip-long`` leaves it out) and
a batch of every dev clip through the API in one process (``--skip-batch``).

The page is written to ``--output`` (docs/SPEED.md) and copied into
docs/BENCHMARKS.md between ``<!-- speed.py begin -->`` and ``<!-- speed.py
end -->`` (``run_benchmarks.py`` keeps that block when it rewrites the page),
so the 20-minute model benchmark need not run again for it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
BEGIN, END = "<!-- speed.py begin -->", "<!-- speed.py end -->"

SHORT_CLIP = "clips/dev/yerfor__Real3DPortrait__May_5s.mp4"
HD_CLIP = "clips/dev/facebookresearch__VisualVoice__noisy_restaurant.mp4"

# Targets of issue 11 (stated on the page; checked against the "after" column).
TARGET_STARTUP_S = 0.5
TARGET_SHORT_S = 1.2
TARGET_STEADY_RTF = 20.0
TARGET_STEADY_FFMPEG_RATIO = 2.5
TARGET_CPU_PER_S = 0.1
TARGET_LONG_RSS = 1.0e9
TARGET_BATCH_RTF = 15.0

# The launcher that runs a command and reports the child's own rusage (tiny: -I -S, no imports to speak of).
_WRAPPER = (
    "import json, os, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)\n"
    "_, st, ru = os.wait4(p.pid, 0)\n"
    "wall = time.perf_counter() - t\n"
    "json.dump(dict(wall=wall, cpu=ru.ru_utime + ru.ru_stime, maxrss_kib=ru.ru_maxrss,\n"
    "               rc=os.waitstatus_to_exitcode(st)), open(sys.argv[1], 'w'))\n"
)

_BATCH = """
import json, sys, time
t0 = time.perf_counter()
import avsync
from avsync.errors import AvsyncError
done, failed, seconds = 0, 0, 0.0
for path, dur in json.load(open(sys.argv[1])):
    try:
        avsync.detect(path)
        done += 1
    except AvsyncError:
        failed += 1
    seconds += dur
print(json.dumps(dict(done=done, failed=failed, media_s=seconds, wall=time.perf_counter() - t0)))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    wall: float
    cpu: float
    maxrss: int
    rc: int


@dataclass
class Row:
    key: str
    label: str
    duration_s: float | None = None
    runs: dict = field(default_factory=dict)  # side ("before"/"after"/"ffmpeg") -> [Run]

    def median(self, side: str) -> Run | None:
        rs = [r for r in self.runs.get(side, []) if r.rc in (0, 3)]  # 3: input not found (the start-up row)
        if not rs or len(rs) < len(self.runs.get(side, [])):
            return None
        walls = sorted(rs, key=lambda r: r.wall)
        return walls[len(walls) // 2]


def measure(cmd: list[str], env: dict, cwd: Path) -> Run:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        subprocess.run([sys.executable, "-I", "-S", "-c", _WRAPPER, f.name, *cmd], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        d = json.loads(Path(f.name).read_text() or "{}")
    return Run(d["wall"], d["cpu"], d["maxrss_kib"] * 1024, d["rc"])


def side_env(src: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.pop("AVSYNC_NATIVE_LOGS", None)
    env.pop("AVSYNC_RUNTIME", None)
    return env


def ffmpeg_cmd(path: Path) -> list[str]:
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(path), "-f", "null", "-"]


def duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.duration) / av.time_base


def make_baseline(ref: str, where: Path) -> Path:
    """A detached worktree of ``ref`` (its src goes first on PYTHONPATH for the baseline runs)."""
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), ref], cwd=REPO, check=True,
                   capture_output=True)
    return where


def git_short(ref: str = "HEAD") -> str:
    r = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True)
    return r.stdout.strip() or ref


# --------------------------------------------------------------------------- measurements


def run_rows(rows: list[tuple[Row, list[str], Path | None]], sides: dict[str, Path], reps: int) -> None:
    """Each row: reps rounds, each round one run per side (and ffmpeg), interleaved."""
    for row, args, media in rows:
        log(f"{row.label}")
        for i in range(reps):
            for side, src in sides.items():
                r = measure([sys.executable, "-m", "avsync", *args], side_env(src), REPO)
                row.runs.setdefault(side, []).append(r)
                log(f"  {side} run {i + 1}/{reps}: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU, "
                    f"{r.maxrss / 1e6:.0f} MB, exit {r.rc}")
            if media is not None:
                r = measure(ffmpeg_cmd(media), dict(os.environ), REPO)
                row.runs.setdefault("ffmpeg", []).append(r)
                log(f"  ffmpeg run {i + 1}/{reps}: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU")


def batch_row(data: Path, sides: dict[str, Path], reps: int) -> Row:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_benchmarks import dev_clips

    clips = [(str(c.path), c.duration_s) for c in dev_clips(data)]
    row = Row("batch", f"batch: the {len(clips)} dev clips through `avsync.detect` in one process",
              sum(d for _, d in clips))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(clips, f)
    log(row.label)
    try:
        for i in range(reps):
            for side, src in sides.items():
                with tempfile.NamedTemporaryFile("r", suffix=".json") as fo:
                    subprocess.run([sys.executable, "-I", "-S", "-c", _WRAPPER, fo.name, sys.executable, "-c",
                                    _BATCH, f.name], env=side_env(src), cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, check=False)
                    d = json.loads(Path(fo.name).read_text())
                r = Run(d["wall"], d["cpu"], d["maxrss_kib"] * 1024, d["rc"])
                row.runs.setdefault(side, []).append(r)
                log(f"  {side} run {i + 1}/{reps}: {r.wall:.1f} s wall, {r.cpu:.1f} s CPU, exit {r.rc}")
    finally:
        os.unlink(f.name)
    return row


# --------------------------------------------------------------------------- page


def _fmt_runs(rs: list[Run]) -> str:
    return ", ".join(f"{r.wall:.2f}" for r in rs)


def _status(ok: bool | None, miss: str) -> str:
    if ok is None:
        return "n/a"
    return "**met**" if ok else f"**not met** ({miss})"


def render(rows: dict[str, Row], m: dict, cmdline: str, baseline: str | None, reps: int, quick: bool,
           seconds: float, steady_s: float) -> str:
    L = ["## 8. Speed before and after (`benchmarks/speed.py`)\n"]
    if quick:
        L.append("> **QUICK SMOKE RUN (`--quick`)**: one run each and a short steady-state input; these figures only "
                 "show that the script works.\n")
    L.append(f"- **Command:** `{cmdline}` (repository root); {seconds / 60:.1f} min.")
    L.append(f"- **Date:** {m['date']}. **Machine:** {m['machine']}. Load average (1 min) at the start "
             f"{m['load_start'][0]:.2f}, at the end {m['load_end'][0]:.2f}: other work on the machine slows every "
             "figure here, before and after alike (their runs are interleaved).")
    before = f"commit `{baseline}` (`git worktree` of `--baseline`)" if baseline else "not measured (no `--baseline`)"
    L.append(f"- **Before:** {before}. **After:** commit `{m['commit']}`.")
    L.append(f"- **Each figure:** a whole process, `python -m avsync ARGS` (the venv's Python, `PYTHONPATH` = that "
             f"side's `src`), median of {reps} run(s) by wall time; CPU = the child's user + system seconds "
             "(`os.wait4`), RSS = its own peak. ffmpeg = `ffmpeg -nostdin -i FILE -f null -` "
             "(`imageio_ffmpeg`'s static binary), the decode floor, in the same rounds.")
    L.append("- **Data:** `dev` split of `../shared/data`; the steady-state input is "
             f"`{Path(HD_CLIP).name}` concatenated to ≥ {steady_s:.0f} s at 1280x720, 25 fps (libx264 veryfast, "
             "AAC), built and cached in `$WORKDIR/long` as section 2 of this page builds it.\n")

    def cell(row: Row, side: str, what: str = "wall") -> str:
        r = row.median(side) if row else None
        if r is None:
            runs = row.runs.get(side) if row else None
            return f"failed (exit {runs[-1].rc})" if runs else "—"
        return f"{getattr(r, what):.2f}"

    L.append("### Targets (issue 11)\n")
    L.append("| figure | before | after | target | status |")
    L.append("|---|---:|---:|---|---|")

    def add(label, b, a, target, ok, miss):
        L.append(f"| {label} | {b} | {a} | {target} | {_status(ok, miss)} |")

    for key in ("help", "missing"):
        row = rows.get(key)
        if row:
            a = row.median("after")
            add(f"start-up: {row.label} (wall s)", cell(row, "before"), cell(row, "after"), f"≤ {TARGET_STARTUP_S} s",
                None if a is None else a.wall <= TARGET_STARTUP_S,
                "" if a is None else f"{a.wall:.2f} s, {a.wall - TARGET_STARTUP_S:.2f} s over")
    row = rows.get("short")
    if row:
        a = row.median("after")
        add(f"5 s clip end to end (wall s, `{Path(SHORT_CLIP).name}`)", cell(row, "before"), cell(row, "after"),
            f"≤ {TARGET_SHORT_S} s", None if a is None else a.wall <= TARGET_SHORT_S,
            "" if a is None else f"{a.wall:.2f} s, {a.wall - TARGET_SHORT_S:.2f} s over")
    row = rows.get("steady")
    if row:
        f = row.median("ffmpeg")

        def rtf(side):
            r = row.median(side)
            return None if r is None else row.duration_s / r.wall

        def ratio(side):
            r = row.median(side)
            return None if r is None or f is None else r.wall / f.wall

        def cps(side):
            r = row.median(side)
            return None if r is None else r.cpu / row.duration_s

        def s(x, spec=".1f", suffix=""):
            return "—" if x is None else f"{x:{spec}}{suffix}"

        ra, rr, rc = rtf("after"), ratio("after"), cps("after")
        add(f"steady state, {row.duration_s:.0f} s 720p25: realtime factor", s(rtf("before"), ".1f", "x"),
            s(ra, ".1f", "x"), f"≥ {TARGET_STEADY_RTF:g}x", None if ra is None else ra >= TARGET_STEADY_RTF,
            "" if ra is None else f"{ra / TARGET_STEADY_RTF:.0%} of it")
        add("steady state: avsync / `ffmpeg -f null` wall time", s(ratio("before"), ".1f", "x"), s(rr, ".1f", "x"),
            f"≤ {TARGET_STEADY_FFMPEG_RATIO:g}x", None if rr is None else rr <= TARGET_STEADY_FFMPEG_RATIO,
            "" if rr is None else f"{rr / TARGET_STEADY_FFMPEG_RATIO:.1f} times it")
        add("steady state: CPU seconds per second of video", s(cps("before"), ".2f"), s(rc, ".2f"),
            f"≤ {TARGET_CPU_PER_S:g}", None if rc is None else rc <= TARGET_CPU_PER_S,
            "" if rc is None else f"{rc / TARGET_CPU_PER_S:.1f} times it")
    row = rows.get("long")
    if row:
        a = row.median("after")
        add(f"peak RSS, {row.duration_s / 60:.0f} min input (MB)",
            "—" if row.median("before") is None else f"{row.median('before').maxrss / 1e6:.0f}",
            "—" if a is None else f"{a.maxrss / 1e6:.0f}", f"≤ {TARGET_LONG_RSS / 1e6:.0f} MB (1 h input)",
            None if a is None else a.maxrss <= TARGET_LONG_RSS, "" if a is None else f"{a.maxrss / 1e6:.0f} MB")
    row = rows.get("batch")
    if row:
        def brtf(side):
            r = row.median(side)
            return None if r is None else row.duration_s / r.wall

        a = brtf("after")
        add(f"batch, {row.label.split(': ', 1)[1]} ({row.duration_s:.0f} s of video): aggregate realtime factor",
            "—" if brtf("before") is None else f"{brtf('before'):.1f}x", "—" if a is None else f"{a:.1f}x",
            f"≥ {TARGET_BATCH_RTF:g}x", None if a is None else a >= TARGET_BATCH_RTF,
            "" if a is None else f"{a / TARGET_BATCH_RTF:.0%} of it")
    L.append("")

    L.append("### Every run\n")
    L.append("| input | duration (s) | side | wall, all runs (s) | median wall (s) | CPU (s) | peak RSS (MB) |")
    L.append("|---|---:|---|---|---:|---:|---:|")
    for row in rows.values():
        for side in ("before", "after", "ffmpeg"):
            rs = row.runs.get(side)
            if not rs:
                continue
            med = row.median(side)
            dur = "—" if row.duration_s is None else f"{row.duration_s:.1f}"
            L.append(f"| {row.label} | {dur} | {side} | {_fmt_runs(rs)} | "
                     f"{'failed' if med is None else f'{med.wall:.2f}'} | "
                     f"{'—' if med is None else f'{med.cpu:.2f}'} | {'—' if med is None else f'{med.maxrss / 1e6:.0f}'} |")
    L.append("")
    return "\n".join(L)


def splice(page: Path, block: str) -> None:
    """Put ``block`` between this script's markers in ``page``."""
    from run_benchmarks import splice_section  # benchmarks/ is on the path when this runs as a script

    splice_section(page, block, BEGIN, END)


def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    return dict(date=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                machine=f"{n} cores, {cpu}; {platform.platform()}; Python {platform.python_version()}",
                commit=git_short() + (" + uncommitted changes in src/" if dirty else ""), load_start=os.getloadavg())


def default_workdir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avsync-bench"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default=None, metavar="REF", help="git commit to measure as 'before'")
    p.add_argument("--reps", type=int, default=3, help="runs per figure (median; default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run each, 30 s steady input, no long/batch")
    p.add_argument("--skip-long", action="store_true", help="leave out the peak-RSS row (1-hour input)")
    p.add_argument("--skip-batch", action="store_true", help="leave out the batch row")
    p.add_argument("--long-after-only", action="store_true",
                   help="run the 1-hour input on this checkout only (the old code needs ~15 min and >2 GB for it)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workdir", type=Path, default=default_workdir())
    p.add_argument("--output", type=Path, default=REPO / "docs" / "SPEED.md")
    p.add_argument("--page", type=Path, default=REPO / "docs" / "BENCHMARKS.md",
                   help="benchmark page that gets a copy of the section (between its markers)")
    args = p.parse_args(argv)
    t_all = time.perf_counter()
    reps = 1 if args.quick else args.reps
    cmdline = shlex.join(["python", "benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)])
    m = machine()
    from run_benchmarks import LONG_FPS, LONG_H, LONG_MIN_S, LONG_SR, LONG_W, STEADY_MIN_S, build_concat, dev_clips

    sides = {"after": REPO / "src"}
    tmp = None
    if args.baseline:
        tmp = Path(tempfile.mkdtemp(prefix="avsync-baseline-"))
        sides = {"before": make_baseline(args.baseline, tmp / "wt") / "src", **sides}
    try:
        data = args.data
        steady_s = 30 if args.quick else STEADY_MIN_S
        steady = args.workdir / "long" / f"restaurant-x-1280x720-25fps-veryfast-{steady_s}s.mp4"
        build_concat(steady, [data / HD_CLIP], width=1280, height=720, fps=25, rate=48000, min_seconds=steady_s,
                     preset="veryfast")
        missing = "/nonexistent/missing.mp4"
        plan = [
            (Row("help", "`avsync --help`"), ["--help"], None),
            (Row("missing", "`avsync detect missing.mp4`"), ["detect", missing, "--json"], None),
            (Row("short", f"`{Path(SHORT_CLIP).name}`", duration(data / SHORT_CLIP)),
             ["detect", str(data / SHORT_CLIP), "--json"], data / SHORT_CLIP),
            (Row("hd", f"`{Path(HD_CLIP).name}` (720p)", duration(data / HD_CLIP)),
             ["detect", str(data / HD_CLIP), "--json"], data / HD_CLIP),
            (Row("steady", f"steady state: `{steady.name}`", duration(steady)),
             ["detect", str(steady), "--json"], steady),
        ]
        if not (args.skip_long or args.quick):
            long_in = args.workdir / "long" / (f"dev-concat-{len(dev_clips(data))}clips-{LONG_W}x{LONG_H}-"
                                               f"{LONG_FPS}fps-{LONG_SR}hz-ultrafast-{LONG_MIN_S}s.mp4")
            build_concat(long_in, [c.path for c in dev_clips(data)], width=LONG_W, height=LONG_H, fps=LONG_FPS,
                         rate=LONG_SR, min_seconds=LONG_MIN_S, preset="ultrafast")
            plan.append((Row("long", f"peak RSS: `{long_in.name}`", duration(long_in)),
                         ["detect", str(long_in), "--json"], None))
        for side, src in sides.items():  # unmeasured: compiles the side's .pyc files and warms the file cache
            log(f"warm-up run ({side})")
            measure([sys.executable, "-m", "avsync", "detect", str(data / SHORT_CLIP), "--json"], side_env(src), REPO)
        run_rows([(r, a, md) for r, a, md in plan if r.key != "long"], sides, reps)
        run_rows([(r, a, md) for r, a, md in plan if r.key == "long"],
                 {"after": sides["after"]} if args.long_after_only else sides, 1)
        rows = {r.key: r for r, _, _ in plan}
        if not (args.skip_batch or args.quick):
            rows["batch"] = batch_row(data, sides, 1)
    finally:
        if tmp is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "wt")], cwd=REPO, capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    m["load_end"] = os.getloadavg()
    md = render(rows, m, cmdline, git_short(args.baseline) if args.baseline else None, reps, args.quick,
                time.perf_counter() - t_all, steady_s)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# avsync speed\n\n<!-- Generated by benchmarks/speed.py; do not edit by hand. -->\n\n"
                           + md + "\nProfiles of where the time goes: [PROFILE.md](PROFILE.md) "
                           "(`benchmarks/profile_detect.py`).\n")
    splice(args.page, md)
    raw = {k: {"duration_s": r.duration_s, "runs": {s: [vars(x) for x in v] for s, v in r.runs.items()}}
           for k, r in rows.items()}
    (args.workdir / "speed.json").write_text(json.dumps(dict(machine=m, command=cmdline, rows=raw), indent=1,
                                                         default=str))
    log(f"wrote {args.output} and its section of {args.page} ({(time.perf_counter() - t_all) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
