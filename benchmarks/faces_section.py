"""Section 6 of docs/BENCHMARKS.md: is a face found at all, and in how much of each clip?

Runs ``avsync.extract.extract(CLIP, max_faces=4)`` in process on every ``dev``
clip, every clip of the train split's ``clips/train`` folder (not ``grid_s1``,
not ``train_lrcar``), a fixed sample of 100 ``clips/train_lrcar`` clips (every
21st in path order), and every ``unverified`` and ``mouth_only`` clip. Per
clip it records whether any face track was found, and the share of analysed
frames in which the largest track (the one with the most found frames) was
found. Imported by run_benchmarks.py.
"""
from __future__ import annotations

import csv
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sources import SOURCE_NOTES, order_key, short_source, source_group

#: Every this-many-th (21st) ``clips/train_lrcar`` clip (in path order), up to ``LRCAR_SAMPLE`` clips.
LRCAR_STEP, LRCAR_SAMPLE = 21, 100
#: Faces tracked at most per clip (as ``avsync detect``'s default).
MAX_FACES = 4
#: The sets, in the page's order: (key, what the page calls it).
SETS = (("dev", "dev"), ("train", "train (`clips/train`)"), ("lrcar", "train_lrcar (sample)"),
        ("unverified", "unverified"), ("mouth_only", "mouth_only"))
#: ``--quick``: clips per set (dev: first 2 GRID and first 2 in-the-wild clips of at least 3 s, as section 1).
QUICK_N = {"train": 2, "lrcar": 2, "unverified": 1, "mouth_only": 1}
#: ``--quick`` takes clips no longer than this (s) outside dev.
QUICK_MAX_S = 10.0


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class FaceClip:
    rel: str
    set: str  # key of SETS
    group: str  # source group within the set
    duration_s: float
    frames: int = 0  # analysed frames
    tracks: int = 0  # face tracks with at least one found frame
    any_face: bool = False
    largest_share: float | None = None  # found frames of the largest track / analysed frames
    union_share: float | None = None  # frames with any face / analysed frames
    error: str | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.rel.removeprefix("clips/")


