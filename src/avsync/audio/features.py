"""Log-mel and MFCC features, computed with numpy, in streaming chunks.

Feature frame ``j`` is centred on sample ``j * hop`` of the stream (the first
window is zero-padded by half a window), so its time is ``t0 + j * hop / sr``.
Computing a long file chunk by chunk gives the same numbers as computing it
whole; memory stays bounded by the chunk size.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from avsync.constants import (
    AUDIO_SR,
    E2E_HOP,
    E2E_N_MELS,
    E2E_WIN,
    LOG_EPS,
    LOGMEL_HOP,
    LOGMEL_N_MELS,
    LOGMEL_WIN,
    MEL_FMAX,
    MEL_FMIN,
    N_MFCC,
)


@dataclass(frozen=True)
class FeatureSpec:
    """A log-mel configuration: window and hop in samples, number of mel bins."""

    win: int
    hop: int
    n_mels: int
    sr: int = AUDIO_SR

    @property
    def fps(self) -> float:
        return self.sr / self.hop

    @property
    def n_fft(self) -> int:
        return int(2 ** np.ceil(np.log2(self.win)))


#: VocaLiST: 80 bins, window 800, hop 200 (80 frames/s).
LOGMEL = FeatureSpec(LOGMEL_WIN, LOGMEL_HOP, LOGMEL_N_MELS)
#: Sync-e2e / SyncNet MFCC base: 40 bins at 100 frames/s.
E2E_MEL = FeatureSpec(E2E_WIN, E2E_HOP, E2E_N_MELS)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sr: int = AUDIO_SR, fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """Triangular HTK-mel filters, area-normalised (Slaney), shape (n_mels, n_fft//2+1)."""
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (upper - lower))
    fb.setflags(write=False)
    return fb.astype(np.float32)


def mel_band_centres(spec: FeatureSpec) -> np.ndarray:
    """Centre frequency (Hz) of each mel bin of ``spec``."""
    return _mel_to_hz(np.linspace(_hz_to_mel(MEL_FMIN), _hz_to_mel(MEL_FMAX), spec.n_mels + 2))[1:-1]


@lru_cache(maxsize=8)
def _window(win: int) -> np.ndarray:
    return np.hanning(win + 1)[:-1].astype(np.float32)


def _frames_logmel(padded: np.ndarray, n: int, spec: FeatureSpec) -> np.ndarray:
    """Log-mel of ``n`` frames taken every hop from the start of ``padded``."""
    idx = np.arange(spec.win)[None, :] + spec.hop * np.arange(n)[:, None]
    frames = padded[idx] * _window(spec.win)
    power = np.abs(np.fft.rfft(frames, n=spec.n_fft, axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank(spec.n_mels, spec.n_fft, spec.sr).T
    return np.log(mel + LOG_EPS).astype(np.float32)


class StreamingFeatures:
    """Log-mel of an audio stream fed in chunks of any size."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self._buf = np.zeros(spec.win // 2, dtype=np.float32)  # half-window of leading zeros
        self._out: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float32)])
        n = (len(self._buf) - self.spec.win) // self.spec.hop + 1
        if n > 0:
            self._out.append(_frames_logmel(self._buf, n, self.spec))
            self._buf = self._buf[n * self.spec.hop :]

    def finish(self) -> np.ndarray:
        """Pad the tail by half a window and return all frames, (T, n_mels)."""
        self.push(np.zeros(self.spec.win // 2, dtype=np.float32))
        out = np.concatenate(self._out) if self._out else np.zeros((0, self.spec.n_mels), np.float32)
        self._out = [out]
        return out


def compute_features(samples: np.ndarray, spec: FeatureSpec = LOGMEL) -> np.ndarray:
    """Log-mel of a whole signal, (T, n_mels); frame j is centred on sample j*hop."""
    sf = StreamingFeatures(spec)
    sf.push(samples)
    return sf.finish()


@lru_cache(maxsize=4)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def mfcc(logmel: np.ndarray, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Orthonormal DCT-II of log-mel frames (T, n_mels) -> (T, n_mfcc)."""
    return logmel @ _dct_matrix(logmel.shape[1], n_mfcc).T
