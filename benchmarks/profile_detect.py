#!/usr/bin/env python
"""Where ``avsync detect`` spends its time: docs/PROFILE.md.

    python benchmarks/profile_detect.py                  # this checkout
    python benchmarks/profile_detect.py --skip-pyspy     # without the sampling profile

Three views, each measured here (2 cores, shared or not: the page says the load):

1. Start-up: each heavy import alone in a fresh interpreter (median of 3), and
   ``python -X importtime`` of the CLI module.
2. Stages, one at a time in this process on the first 200 frames of a 720p dev
   clip: decoding, RGB conversion (whole frame / face regions), face detector,
   face mesh, mouth crop, the default model's visual encoder (onnxruntime and
   torch) per frame.
3. The whole of ``avsync detect`` on the steady-state input: ``py-spy record
   --threads`` (samples of each thread's Python stack, waiting excluded), the
   top functions per thread; and ``cProfile`` of the main thread.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
HD_CLIP = "clips/dev/facebookresearch__VisualVoice__noisy_restaurant.mp4"
#: Leaf functions that mean a thread is waiting, not working (left out of the py-spy view).
WAITING = ("Condition.wait", "Queue.get", "Queue.put", "Event.wait", "Thread.join", "_worker (concurrent",
           "Future.result", "_wait_for_tstate_lock", "wait (threading")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def import_costs() -> list[tuple[str, float]]:
    code = {
        "python -c pass (interpreter start)": "pass",
        "typer + rich": "import typer, rich.console",
        "avsync (the package)": "import avsync",
        "avsync.cli.main": "import avsync.cli.main",
        "av (PyAV)": "import av",
        "cv2": "import cv2",
        "avsync.face.tracker (cv2) + `import mediapipe` (its drawing utils load matplotlib)":
            "import avsync.face.tracker; import mediapipe",
        "avsync.face.tracker (cv2) + `import_mediapipe()` (drawing utils left unloaded)":
            "from avsync.face.tracker import import_mediapipe; import_mediapipe()",
        "onnxruntime": "import onnxruntime",
        "ai_edge_litert (the landmark network's runtime)": "from ai_edge_litert.interpreter import Interpreter",
        "torch": "import torch",
    }
    out = []
    for label, c in code.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", c], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        out.append((label, statistics.median(times)))
        log(f"import {label}: {out[-1][1]:.2f} s")
    return out


def stage_costs(clip: Path, n: int = 200) -> list[tuple[str, float, str]]:
    import cv2
    import numpy as np

    from avsync.face.tracker import FaceTracker, Picture, frame_to_rgb, mouth_crop, mouth_crop_grey
    from avsync.media.decode import iter_video_frames

    rows = []

    def per_frame(label, fn, count, note=""):
        t = time.process_time()
        fn()
        rows.append((label, (time.process_time() - t) / count * 1000, note))
        log(f"stage {label}: {rows[-1][1]:.2f} ms")

    frames = []

    def dec():
        for _, _, f in iter_video_frames(clip):
            frames.append(f)
            if len(frames) == n:
                break

    per_frame("decode (PyAV, thread_type AUTO), CPU of all threads", dec, n, "H.264 720p")
    rgbs = []
    per_frame("whole frame to RGB (`frame_to_rgb`)", lambda: rgbs.extend(frame_to_rgb(f) for f in frames), n)
    tr = FaceTracker(max_faces=1, keep_crops=False, workers=1)
    for f in frames[:30]:
        tr.update(Picture.of(f))
    tr.flush()
    act = tr._active[0]
    box, key, angle = act.box, act.last[1], act.angle
    from avsync.face.landmark_model import ROI_SCALE, roi_matrix

    m = roi_matrix(box[0], box[1], ROI_SCALE * box[2], angle)  # the region of FaceTracker._mesh
    per_frame("face-region RGB + landmark region (`Picture.warp`, from YUV; before `Picture.sample`)",
              lambda: [Picture.of(f).warp(m, (192, 192), cv2.INTER_LINEAR, cv2.BORDER_CONSTANT) for f in frames], n)
    per_frame("landmark region resampled from the YUV planes (`Picture.sample`, what the tracker runs)",
              lambda: [Picture.of(f).sample(m, (192, 192)) for f in frames], n)
    per_frame("whole-frame RGB + landmark region (`frame_to_rgb` then `warpAffine`)",
              lambda: [cv2.warpAffine(frame_to_rgb(f), m, (192, 192), flags=cv2.INTER_LINEAR) for f in frames], n)
    per_frame("face landmarks on one face (the network on LiteRT, region given)",
              lambda: [tr._mesh(box, angle, False, Picture.of(r)) for r in rgbs], n)
    sc = 256 / (1.8 * box[2])  # before: MediaPipe's FaceMesh graph on a 256-pixel crop around the face
    m256 = np.array([[sc, 0.0, 128 - sc * box[0]], [0.0, sc, 128 - sc * box[1]]])
    crops256 = [cv2.warpAffine(r, m256, (256, 256), flags=cv2.INTER_LINEAR) for r in rgbs]
    from avsync.face.tracker import import_mediapipe

    with import_mediapipe().solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as fm:
        per_frame("face mesh on one face (before: MediaPipe's FaceMesh graph, 256-pixel crop given)",
                  lambda: [fm.process(c) for c in crops256], n)
    per_frame("mouth crop: RGB region, warp, then grey (`mouth_crop` on a `Picture`; before `mouth_crop_grey`)",
              lambda: [cv2.cvtColor(mouth_crop(Picture.of(f), key), cv2.COLOR_RGB2GRAY) for f in frames], n)
    per_frame("grey mouth crop from the luma plane (`mouth_crop_grey`, what the tracker runs)",
              lambda: [mouth_crop_grey(Picture.of(f), key) for f in frames], n)
    k = 40
    per_frame("face detector, one call (runs every 25 frames while tracking)",
              lambda: [tr._run_detector(tr._detector, r) for r in rgbs[:k]], k)
    tr.close()
    try:
        import avsync

        est = avsync.load_model()
        crops = np.zeros((1, 512, 48, 96), np.uint8)
        est._embed_visual(crops)
        per_frame(f"visual encoder of `{est.name}` ({type(est).__name__})", lambda: est._embed_visual(crops), 512,
                  "512-frame chunk")
        from avsync.models.scoring import VISUAL_CHUNK_FRAMES

        c = VISUAL_CHUNK_FRAMES
        per_frame(f"visual encoder of `{est.name}` ({type(est).__name__}, two intra-op threads)",
                  lambda: [est._embed_visual(crops[:, a : a + c + 4]) for a in range(0, 512, c)], 512,
                  f"{c}-frame chunks (+4 frames of context), as `detect` ran it before 2026-12-03")
        stream = est._embed_visual_stream
        stream(crops[:, : c + 4])
        per_frame(f"visual encoder of `{est.name}` ({type(est).__name__}, one thread: `_embed_visual_stream`)",
                  lambda: [stream(crops[:, a : a + c + 4]) for a in range(0, 512, c)], 512,
                  f"{c}-frame chunks (+4 frames of context), as `detect` runs it (`models.stream.CropEmbedder`)")
        os.environ["AVSYNC_RUNTIME"] = "torch"
        est_t = avsync.load_model(est.name)
        est_t._embed_visual(crops)
        per_frame(f"visual encoder of `{est.name}` ({type(est_t).__name__}, one thread)",
                  lambda: est_t._embed_visual(crops), 512, "512-frame chunk")
        os.environ.pop("AVSYNC_RUNTIME")
    except Exception as exc:  # a model that cannot load is reported, not fatal
        rows.append(("visual encoder", float("nan"), f"failed: {exc}"))
    return rows


def pyspy_view(steady: Path, src: Path) -> tuple[str, dict]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return "py-spy not found", {}
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw.txt"
        cmd = [exe, "record", "-r", "50", "--threads", "-f", "raw", "-o", str(raw), "--", sys.executable, "-m",
               "avsync", "detect", str(steady), "--json"]
        env = dict(os.environ, PYTHONPATH=str(src))
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        per_thread: dict[str, Counter] = {}
        for line in raw.read_text().splitlines():
            stack, n = line.rsplit(" ", 1)
            frames = stack.split(";")
            leaf = frames[-1]
            if any(w in f for f in frames[-3:] for w in WAITING):
                continue
            name = frames[0].split(": ", 1)[-1] if ": " in frames[0] else "main (start-up)"
            for prefix in ("avsync-mesh", "Thread-"):
                if name.startswith(prefix):
                    name = prefix + ("… (face mesh pool)" if prefix == "avsync-mesh" else "… (reader threads)")
            per_thread.setdefault(name, Counter())[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1]] += int(n)
    return " ".join(shlex.quote(c) for c in cmd[:9]) + " -- python -m avsync detect STEADY --json", per_thread


def cprofile_view(steady: Path, top: int = 25) -> str:
    import avsync

    pr = cProfile.Profile()
    pr.enable()
    avsync.detect(steady)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start - 1 :]).replace(str(REPO) + "/", "").replace(sys.prefix + "/", "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                   / "avsync-bench")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "PROFILE.md")
    p.add_argument("--skip-pyspy", action="store_true")
    p.add_argument("--baseline", default=None, metavar="REF",
                   help="also sample a git commit's detect (section 3, before), from a temporary worktree")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    from run_benchmarks import STEADY_MIN_S, build_concat

    steady = args.workdir / "long" / f"restaurant-x-1280x720-25fps-veryfast-{STEADY_MIN_S}s.mp4"
    build_concat(steady, [args.data / HD_CLIP], width=1280, height=720, fps=25, rate=48000, min_seconds=STEADY_MIN_S,
                 preset="veryfast")
    load0 = os.getloadavg()
    imports = import_costs()
    stages = stage_costs(args.data / HD_CLIP)
    spies = []
    if not args.skip_pyspy:
        if args.baseline:
            with tempfile.TemporaryDirectory() as d:
                subprocess.run(["git", "worktree", "add", "--detach", "--force", f"{d}/wt", args.baseline], cwd=REPO,
                               check=True, capture_output=True)
                try:
                    log(f"py-spy, before ({args.baseline})")
                    spies.append((f"before: commit `{args.baseline}`", *pyspy_view(steady, Path(d) / "wt" / "src")))
                finally:
                    subprocess.run(["git", "worktree", "remove", "--force", f"{d}/wt"], cwd=REPO, capture_output=True)
        log("py-spy, after")
        spies.append(("after: this checkout", *pyspy_view(steady, REPO / "src")))
    log("cProfile")
    cprof = cprofile_view(steady)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    cmdline = shlex.join(["python", "benchmarks/profile_detect.py", *(sys.argv[1:] if argv is None else argv)])
    L = ["# Where `avsync detect` spends its time\n",
         "<!-- Generated by benchmarks/profile_detect.py; do not edit by hand. -->\n",
         f"- **Command:** `{cmdline}`; {(time.perf_counter() - t0) / 60:.1f} min.",
         f"- **Date:** {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. **Code:** commit `{commit}`. "
         f"**Machine:** {len(os.sched_getaffinity(0))} cores; {platform.platform()}; Python "
         f"{platform.python_version()}. Load average (1 min) at the start {load0[0]:.2f}, at the end "
         f"{os.getloadavg()[0]:.2f} (other work on the machine inflates every figure).",
         "- Speed figures, before and after: [SPEED.md](SPEED.md) (`benchmarks/speed.py`).\n",
         "## 1. Start-up: each import alone in a fresh interpreter (wall, median of 3)\n",
         "| import | seconds |", "|---|---:|"]
    L += [f"| {label} | {s:.2f} |" for label, s in imports]
    L += ["", f"## 2. Stages, one at a time (CPU ms per frame; first 200 frames of `{Path(HD_CLIP).name}`, "
          "1280x720)\n", "| stage | CPU ms / frame | note |", "|---|---:|---|"]
    L += [f"| {label} | {ms:.2f} | {note} |" for label, ms, note in stages]
    L += ["", "At 25 fps a realtime factor of 20 leaves 2 ms of wall time per frame, and 0.1 CPU second per "
          "second of video leaves 4 ms of CPU per frame for everything.\n"]
    for title, spy_cmd, spy in spies:
        L += [f"## 3. The whole run, sampled ({title}): py-spy on `{steady.name}`\n",
              f"`{spy_cmd}`; samples at 50 Hz of each thread's Python stack, waiting (queues, locks, futures) "
              "left out; native code (FFmpeg, MediaPipe, onnxruntime, torch) counts under the Python line that "
              "called it.\n"]
        for name, c in sorted(spy.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(c.values())
            L += [f"**{name}**: {total} samples ({total / 50:.1f} s)\n", "| function | samples | share |",
                  "|---|---:|---:|"]
            L += [f"| `{fn}` | {n} | {n / total:.0%} |" for fn, n in c.most_common(8)]
            L.append("")
    L += [f"## 4. cProfile of the main thread: `avsync.detect` on `{steady.name}` (in process)\n",
          "The main thread reads frames back from the reader thread and the mesh pool, cuts mouth crops, then "
          "runs the model; time spent in other threads shows here as waiting.\n", "```", cprof, "```", ""]
    args.output.write_text("\n".join(L))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
