"""``avsync detect --plot``: one figure that shows why the answer is what it is.

* the score curve over candidate offsets, with the chosen offset and the in-sync tolerance band;
* the offset over time (one reading per window, coloured by confidence), with the file's offset
  and, where a timeline provides them, segments and change points;
* the active face's audio-visual similarity matrix (video time x audio time), where a constant
  offset is a bright diagonal displaced from the identity by the offset.

Sign convention everywhere: offset > 0 means the audio lags the picture.
"""
from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from avsync.errors import UsageError

#: Longest stretch of video shown in the similarity matrix: the band of lags must stay visible.
MATRIX_MAX_SECONDS = 3.0
SIGN_WORDS = "offset > 0: the audio lags the picture (the sound comes after the lips); fix by advancing the audio"


@dataclass(frozen=True)
class Segment:
    """A stretch of constant offset (from a timeline), drawn as a bar over the window readings."""

    start_s: float
    end_s: float
    offset_ms: float


#: Window length (frames) of the offset-over-time panel when ``--window-frames`` is not given (2 s at 25 fps).
PLOT_WINDOW_FRAMES = 50


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError('--plot needs matplotlib: pip install "avsync[plot]"') from None
    return plt


def save_sync_figure(result, path: str | os.PathLike, *, segments: Sequence[Segment] | None = None,
                     change_points: Sequence[float] | None = None, name: str | None = None, dpi: int = 100) -> None:
    """Draw ``result`` (a ``SyncResult`` from ``detect(..., window_frames=N, similarity=True)``) into a PNG.

    ``segments`` and ``change_points`` (seconds) are drawn on the offset-over-time panel; by default they
    are the result's own segment readings and its timeline's change points. ``name`` replaces the file's
    name in the title.
    """
    if segments is None:
        segments = [Segment(g["start_s"], g["end_s"], g["offset_ms"]) for g in getattr(result, "segments", None) or []
                    if g.get("offset_ms") is not None]
    if change_points is None:
        change_points = ((getattr(result, "timeline", None) or {}).get("change_points_s") or [])
    plt = _pyplot()
    from avsync.util import atomic_output

    fig = plt.figure(figsize=(13, 9), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.1, 1], width_ratios=[1, 1])
    _curve_panel(fig.add_subplot(grid[0, 0]), result)
    _matrix_panel(fig, fig.add_subplot(grid[0, 1]), result)
    _timeline_panel(fig, fig.add_subplot(grid[1, :]), result, segments, change_points)
    title = f"{name or os.path.basename(result.path)} — model {result.model}"
    sentence = "\n".join(textwrap.wrap(result.sentence(), 130))
    fig.suptitle(f"{title}\n{sentence}\n{SIGN_WORDS}", fontsize=11)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def _curve_panel(ax, r) -> None:
    lags = np.asarray(r.curve["lags_ms"], dtype=float)
    scores = np.asarray(r.curve["scores"], dtype=float)
    ax.axvspan(-r.tolerance_ms, r.tolerance_ms, color="tab:green", alpha=0.15,
               label=f"in sync (±{r.tolerance_ms:.0f} ms)")
    ax.plot(lags, scores, color="tab:blue", lw=1.6, label="score")
    ax.axvline(r.offset_ms, color="tab:red", lw=1.4, label=f"chosen: {r.offset_ms:+.0f} ms")
    ax.axvline(0, color="0.4", lw=0.8, ls=":")
    ax.set_xlabel("candidate offset (ms; > 0: audio later than the lips)")
    ax.set_ylabel("agreement of lips and voice (score)")
    ax.set_title("Score over candidate offsets", fontsize=11)
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    ax.grid(alpha=0.3)


