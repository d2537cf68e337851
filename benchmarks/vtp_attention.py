#!/usr/bin/env python
"""Does the VTP visual encoder's attention pooling look at the lips?

    python benchmarks/vtp_attention.py CHECKPOINT [--split dev] [--data ../shared/data]
                                       [--max-clips N] [--json OUT.json]

``VTPVisual`` pools each frame's 6x12 map of CNN cells into one vector with a
learned query; after a forward pass ``last_attention`` (B, T, 6, 12) holds that
query's weights (summing to 1 per frame). The 6x12 grid tiles the 48x96 grey
mouth crop into 8x8-pixel cells.

For each clip of a manifest split: extract with one face and crops kept, take
the track found on most frames, run the visual encoder on its crops and read
the attention. On every frame where the face was found, the 40 lip landmarks
are mapped into crop pixels with the crop's own affine matrix
(``mouth_crop_matrix``) and their bounding box (the outer lip contour,
clipped to the crop) is the *lip box*. Per frame:

* ``mass``: attention inside the lip box; a cell counts by the fraction of its
  area that overlaps the box;
* ``area``: the lip box's fraction of the crop area (the mass a uniform
  attention would put there);
* ``lift``: mass / area; 1.0 = no preference for the lips, higher = attends to
  them (an untrained model gives about 1);
* ``argmax_in_box``: whether the centre of the most attended cell lies inside
  the box (chance level, for a random cell, is about ``area``);
* ``com_dx``, ``com_dy``, ``com_dist``: the attention's centre of mass minus
  the lip-box centre, in crop pixels (x right, y down).

Per clip and overall the frame-weighted means are reported (overall = mean
over all frames of all clips).

Coordinates: crop pixel ``i`` covers ``[i, i+1)``, so the crop spans [0, 96] x
[0, 48] and cell (r, c) spans ``[8c, 8c+8) x [8r, 8r+8)`` (OpenCV's warp puts
pixel centres at integer coordinates, hence the +0.5 below). Note that the
CNN's receptive field for cell (r, c) (three 3x3 stride-2 convolutions) is
centred on pixel (8r, 8c), 3.5 pixels up-left of the nominal tile's centre,
and after the transformer layer every token can carry information from the
whole crop: the measure says where the pooling *reads*, not strictly what it
sees.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from avsync.constants import MOUTH_CROP_HW
from avsync.face.landmarks import N_LIP
from avsync.face.tracker import mouth_crop_matrix

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
#: Frames per forward pass of the visual encoder.
CHUNK = 256
#: Per-frame measures averaged per clip and overall.
MEASURES = ("mass", "area", "lift", "argmax_in_box", "com_dx", "com_dy", "com_dist")


def lip_boxes(key: np.ndarray, hw: tuple[int, int] = MOUTH_CROP_HW) -> np.ndarray:
    """(T, K, 3) key landmarks in frame pixels -> (T, 4) lip boxes x0, y0, x1, y1 in crop pixels.

    Boxes are clipped to the crop; rows are NaN where the face was lost.
    """
    h, w = hw
    out = np.full((len(key), 4), np.nan)
    for i, k in enumerate(key):
        if not np.isfinite(k).all():
            continue
        m = mouth_crop_matrix(k, hw)
        lips = k[:N_LIP, :2].astype(np.float64) @ m[:, :2].T + m[:, 2] + 0.5  # pixel edges, see docstring
        x0, y0 = lips.min(0)
        x1, y1 = lips.max(0)
        out[i] = np.clip(x0, 0, w), np.clip(y0, 0, h), np.clip(x1, 0, w), np.clip(y1, 0, h)
    return out


def attention_measures(att: np.ndarray, boxes: np.ndarray, hw: tuple[int, int] = MOUTH_CROP_HW) -> dict:
    """Per-frame measures (see module docstring) of attention maps (T, gh, gw) against lip boxes (T, 4)."""
    t, gh, gw = att.shape
    ch, cw = hw[0] / gh, hw[1] / gw
    att = att / att.sum((1, 2), keepdims=True)
    x0, y0, x1, y1 = (boxes[:, j, None] for j in range(4))
    cx0, cy0 = np.arange(gw) * cw, np.arange(gh) * ch
    # Fraction of each cell's width (height) inside the box: (T, gw) and (T, gh).
    fx = np.clip(np.minimum(cx0 + cw, x1) - np.maximum(cx0, x0), 0, None) / cw
    fy = np.clip(np.minimum(cy0 + ch, y1) - np.maximum(cy0, y0), 0, None) / ch
    mass = np.einsum("thw,th,tw->t", att, fy, fx)
    area = (x1 - x0)[:, 0] * (y1 - y0)[:, 0] / (hw[0] * hw[1])
    flat = att.reshape(t, -1).argmax(1)
    ax, ay = (flat % gw + 0.5) * cw, (flat // gw + 0.5) * ch
    inside = (ax >= x0[:, 0]) & (ax < x1[:, 0]) & (ay >= y0[:, 0]) & (ay < y1[:, 0])
    com_x = np.einsum("thw,w->t", att, (np.arange(gw) + 0.5) * cw)
    com_y = np.einsum("thw,h->t", att, (np.arange(gh) + 0.5) * ch)
    dx, dy = com_x - (x0 + x1)[:, 0] / 2, com_y - (y0 + y1)[:, 0] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(area > 0, mass / area, np.nan)
    return {"mass": mass, "area": area, "lift": lift, "argmax_in_box": inside.astype(float),
            "com_dx": dx, "com_dy": dy, "com_dist": np.hypot(dx, dy)}


@torch.no_grad()
def track_attention(visual: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 crops -> (T, gh, gw) float attention of a ``VTPVisual``, CHUNK frames at a time."""
    maps = []
    for s in range(0, len(crops), CHUNK):
        visual(torch.from_numpy(np.ascontiguousarray(crops[s : s + CHUNK]))[None])
        maps.append(visual.last_attention[0].float().cpu().numpy())
    return np.concatenate(maps)


