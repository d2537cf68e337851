"""Where the audio holds speech-like sound (energy well above silence)."""
from __future__ import annotations

import numpy as np

from avsync.audio.features import E2E_MEL, mel_band_centres
from avsync.constants import SPEECH_BAND_HZ

#: Absolute floor: frames quieter than this (dB re full-scale power) are silence.
SILENCE_DB = -60.0
#: Relative floor: frames this far below the loud frames are pauses, not speech.
DYNAMIC_DB = 35.0


def speech_mask(mel40: np.ndarray) -> np.ndarray:
    """Boolean per 40-mel frame: energy in SPEECH_BAND_HZ above the silence floors."""
    if len(mel40) == 0:
        return np.zeros(0, dtype=bool)
    centres = mel_band_centres(E2E_MEL)
    lo, hi = SPEECH_BAND_HZ
    sel = (centres > lo) & (centres < hi)
    db = 10.0 * np.log10(np.exp(mel40[:, sel].astype(np.float64)).sum(1) + 1e-12)
    loud = np.percentile(db, 95)
    return (db > SILENCE_DB) & (db > loud - DYNAMIC_DB)


def frame_speech(times: np.ndarray, speech: np.ndarray, audio_t0: float, rate: float) -> np.ndarray:
    """Per video frame: does the audio hold speech there (mask on an audio grid at ``rate``)."""
    j = np.round((np.asarray(times, dtype=np.float64) - audio_t0) * rate).astype(np.int64)
    out = np.zeros(len(times), bool)
    inside = (j >= 0) & (j < len(speech))
    out[inside] = np.asarray(speech, bool)[j[inside]]
    return out
