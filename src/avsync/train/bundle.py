"""Training features small enough to carry to a lent GPU machine, and the cache rebuilt from them there.

    python -m avsync.train.bundle pack .bundle [--data ../shared/data] [--max-mib 40] [--grid-clips 250]
    python -m avsync.train.bundle unpack .bundle           # on the GPU machine: fills the feature cache
    avsync train configs/paper/pm-paper.toml --data .bundle   # then trains as on any machine

A call to the GPU machine carries the working tree and at most 64 MiB in all (the shipped weights
take 20 of it), and ``../shared/data`` never travels; the machine has no PyAV or MediaPipe to decode
clips with. So the clips are extracted here once (``train.cache``) and their cached features packed:

- ``crops.mkv``: the mouth crops of every clip, one after another, as a grey 96 x 48 H.264 video
  (libx264, full range, the CRF chosen to fit ``--max-mib``). The crops are the only lossy part;
  ``bundle.json`` records how far the decoded crops are from the cached ones, and the sha256 of the
  decoded frames, which any conforming H.264 decoder reproduces (OpenCV's, where PyAV is missing).
- ``arrays.npz.xz``: per frame ``found``, ``times`` and the lip points (to 1/4096, as differences
  from the frame before); per clip its frame and mel counts, ``fps`` and ``audio_t0``; the 40-bin
  log-mel in steps of 1/8 (``pack_arrays``). ``bundle.json`` records the largest rounding of each.
  The vertical flow is not carried: ``unpack`` computes it from the decoded crops, as the cache does.
- ``manifest.tsv``: the manifest rows of the packed clips, so ``avsync train --data BUNDLE`` reads
  the same speakers and splits (the clip files are never opened: every clip is already cached).
- ``bundle.json``: what was packed, from which cache, and what was left out (GRID s1 beyond
  ``--grid-clips``, in a spread over its manifest order; the single speaker's 1,000 clips would
  otherwise be half the bundle).

``unpack`` writes each clip to ``<cache>/<sha256>.npz`` with the keys and dtypes ``train.cache``
writes (``AVSYNC_CACHE`` moves the cache, as for training).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from avsync.constants import MOUTH_CROP_HW
from avsync.train.cache import DEFAULT_CACHE, ClipRecord, cache_path, load_clip, manifest_clips

#: Bump when the bundle's layout changes.
BUNDLE_VERSION = 1
#: What one call to the GPU machine carries in all, and what the repository's tracked files take of it.
CARRY_LIMIT_MIB = 64
#: Default size of a bundle (MiB): the carry limit less the working tree (about 21 MiB, 20 of it weights).
DEFAULT_MAX_MIB = 40
#: GRID s1 clips packed by default: enough for its weight in speaker-balanced sampling and for
#: ``train.zero`` (which reads 200 of them).
DEFAULT_GRID_CLIPS = 250
#: CRFs tried, best first, until the bundle fits.
CRFS = (16, 18, 20, 22, 24, 26, 28)
GRID_SPEAKER = "grid_s1"
FILES = ("crops.mkv", "arrays.npz.xz", "manifest.tsv", "bundle.json")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def choose_clips(recs: list[ClipRecord], grid_clips: int) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """(packed, left out): every clip, except GRID s1 beyond ``grid_clips`` (an even spread over its
    manifest order, so the held-out last clips of training stay the last ones packed)."""
    grid = [r for r in recs if r.speaker == GRID_SPEAKER]
    keep = set()
    if grid_clips > 0 and grid:
        idx = np.unique(np.round(np.linspace(0, len(grid) - 1, min(grid_clips, len(grid)))).astype(int))
        keep = {grid[i].sha256 for i in idx}
    packed = [r for r in recs if r.speaker != GRID_SPEAKER or r.sha256 in keep]
    return packed, [r for r in recs if r not in packed]


def encode_crops(clips: list[dict], path: Path, crf: int) -> None:
    """The clips' crops one after another as a grey, full-range H.264 video (PyAV, at pack time only)."""
    import av

    h, w = MOUTH_CROP_HW
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "gray"
        s.options = {"crf": str(crf), "preset": "slow"}
        s.color_range = 2  # full range: grey levels pass through unscaled
        for im in (c for a in clips for c in a["crops"]):
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="gray")
            fr.color_range = 2
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    os.replace(tmp, path)