def attention_summary(est, ext, track_index: int) -> dict:
    """Where one track's VTP attention falls relative to the lips.

    ``est``: a ``LearnedEstimator`` whose model's ``.visual`` is a ``VTPVisual``;
    ``ext``: an ``Extraction`` made with ``keep_crops=True``. Returns ``frames``
    (frames with a face), the frame means of ``MEASURES`` (NaN if no frame) and
    ``mean_attention`` (gh x gw nested list).
    """
    from avsync.models.inputs import track_arrays

    visual = est.model.visual
    if not hasattr(visual, "grid"):
        raise TypeError(f"{type(visual).__name__} has no attention pooling (not a VTP model)")
    key = ext.tracks[track_index].landmarks(ext.n_frames)
    found = np.isfinite(key).all(axis=(1, 2))
    if not found.any():
        return {"frames": 0, **{name: float("nan") for name in MEASURES}, "mean_attention": None}
    crops = track_arrays(ext, track_index, with_crops=True)["crops"][found]
    att = track_attention(visual, crops)
    per_frame = attention_measures(att, lip_boxes(key[found]), crops.shape[1:])
    return {"frames": int(found.sum()), **{name: float(np.nanmean(per_frame[name])) for name in MEASURES},
            "mean_attention": att.mean(0).round(5).tolist()}


def overall(rows: list[dict]) -> dict:
    """Frame-weighted means of ``MEASURES`` over clip summaries."""
    rows = [r for r in rows if r["frames"] > 0]
    n = sum(r["frames"] for r in rows)
    out: dict = {"clips": len(rows), "frames": n}
    for name in MEASURES:
        out[name] = sum(r[name] * r["frames"] for r in rows) / n if n else float("nan")
    return out


def manifest_clips(data: Path, split: str) -> list[str]:
    with open(data / "manifest.tsv", newline="") as f:
        return [r["path"] for r in csv.DictReader(f, delimiter="\t") if r["split"] == split]


def print_table(rows: list[dict], total: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption="lift = mass / area (1: no preference); in box: argmax cell in the lip box; "
                  "CoM: attention centre - lip-box centre (px)")
    table.add_column("clip", overflow="ellipsis", min_width=10, max_width=40)
    for col, width in (("frames", 6), ("mass", 5), ("area", 5), ("lift", 5), ("in box", 6), ("CoM dx,dy", 11), ("|CoM|", 5)):
        table.add_column(col, justify="right", no_wrap=True, min_width=width)

    def cells(r: dict) -> list[str]:
        if not r["frames"]:
            return ["0"] + ["-"] * 6
        return [str(r["frames"]), f"{r['mass']:.3f}", f"{r['area']:.3f}", f"{r['lift']:.2f}",
                f"{r['argmax_in_box']:.0%}", f"{r['com_dx']:+.1f},{r['com_dy']:+.1f}", f"{r['com_dist']:.1f}"]

    for r in rows:
        table.add_row(r["clip"], *cells(r))
    table.add_section()
    table.add_row(f"all ({total['clips']} clips)", *cells(total))
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a VTP model checkpoint (.pt)")
    ap.add_argument("--split", default="dev", help="manifest split (default: dev)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding manifest.tsv")
    ap.add_argument("--max-clips", type=int, default=None, help="stop after this many clips")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    from avsync.errors import AvsyncError
    from avsync.extract import extract
    from avsync.models.checkpoint import estimator_from_file

    torch.set_num_threads(1)
    est = estimator_from_file(args.checkpoint)
    clips = manifest_clips(args.data, args.split)[: args.max_clips]
    rows, skipped = [], []
    for i, rel in enumerate(clips, 1):
        print(f"[{i}/{len(clips)}] {rel}", file=sys.stderr, flush=True)
        try:
            ext = extract(args.data / rel, max_faces=1, keep_crops=True)
        except AvsyncError as exc:
            skipped.append({"clip": rel, "reason": str(exc)})
            continue
        if not ext.tracks:
            skipped.append({"clip": rel, "reason": "no face track"})
            continue
        best = max(range(len(ext.tracks)), key=lambda j: ext.tracks[j].n_found)
        rows.append({"clip": Path(rel).stem, "path": rel, "track": best, **attention_summary(est, ext, best)})

    total = overall(rows)
    print_table(rows, total, f"VTP attention on the lips: {est.name}, split {args.split}")
    for s in skipped:
        print(f"skipped {s['clip']}: {s['reason']}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "model": est.name, "split": args.split,
                                         "overall": total, "clips": rows, "skipped": skipped}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
