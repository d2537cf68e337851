"""Every signal constant avsync uses, in one place.

Derived values are computed from the primary ones, never typed twice.
"""
from __future__ import annotations

# --- audio -----------------------------------------------------------------
#: All analysis audio is resampled to this rate, mono.
AUDIO_SR = 16_000

#: VocaLiST log-mel: 80 bins, window 800 samples (50 ms), hop 200 (12.5 ms) -> 80 frames/s.
LOGMEL_N_MELS = 80
LOGMEL_WIN = 800
LOGMEL_HOP = 200
LOGMEL_FPS = AUDIO_SR / LOGMEL_HOP

#: Sync-e2e mel: 40 bins at 100 frames/s (window 25 ms, hop 10 ms).
E2E_N_MELS = 40
E2E_WIN = 400
E2E_HOP = 160
E2E_FPS = AUDIO_SR / E2E_HOP

#: MFCCs are taken from the 40-bin mel (SyncNet used 13 coefficients at 100 Hz).
N_MFCC = 13

#: Mel filterbank edges (Hz).
MEL_FMIN = 0.0
MEL_FMAX = AUDIO_SR / 2

#: Floor added before taking logs of power spectra.
LOG_EPS = 1e-10

#: Band (Hz) that holds the voice: speech detection and the model-free envelopes.
SPEECH_BAND_HZ = (150.0, 7000.0)

#: Audio is decoded and featurised in chunks of this many seconds (bounded memory).
AUDIO_CHUNK_S = 30.0

# --- video -----------------------------------------------------------------
#: Frame rate assumed only for reporting when a stream declares none.
FALLBACK_FPS = 25.0

#: Lip analysis never needs more than this many frames per second; faster video
#: is analysed on a decimated frame grid (timestamps are kept exact).
MAX_ANALYSIS_FPS = 31.0

#: Long side (pixels) of the frame given to the face detector.
DETECT_LONG_SIDE = 640

#: Aligned mouth crops for the learned models (height, width), as in VocaLiST.
MOUTH_CROP_HW = (48, 96)

# --- sync search -------------------------------------------------------------
#: Default search range, in video frames either way (SyncNet / LRS2 protocol).
DEFAULT_MAX_OFFSET_FRAMES = 15

#: Largest search range the CLI accepts, in ms.
MAX_SEARCH_MS = 3000.0

#: Default in-sync tolerance, in video frames.
DEFAULT_TOLERANCE_FRAMES = 1.0

#: In-sync tolerance for singing, in video frames (the VocaLiST/VTP singing protocol).
SINGING_TOLERANCE_FRAMES = 5.0

#: Seconds of voice a segment holds when reading singing (longer context than speech).
SINGING_SEGMENT_S = 8.0

#: Lag grid step as a fraction of a video frame (sub-frame search).
LAG_STEP_FRACTION = 0.25

#: Shortest stretch of usable (face + speech) video we will judge, in seconds.
MIN_JUDGE_SECONDS = 0.6

#: Least speech (s) the audio must hold to be judged at all.
MIN_SPEECH_SECONDS = 0.25

# --- helpers -----------------------------------------------------------------


def frame_ms(fps: float) -> float:
    """Duration of one video frame in milliseconds."""
    return 1000.0 / fps


#: Frames per window of the audio-visual similarity matrix (``detect(similarity=True)``): SyncNet's
#: and the LRS2 protocol's 5-frame windows, one per video frame.
SIMILARITY_WINDOW_FRAMES = 5
