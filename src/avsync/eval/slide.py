"""Trials in feature space: the protocol's trimming, applied to an Extraction.

``avsync eval`` decodes and tracks each clip once and then makes every trial
by slicing that one ``Extraction``, exactly as ``trials.make_trial`` trims the
media: for audio lagging by k frames (k > 0) the first k video frames and the
last k frames' worth of audio go; for k < 0 the last |k| video frames and the
first |k| frames' worth of audio. No padding, no codec in between.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from avsync.audio.features import E2E_MEL
from avsync.extract import Extraction


def _video(ext: Extraction, start: int, stop: int, times: np.ndarray) -> dict:
    """Frames [start, stop) of ``ext`` (renumbered from 0) at ``times``: tracks and the cuts among them."""
    return {"times": times, "tracks": [t.sliced(start, stop) for t in ext.tracks],
            "cuts": [c - start for c in ext.cuts if start < c < stop]}


def _grid_slice(t0: float, rate: float, n: int, t_from: float, t_to: float) -> tuple[int, int]:
    """Indices [j0, j1) of a grid (frame j at t0 + j/rate) lying in [t_from, t_to)."""
    j0 = max(0, math.ceil((t_from - t0) * rate - 1e-9))
    j1 = min(n, math.ceil((t_to - t0) * rate - 1e-9))
    return j0, max(j0, j1)


def _audio_window(ext: Extraction, t_from: float, t_to: float) -> dict:
    """Audio features restricted to presentation times [t_from, t_to)."""
    a0, a1 = _grid_slice(ext.audio_t0, E2E_MEL.fps, len(ext.mel40), t_from, t_to)
    a_start, a_end = ext.audio_t0, ext.audio_t0 + ext.audio_duration_s
    return {
        "mel40": ext.mel40[a0:a1],
        "audio_t0": ext.audio_t0 + a0 / E2E_MEL.fps,
        "audio_duration_s": max(0.0, min(t_to, a_end) - max(t_from, a_start)),
    }


def shift_extraction(ext: Extraction, k: int) -> Extraction:
    """The trial of ``ext`` with audio lagging by ``k`` frames (of the clip's own rate)."""
    n = ext.n_frames
    fps = ext.fps
    k = int(k)
    if abs(k) >= n:
        raise ValueError(f"offset {k} frames is longer than the clip ({n} frames)")
    d = abs(k) / fps
    a_end = ext.audio_t0 + ext.audio_duration_s
    if k >= 0:
        # Trial frame i shows original frame i+k, at original frame i's time.
        video = _video(ext, k, n, ext.times[: n - k])
        shifted = replace(ext, **video)
        audio = _audio_window(ext, ext.audio_t0, a_end - d)
        return replace(shifted, **audio)
    video = _video(ext, 0, n + k, ext.times[: n + k])
    shifted = replace(ext, **video)
    # Audio advances by d: content at original time t + d plays at t.
    audio = _audio_window(ext, ext.audio_t0 + d, a_end)
    audio["audio_t0"] -= d
    return replace(shifted, **audio)


def crop_extraction(ext: Extraction, start: int, stop: int) -> Extraction:
    """Video frames [start, stop) with only the audio under those same frames (strict protocol)."""
    times = ext.times[start:stop]
    video = _video(ext, start, stop, times)
    dt = 1.0 / ext.fps
    audio = _audio_window(ext, float(times[0]) - 0.5 * dt, float(times[-1]) + 0.5 * dt)
    return replace(ext, **video, **audio)