def decode_crops(path: Path) -> np.ndarray:
    """(N, 48, 96) uint8: the video's frames, by PyAV where it is installed, else by OpenCV."""
    h, w = MOUTH_CROP_HW
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    else:
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f[:, :, 1])  # grey decoded to BGR: the three channels are equal
        cap.release()
    out = np.stack(frames) if frames else np.zeros((0, h, w), np.uint8)
    if out.shape[1:] != (h, w):
        raise ValueError(f"{path.name}: frames are {out.shape[1:]}, not {(h, w)}")
    return out


def _digest(crops: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crops).tobytes()).hexdigest()


#: Lip points (normalised: about ±0.35) are kept to this step, as float16 keeps them near ±0.3, and
#: stored as differences from the frame before (``pack_arrays``).
LIPS_STEP = 1.0 / 4096
#: Log-mel values are kept to this step (0.54 dB of power; the rounding is 0.16 dB RMS), or coarser where
#: a clip's range needs more than 256 of them.
MEL_STEP = 1.0 / 8


def pack_arrays(clips: list[dict]) -> dict:
    """The per-frame and per-clip arrays of cached clips, quantised as described above."""
    lips = np.concatenate([a["lips"] for a in clips]).astype(np.float32)
    lips_ok = np.isfinite(lips)
    q = np.round(np.where(lips_ok, lips, 0.0) / LIPS_STEP)
    if np.abs(q).max(initial=0) > 32000:
        raise ValueError("lip points beyond the bundle's range (normalised points are within ±1)")
    q = q.astype(np.int16)
    mel_lo, mel_step, mel_q = [], [], []
    for a in clips:
        m = a["mel40"].astype(np.float32)
        lo = float(np.floor(m.min() * 8) / 8) if m.size else 0.0
        step = max(MEL_STEP, (float(m.max()) - lo) / 255.0) if m.size else MEL_STEP
        mel_lo.append(lo), mel_step.append(step)
        mel_q.append(np.clip(np.round((m - lo) / step), 0, 255).astype(np.uint8))
    return {
        "n_frames": np.array([len(a["times"]) for a in clips]), "n_mel": np.array([len(a["mel40"]) for a in clips]),
        "fps": np.array([float(a["fps"]) for a in clips]), "audio_t0": np.array([float(a["audio_t0"]) for a in clips]),
        "found": np.concatenate([a["found"] for a in clips]),
        "times": np.concatenate([a["times"] for a in clips]).astype(np.float64),
        "lips_ok": np.packbits(lips_ok.reshape(-1)), "lips_shape": np.array(lips.shape),
        "lips_delta": np.diff(q, axis=0, prepend=np.zeros((1,) + q.shape[1:], np.int16)).astype(np.int16),
        "mel_lo": np.array(mel_lo), "mel_step": np.array(mel_step), "mel_q": np.concatenate(mel_q),
    }