def _matrix_panel(fig, ax, r) -> None:
    sim = r.similarity
    if not sim:
        ax.text(0.5, 0.5, "no similarity matrix\n(detect(..., similarity=True))", ha="center", va="center")
        ax.set_axis_off()
        return
    t = np.asarray(sim["times_s"], dtype=float)
    lags = np.asarray(sim["lags_ms"], dtype=float) / 1000.0
    s = np.asarray(sim["scores"], dtype=float)
    rows = np.flatnonzero(np.isfinite(s).any(1))
    if rows.size == 0:
        ax.text(0.5, 0.5, "face not seen long enough for 5-frame windows", ha="center", va="center")
        ax.set_axis_off()
        return
    lo = rows[0]
    hi = np.searchsorted(t, t[lo] + MATRIX_MAX_SECONDS)
    t, s = t[lo:hi], s[lo:hi]
    # video time x audio time on a regular grid of the lag step: cell (i, a) holds window i at lag a - t_i
    step = float(np.min(np.diff(lags))) if len(lags) > 1 else 0.01
    a0 = t[0] + lags[0]
    n_a = int(np.ceil((t[-1] + lags[-1] - a0) / step)) + 1
    grid = np.full((n_a, len(t)), np.nan)
    for i, ti in enumerate(t):
        idx = np.clip(np.round((ti + lags - a0) / step).astype(int), 0, n_a - 1)
        grid[idx, i] = s[i]
    to_ms = 1000.0
    extent = [t[0] * to_ms, t[-1] * to_ms, a0 * to_ms, (a0 + (n_a - 1) * step) * to_ms]
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", extent=extent, cmap="magma",
                   interpolation="nearest")
    x = np.array([t[0], t[-1]]) * to_ms
    ax.plot(x, x, color="w", ls="--", lw=1.0, label="in sync (audio time = video time)")
    ax.plot(x, x + r.offset_ms, color="cyan", lw=1.2, label=f"offset diagonal ({r.offset_ms:+.0f} ms)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("video time (ms)")
    ax.set_ylabel("audio time (ms)")
    ax.set_title(f"Audio-visual similarity, face {sim['track_id']} ({sim['window_frames']}-frame windows)",
                 fontsize=11)
    ax.legend(loc="upper left", fontsize=8, facecolor="0.25", labelcolor="w", framealpha=0.9)
    fig.colorbar(im, ax=ax, label="score", shrink=0.9)


def _timeline_panel(fig, ax, r, segments, change_points) -> None:
    ax.axhspan(-r.tolerance_ms, r.tolerance_ms, color="tab:green", alpha=0.15, label="in sync")
    ax.axhline(r.offset_ms, color="tab:red", lw=1.2, ls="--", label=f"whole file: {r.offset_ms:+.0f} ms")
    wins = [w for w in (r.windows or []) if w.offset_ms is not None]
    if wins:
        mid = np.array([(w.start_s + w.end_s) / 2 for w in wins]) * 1000.0
        half = np.array([(w.end_s - w.start_s) / 2 for w in wins]) * 1000.0
        off = np.array([w.offset_ms for w in wins])
        conf = np.array([w.confidence for w in wins])
        ax.errorbar(mid, off, xerr=half, fmt="none", ecolor="0.6", lw=0.8, zorder=1)
        sc = ax.scatter(mid, off, c=conf, cmap="viridis", vmin=0, vmax=1, s=36, zorder=2, label="window reading")
        fig.colorbar(sc, ax=ax, label="confidence", pad=0.01)
    else:
        ax.text(0.5, 0.5, "no window readings (too short, or no face)", transform=ax.transAxes, ha="center")
    for k, seg in enumerate(segments):
        ax.hlines(seg.offset_ms, seg.start_s * 1000.0, seg.end_s * 1000.0, colors="tab:orange", lw=3,
                  label="segment" if k == 0 else None, zorder=3)
    for k, cp in enumerate(change_points):
        ax.axvline(cp * 1000.0, color="tab:purple", ls="-.", lw=1.2, label="change point" if k == 0 else None)
    ax.set_xlabel("time in the video (ms)")
    ax.set_ylabel("offset (ms; > 0: audio lags)")
    ax.set_title("Offset over time", fontsize=11)
    ax.set_xlim(0, r.duration_s * 1000.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=9, ncol=5, frameon=False)
