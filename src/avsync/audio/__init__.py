"""Audio features (numpy only; no torchaudio)."""
from avsync.audio.features import (
    FeatureSpec,
    E2E_MEL,
    LOGMEL,
    StreamingFeatures,
    compute_features,
    mel_filterbank,
    mfcc,
)

__all__ = ["E2E_MEL", "LOGMEL", "FeatureSpec", "StreamingFeatures", "compute_features", "mel_filterbank", "mfcc"]