def unpack_lips(arr: dict) -> np.ndarray:
    """Every frame's packed lip points, float32, NaN where the cache had none."""
    shape = tuple(int(x) for x in arr["lips_shape"])
    ok = np.unpackbits(arr["lips_ok"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    pts = np.cumsum(arr["lips_delta"].astype(np.int32), axis=0).astype(np.float32) * np.float32(LIPS_STEP)
    return np.where(ok, pts, np.float32(np.nan)).astype(np.float32)


def unpack_mel(arr: dict, i: int, a: int, b: int) -> np.ndarray:
    """Clip ``i``'s log-mel (rows [a, b) of the packed mel), float16 as the cache holds it."""
    return (arr["mel_q"][a:b].astype(np.float32) * np.float32(arr["mel_step"][i]) + np.float32(arr["mel_lo"][i])
            ).astype(np.float16)


def write_arrays(path: Path, arrays: dict) -> None:
    """``arrays`` as an .npz compressed whole with xz (LZMA; a third smaller than the .npz's own deflate)."""
    import io
    import lzma

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, path)


def read_arrays(path: Path) -> dict:
    import io
    import lzma

    with np.load(io.BytesIO(lzma.decompress(path.read_bytes()))) as z:
        return {k: z[k] for k in z.files}


def pack(out: Path, data_dir: Path, cache: Path = DEFAULT_CACHE, max_mib: float = DEFAULT_MAX_MIB,
         grid_clips: int = DEFAULT_GRID_CLIPS, splits: tuple[str, ...] = ("train",),
         recs: list[ClipRecord] | None = None) -> dict:
    """Pack the cached clips of ``splits`` (or ``recs``) into ``out``; returns ``bundle.json``'s content.

    Clips not in the cache are left out and named (fill the cache first: ``python -m avsync.train.cache``)."""
    recs = manifest_clips(data_dir, splits) if recs is None else recs
    chosen, dropped = choose_clips(recs, grid_clips)
    cached = [r for r in chosen if cache_path(cache, r).exists()]
    missing = [r for r in chosen if r not in cached]
    if not cached:
        raise ValueError(f"none of the {len(chosen)} clips is in the cache {cache}: fill it first "
                         "(python -m avsync.train.cache DATA)")
    clips = [load_clip(cache, r) for r in cached]
    out.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "manifest.tsv", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields, rows = reader.fieldnames, {r["sha256"]: r for r in reader}
    tmp = out / "manifest.tsv.part"
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields, delimiter="\t", lineterminator="\n")
        wr.writeheader()
        for r in cached:
            wr.writerow(rows[r.sha256])
    os.replace(tmp, out / "manifest.tsv")
    arrays = pack_arrays(clips)
    n = arrays["n_frames"]
    write_arrays(out / "arrays.npz.xz", arrays)
    # bundle.json, written last, holds about 230 bytes a clip
    fixed = (out / "arrays.npz.xz").stat().st_size + (out / "manifest.tsv").stat().st_size + 230 * len(cached)
    cached_crops = np.concatenate([a["crops"] for a in clips])
    for crf in CRFS:
        encode_crops(clips, out / "crops.mkv", crf)
        total = fixed + (out / "crops.mkv").stat().st_size
        log(f"  CRF {crf}: {total / 2**20:.1f} MiB")
        if total <= max_mib * 2**20:
            break
    else:
        raise ValueError(f"{len(cached)} clips do not fit in {max_mib} MiB even at CRF {CRFS[-1]}: "
                         f"pack fewer (--grid-clips) or allow more (--max-mib)")
    decoded = decode_crops(out / "crops.mkv")
    if len(decoded) != len(cached_crops):
        raise ValueError(f"crops.mkv holds {len(decoded)} frames, not {len(cached_crops)}")
    err = np.abs(decoded.astype(np.int16) - cached_crops.astype(np.int16))
    seen = arrays["found"]
    bounds = np.concatenate([[0], np.cumsum(n)])
    lips_err = np.nanmax(np.abs(unpack_lips(arrays) - np.concatenate([a["lips"] for a in clips])), initial=0.0)
    m_bounds = np.concatenate([[0], np.cumsum(arrays["n_mel"])])
    mel_err = max((float(np.abs(unpack_mel(arrays, i, m_bounds[i], m_bounds[i + 1]).astype(np.float32)
                                - a["mel40"].astype(np.float32)).max(initial=0.0)) for i, a in enumerate(clips)),
                  default=0.0)
    info = {
        "version": BUNDLE_VERSION, "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cache": str(cache), "splits": list(splits), "crf": crf, "max_mib": max_mib,
        "size_mib": None,  # (set below: all four files)
        "frames": int(n.sum()), "seconds": round(float(sum(len(a["times"]) / float(a["fps"]) for a in clips)), 1),
        "crop_error": {"mean": round(float(err[seen].mean()), 3), "p99": float(np.percentile(err[seen], 99)),
                       "max": int(err[seen].max())},
        "lips_error_max": round(float(lips_err), 6), "mel_error_max": round(mel_err, 4),
        "clips": [{"sha256": r.sha256, "speaker": r.speaker, "frames": int(k),
                   "crops_sha256": _digest(decoded[bounds[i] : bounds[i + 1]])}
                  for i, (r, k) in enumerate(zip(cached, n))],
        "left_out": {"grid_s1_beyond_grid_clips": len(dropped), "not_cached": [r.path for r in missing]},
    }
    rest = sum((out / f).stat().st_size for f in FILES if f != "bundle.json")
    info["size_mib"] = round((rest + len(json.dumps(info, indent=1)) + 8) / 2**20, 2)
    tmp = out / "bundle.json.part"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / "bundle.json")
    return info


