"""The training feature cache: one decode + face-track pass per clip, stored as .npz.

Each clip of the manifest is extracted once (face tracks with mouth crops, and
audio features); the main face track's per-frame arrays (``models.inputs``)
and the 40-bin mel go into ``<cache>/<sha256>.npz``. Training then never
decodes video. The cache is keyed by the clip's sha256 and ``CACHE_VERSION``.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError

#: Bump when what is stored changes; old entries are then rebuilt.
CACHE_VERSION = 1

DEFAULT_CACHE = Path(os.environ.get("AVSYNC_CACHE", Path.home() / ".cache" / "avsync-train")) / f"features-v{CACHE_VERSION}"


@dataclass(frozen=True)
class ClipRecord:
    path: str  # absolute
    split: str
    speaker: str
    sha256: str
    duration_s: float


def manifest_clips(data_dir: Path, splits: tuple[str, ...]) -> list[ClipRecord]:
    """Clips of ``data_dir/manifest.tsv`` in the given splits, in manifest order."""
    out = []
    with open(data_dir / "manifest.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["split"] in splits:
                out.append(ClipRecord(str((data_dir / r["path"]).resolve()), r["split"], r["speaker_id_guess"],
                                      r["sha256"], float(r["duration_s"] or 0)))
    return out


def clip_arrays(path: str, *, max_faces: int = 1, mesh_every: int = 1) -> dict:
    """Extract one clip and return what the cache stores for its main face track.

    ``mesh_every``: how often the face landmarks run (``extract``); > 1 only for the readings
    that calibrate a crop model run that way (``calibrate.calibration_bank``).
    """
    from avsync.extract import extract
    from avsync.models.inputs import track_arrays

    ext = extract(path, max_faces=max_faces, keep_crops=True, mesh_every=mesh_every)
    if not ext.tracks:
        raise AvsyncError(f"no face in {path}")
    best = max(range(len(ext.tracks)), key=lambda i: ext.tracks[i].n_found)
    arr = track_arrays(ext, best)
    return {
        **arr,
        "times": ext.times,
        "fps": np.float64(ext.fps),
        "audio_t0": np.float64(ext.audio_t0),
        "mel40": ext.mel40.astype(np.float16),
    }


def cache_dir(mesh_every: int = 1, base: Path = DEFAULT_CACHE) -> Path:
    """The cache folder for clips extracted with the landmarks on every ``mesh_every``-th frame."""
    return base if mesh_every <= 1 else base.with_name(f"{base.name}-mesh{int(mesh_every)}")


def cache_path(cache: Path, clip: ClipRecord) -> Path:
    return cache / f"{clip.sha256}.npz"


def build_cache(clips: list[ClipRecord], cache: Path = DEFAULT_CACHE, progress=None,
                mesh_every: int = 1) -> list[ClipRecord]:
    """Extract every clip not yet cached; returns the clips that are usable.

    ``mesh_every`` is passed to ``clip_arrays``: a cache holds one setting only, so give each
    setting its own folder (``cache_dir``).

    A clip that cannot be used (no face, unreadable) is recorded in
    ``skipped.json`` and left out, with its reason.
    """
    cache.mkdir(parents=True, exist_ok=True)
    skipped_file = cache / "skipped.json"
    skipped = json.loads(skipped_file.read_text()) if skipped_file.exists() else {}
    ok = []
    for n, clip in enumerate(clips):
        dst = cache_path(cache, clip)
        if clip.sha256 in skipped:
            pass
        elif dst.exists():
            ok.append(clip)
        else:
            try:
                arr = clip_arrays(clip.path, mesh_every=mesh_every)
                tmp = dst.with_suffix(".tmp.npz")
                np.savez(tmp, **arr)
                os.replace(tmp, dst)
                ok.append(clip)
            except AvsyncError as exc:
                skipped[clip.sha256] = f"{clip.path}: {exc}"
                skipped_file.write_text(json.dumps(skipped, indent=1))
        if progress is not None:
            progress(n + 1, len(clips))
    return ok


def load_clip(cache: Path, clip: ClipRecord) -> dict:
    with np.load(cache_path(cache, clip)) as z:
        return {k: z[k] for k in z.files}


if __name__ == "__main__":  # python -m avsync.train.cache DATA_DIR [SPLIT...]: fill the cache
    import sys

    data = Path(sys.argv[1])
    splits = tuple(sys.argv[2:]) or ("train",)
    todo = manifest_clips(data, splits)
    t0 = time.time()

    def _p(i, n):
        if i % 25 == 0 or i == n:
            print(f"{i}/{n} clips, {time.time() - t0:.0f} s", flush=True)

    got = build_cache(todo, progress=_p)
    print(f"cached {len(got)} of {len(todo)} clips in {DEFAULT_CACHE}")
