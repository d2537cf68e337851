"""What the learned models read, derived from an ``Extraction`` (numpy only).

Everything is laid out on the video frame grid of one face track, so a model
never needs to know the frame rate:

- ``crops``: (T, 48, 96) uint8 grey mouth crops (zeros where the face was lost);
- ``lips``: (T, 40, 2) lip landmarks without head pose and size (inter-ocular
  units, centred on the track's mean mouth); NaN where lost;
- ``flow``: (T, 24, 48) float16 vertical Farnebäck flow of the mouth crop
  between frame i-1 and i (seed 003); 0 at frame 0 and next to lost frames;
- ``found``: (T,) bool.

Audio is resampled onto a grid of ``AUDIO_STEPS`` steps per video frame: step
``j`` lies at ``t_start + j / (AUDIO_STEPS * fps)``, so video frame ``i`` sits
at step ``AUDIO_STEPS*i``. At 25 fps a step is the 40-bin mel's own 10 ms hop.
A lag of one step is a quarter frame: the grid of the offset search. Models
pair frame ``i`` at lag ``l`` (steps) with the audio around step ``4i + l``.
"""
from __future__ import annotations

import numpy as np

from avsync.audio.features import E2E_MEL
from avsync.constants import MOUTH_CROP_HW
from avsync.sync.offset import sample_series

#: Audio steps per video frame (SyncNet: 20 MFCC steps per 5 frames).
AUDIO_STEPS = 4
#: Size of the stored vertical-flow maps (half the mouth crop).
FLOW_HW = (24, 48)
#: The per-frame arrays of a track (``track_arrays``, the training cache), and ``v``, a model's visual
#: embeddings of them: what a trial or a stretch of a clip slices by frame.
PER_FRAME_KEYS = ("found", "lips", "crops", "flow", "v")
#: Log-mel value used for audio outside the recording (silence).
MEL_FLOOR = float(np.log(1e-10))


def vertical_flow(crops: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Farnebäck vertical flow between consecutive grey crops, at FLOW_HW, float16."""
    import cv2

    t = len(crops)
    out = np.zeros((t,) + FLOW_HW, dtype=np.float16)
    for i in range(1, t):
        if found[i] and found[i - 1]:
            f = cv2.calcOpticalFlowFarneback(crops[i - 1], crops[i], None, 0.5, 2, 9, 2, 5, 1.1, 0)
            out[i] = cv2.resize(f[..., 1], FLOW_HW[::-1], interpolation=cv2.INTER_AREA)
    return out


def track_arrays(ext, track_index: int, with_crops: bool = True, with_flow: bool = True,
                 with_lips: bool = True) -> dict:
    """Per-frame visual inputs of one face track (see module docstring).

    The landmarks are normalised over the track's own frames only (a face seen for seconds of an hour-long
    file costs seconds of work and memory, not an hour's); ``with_lips=False`` (models that read crops) leaves
    ``lips`` out."""
    from avsync.face.landmarks import N_LIP, normalise_lips

    n = ext.n_frames
    tr = ext.tracks[track_index]
    a, b = tr.first_frame, min(n, tr.first_frame + len(tr.key))
    key = np.stack(tr.key[: b - a]) if b > a else np.zeros((0, N_LIP, 3), np.float32)
    found = np.zeros(n, dtype=bool)
    found[a:b] = np.isfinite(key).all(axis=(1, 2))
    out = {"found": found}
    if with_lips:
        lips = np.full((n, N_LIP, 2), np.nan, dtype=np.float32)
        if b > a:
            own = normalise_lips(key)[:, :, :2]
            ok = found[a:b]
            if ok.any():
                own = own - np.nanmean(own[ok].reshape(-1, 2), axis=0)
            lips[a:b] = own
        out["lips"] = lips
    if with_crops:
        crops = np.zeros((n,) + MOUTH_CROP_HW, dtype=np.uint8)
        if tr.crops:
            for i, c in enumerate(tr.crops):
                j = tr.first_frame + i
                if c is not None and j < n:
                    crops[j] = c
        out["crops"] = crops
        if with_flow:
            out["flow"] = vertical_flow(crops, found)
    return out


def frame_positions(times: np.ndarray, fps: float) -> np.ndarray:
    """Audio-grid index of each frame's first step (handles uneven frame times)."""
    return np.round((times - times[0]) * fps).astype(np.int64) * AUDIO_STEPS


def mel_stats(mel40: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-bin mean and overall deviation of a recording's log-mel (for ``normalise_mel``)."""
    m = np.asarray(mel40, dtype=np.float32)
    mu = m.mean(0) if len(m) else np.zeros(m.shape[1], np.float32)
    sd = float((m - mu).std()) if len(m) else 1.0
    return mu, max(sd, 1e-3)


def audio_grid(mel40: np.ndarray, audio_t0: float, t_start: float, fps: float, first: int, count: int) -> np.ndarray:
    """Steps ``[first, first+count)`` of the audio grid anchored at ``t_start``, (count, 40) float32.

    Steps outside the recording are silence (``MEL_FLOOR``).
    """
    j = np.arange(first, first + count, dtype=np.float64)
    t = t_start + j / (AUDIO_STEPS * fps)
    a = sample_series(mel40, audio_t0, E2E_MEL.fps, t)
    return np.where(np.isfinite(a), a, MEL_FLOOR).astype(np.float32)


def normalise_mel(grid: np.ndarray, stats: tuple[np.ndarray, float]) -> np.ndarray:
    """Mean-normalised log-mel (cepstral mean normalisation, per recording), floored at -6 deviations."""
    mu, sd = stats
    return np.maximum((grid - mu) / sd, -6.0).astype(np.float32)