def unpack(bundle: Path, cache: Path = DEFAULT_CACHE) -> int:
    """Write every clip of ``bundle`` into ``cache`` as ``train.cache`` would; returns how many.

    Refuses a bundle whose decoded crops differ from the ones packed (another decoder, a damaged file)."""
    from avsync.models.inputs import vertical_flow

    info = json.loads((bundle / "bundle.json").read_text())
    if info.get("version") != BUNDLE_VERSION:
        raise ValueError(f"bundle version {info.get('version')}, this code reads {BUNDLE_VERSION}")
    crops = decode_crops(bundle / "crops.mkv")
    arr = read_arrays(bundle / "arrays.npz.xz")
    if len(crops) != int(arr["n_frames"].sum()):
        raise ValueError(f"crops.mkv holds {len(crops)} frames, the bundle {int(arr['n_frames'].sum())}")
    lips = unpack_lips(arr)
    cache.mkdir(parents=True, exist_ok=True)
    f0 = m0 = 0
    for i, clip in enumerate(info["clips"]):
        nf, nm = int(arr["n_frames"][i]), int(arr["n_mel"][i])
        c = crops[f0 : f0 + nf]
        if _digest(c) != clip["crops_sha256"]:
            raise ValueError(f"clip {clip['sha256'][:12]}: decoded crops differ from those packed")
        found = arr["found"][f0 : f0 + nf]
        out = {
            "found": found, "lips": lips[f0 : f0 + nf], "crops": c,
            "flow": vertical_flow(c, found), "times": arr["times"][f0 : f0 + nf],
            "fps": np.float64(arr["fps"][i]), "audio_t0": np.float64(arr["audio_t0"][i]),
            "mel40": unpack_mel(arr, i, m0, m0 + nm),
        }
        dst = cache / f"{clip['sha256']}.npz"
        tmp = dst.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, dst)
        f0, m0 = f0 + nf, m0 + nm
    return len(info["clips"])


def working_tree_bytes(repo: Path) -> int | None:
    """Bytes of the files git tracks in ``repo`` (what a call to the GPU machine carries besides the bundle);
    None outside a git checkout."""
    import subprocess

    try:
        names = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True,
                               timeout=60).stdout.split(b"\0")
    except (OSError, subprocess.SubprocessError):
        return None
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack the cached train clips into a folder")
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB)
    p.add_argument("--grid-clips", type=int, default=DEFAULT_GRID_CLIPS)
    u = sub.add_parser("unpack", help="fill the feature cache from a bundle")
    u.add_argument("bundle", type=Path)
    u.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    if a.cmd == "pack":
        info = pack(a.out, a.data, a.cache, a.max_mib, a.grid_clips)
        log(f"packed {len(info['clips'])} clips ({info['seconds'] / 60:.1f} min, {info['frames']} frames) into "
            f"{a.out}: {info['size_mib']} MiB, CRF {info['crf']}, crop error mean {info['crop_error']['mean']} "
            f"p99 {info['crop_error']['p99']:g} grey levels ({time.perf_counter() - t:.0f} s)")
        tree = working_tree_bytes(Path(__file__).resolve().parents[3])
        if tree is not None:
            total = tree / 2**20 + info["size_mib"]
            log(f"with the working tree ({tree / 2**20:.1f} MiB) a call carries {total:.1f} of {CARRY_LIMIT_MIB} MiB"
                + ("" if total <= CARRY_LIMIT_MIB else ": too much, pack less (--max-mib, --grid-clips)"))
    else:
        k = unpack(a.bundle, a.cache)
        log(f"unpacked {k} clips into {a.cache} ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