def select_clips(data: Path, quick: bool) -> list[FaceClip]:
    """The clips of every set, in manifest order (``train_lrcar``: the fixed sample, in path order)."""
    with open(data / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out: dict[str, list[FaceClip]] = {k: [] for k, _ in SETS}
    for r in rows:
        rel, split, dur = r["path"], r["split"], float(r["duration_s"] or 0)
        if split == "dev":
            out["dev"].append(FaceClip(rel, "dev", source_group(rel, r.get("faces", ""), r.get("notes", "")), dur))
        elif split == "train" and rel.startswith("clips/train/"):
            out["train"].append(FaceClip(rel, "train", short_source(rel), dur))
        elif split == "train" and rel.startswith("clips/train_lrcar/"):
            out["lrcar"].append(FaceClip(rel, "lrcar", "LRC-AR", dur))
        elif split == "unverified":
            out["unverified"].append(FaceClip(rel, "unverified", "unverified", dur))
        elif split == "mouth_only":
            out["mouth_only"].append(FaceClip(rel, "mouth_only", "lip crops (no full face)", dur))
    out["lrcar"] = sorted(out["lrcar"], key=lambda c: c.rel)[::LRCAR_STEP][:LRCAR_SAMPLE]
    if quick:
        grid = [c for c in out["dev"] if c.rel.startswith("clips/grid_speakers/")][:2]
        wild = [c for c in out["dev"] if not c.rel.startswith("clips/grid_speakers/") and c.duration_s >= 3.0][:2]
        out["dev"] = grid + wild
        for k, n in QUICK_N.items():
            out[k] = [c for c in out[k] if c.duration_s <= QUICK_MAX_S][:n]
    missing = [c.rel for cs in out.values() for c in cs if not (data / c.rel).is_file()]
    if missing:
        raise SystemExit(f"clips missing from {data}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [c for k, _ in SETS for c in out[k]]


def measure(clip: FaceClip, data: Path) -> FaceClip:
    """Extract the clip's face tracks and fill in what was found."""
    import avsync
    from avsync.extract import extract

    t0 = time.perf_counter()
    try:
        ext = extract(data / clip.rel, max_faces=MAX_FACES)
        n = ext.n_frames
        tracks = [t for t in ext.tracks if t.n_found > 0]
        clip.frames, clip.tracks, clip.any_face = n, len(tracks), bool(tracks)
        if n:
            clip.largest_share = max((t.n_found for t in tracks), default=0) / n
            union = np.zeros(n, bool)
            for t in tracks:
                union |= t.found(n)
            clip.union_share = float(union.mean())
    except avsync.AvsyncError as exc:
        clip.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    except Exception as exc:  # a bug in avsync: recorded and listed on the page, the run goes on
        clip.error = f"internal error {type(exc).__name__}: {' '.join(str(exc).split())}"
    clip.seconds = time.perf_counter() - t0
    return clip


def _summary(cs: list[FaceClip]) -> dict:
    measured = [c for c in cs if c.error is None]
    shares = [c.largest_share for c in measured if c.largest_share is not None]
    return dict(clips=len(cs), no_face=sum(not c.any_face for c in measured), errors=len(cs) - len(measured),
                mean_share=float(np.mean(shares)) if shares else None,
                min_share=float(np.min(shares)) if shares else None,
                mean_union=float(np.mean([c.union_share for c in measured if c.union_share is not None]))
                if shares else None,
                seconds=sum(c.seconds for c in cs), video_s=sum(c.duration_s for c in cs))


def _share(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _row(label: str, s: dict) -> str:
    return (f"| {label} | {s['clips']} | {s['no_face']} | {s['errors']} | {_share(s['mean_share'])} | "
            f"{_share(s['min_share'])} | {_share(s['mean_union'])} |")


def faces_section(data: Path, workdir: Path, date: str, machine: str, cmdline: str, quick: bool) -> dict:
    t_section = time.perf_counter()
    clips = select_clips(data, quick)
    _log(f"faces: {len(clips)} clips, avsync.extract.extract(max_faces={MAX_FACES})")
    for i, c in enumerate(clips):
        measure(c, data)
        got = (f"ERROR {c.error}" if c.error else
               f"{c.tracks} track(s), largest found in {_share(c.largest_share)} of {c.frames} frames")
        _log(f"  [{i + 1}/{len(clips)}] {c.name}: {got} ({c.seconds:.1f} s)")
    seconds = time.perf_counter() - t_section
    with open(workdir / "faces.tsv", "w") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["clip", "set", "group", "duration_s", "frames", "tracks", "any_face", "largest_share",
                    "union_share", "error", "seconds"])
        for c in clips:
            w.writerow([c.rel, c.set, c.group, c.duration_s, c.frames, c.tracks, int(c.any_face),
                        "" if c.largest_share is None else round(c.largest_share, 4),
                        "" if c.union_share is None else round(c.union_share, 4), c.error or "", round(c.seconds, 2)])

    by_set = {k: [c for c in clips if c.set == k] for k, _ in SETS}
    counts = {k: len(v) for k, v in by_set.items()}
    L = ["## 6. Face found, per source (\"Any face\")\n"]
    L.append(f"- **Command:** `{cmdline}` (section 6), which runs `avsync.extract.extract(CLIP, max_faces={MAX_FACES})` "
             "in process on each clip (the decoding and face tracking behind `avsync detect`); an `AvsyncError` "
             "(or any other exception) is recorded with its message and listed below.")
    L.append(f"- **Date:** {date}. **Machine:** {machine}.")
    L.append(f"- **Data split:** `../shared/data/manifest.tsv`: `dev` ({counts['dev']} clips: `clips/grid_speakers` "
             f"and `clips/dev`); `train`: the {counts['train']} clips of `clips/train` (not `grid_s1`), and "
             f"{counts['lrcar']} clips of `clips/train_lrcar` (every {LRCAR_STEP}st in path order, at most "
             f"{LRCAR_SAMPLE}: a fixed sample); `unverified` ({counts['unverified']}); `mouth_only` "
             f"({counts['mouth_only']})" + (" — QUICK subset" if quick else "") + ". Face finding needs no "
             "sync ground truth, so the train and unverified clips are usable here; nothing is tuned on these "
             "figures.")
    L.append("- **Figures:** *no face found*: no face track with a single found frame. *Face-found frame share*: "
             "found frames of the largest track (the one found in the most frames) over the analysed frames, "
             "averaged over the clips measured (a clip with no face counts 0; clips with an error are left out); "
             "*any face*: frames where at least one track was found. dev groups: "
             + "; ".join(f"**{g}** {n}" for g, n in SOURCE_NOTES.items())
             + ". train clips are grouped by the data set or repository in their file name.")
    L.append(f"- Section run time: {seconds / 60:.1f} min for {sum(c.duration_s for c in clips) / 60:.1f} min of "
             "video. Per-clip results: `$WORKDIR/faces.tsv`.\n")
    L.append("| set / source | clips | no face found | errors | mean face-found frame share (largest track) | "
             "lowest share | mean any-face frame share |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    raw_groups = {}
    for key, label in SETS:
        cs = by_set[key]
        if not cs:
            continue
        s = _summary(cs)
        raw_groups[key] = {"all": s}
        L.append(_row(f"**{label}, all**", s))
        groups = sorted({c.group for c in cs}, key=order_key)
        if len(groups) > 1:
            for g in groups:
                gs = _summary([c for c in cs if c.group == g])
                raw_groups[key][g] = gs
                L.append(_row(f"{label}: {g}", gs))
    L.append("")
    mo = _summary(by_set["mouth_only"]) if by_set["mouth_only"] else None
    if mo:
        L.append(f"`mouth_only` clips are lip-region crops with no full face, so *no face found* is the expected "
                 f"answer there ({mo['no_face']} of {mo['clips']} clips had none; a face reported on such a clip is "
                 "a partial face: nose and mouth).\n")
    no_face = [c for c in clips if c.error is None and not c.any_face and c.set != "mouth_only"]
    errors = [c for c in clips if c.error is not None]
    low = [c for c in clips if c.set == "dev" and c.error is None and c.any_face and (c.largest_share or 0) < 0.5]
    if no_face:
        L.append("**No face found** (outside `mouth_only`):\n")
        L += [f"- `{c.name}` ({c.set}, {c.group}; {c.frames} frames analysed)" for c in no_face]
        L.append("")
    if low:
        L.append("**dev clips whose largest face track covers less than half the frames:**\n")
        L += [f"- `{c.name}` ({c.group}): largest track {_share(c.largest_share)}, any face "
              f"{_share(c.union_share)}, {c.tracks} track(s)" for c in low]
        L.append("")
    if errors:
        L.append("**Errors:**\n")
        L += [f"- `{c.name}` ({c.set}): {c.error}" for c in errors]
        L.append("")

    dev = by_set["dev"]
    dev_found = sum(c.any_face for c in dev if c.error is None)
    missed = [c for c in dev if not c.any_face]
    status = ("**met**" if dev and not missed else "**not met** (nothing measured)" if not dev else
              f"**not met** (missed on {len(missed)} clip{'s' if len(missed) > 1 else ''}: "
              + ", ".join(f"`{c.name.rsplit('/', 1)[-1]}`" + (" (error)" if c.error else "") for c in missed) + ")")
    summary = [["Face found on every dev clip (every dev clip has a face), section 6"
                + (" — QUICK subset" if quick else ""), f"{len(dev)}/{len(dev)} dev clips",
                f"{dev_found}/{len(dev)}; mean face-found frame share {_share(_summary(dev)['mean_share'])}"
                if dev else "n/a", status]]
    raw = dict(seconds=seconds, groups=raw_groups, clips=[asdict(c) for c in clips])
    return dict(markdown="\n".join(L), summary=summary, raw=raw)
