"""avsync: measure and fix audio-to-lip synchronisation.

``offset_ms > 0`` means the audio lags the picture; fix it by advancing the audio.

    >>> import avsync
    >>> r = avsync.detect("talk.mp4")
    >>> print(r.sentence())
    >>> avsync.correct("talk.mp4", "talk.fixed.mp4", offset_ms=r.offset_ms)

``import avsync`` stays light: torch (or onnxruntime), MediaPipe and OpenCV load
only when a file is analysed (``tests/test_startup.py`` checks it).
"""
from avsync.api import available_models, detect, load_model
from avsync.correct import correct
from avsync.errors import AvsyncError
from avsync.result import SyncResult

__version__ = "0.1.0"
__all__ = ["AvsyncError", "SyncResult", "available_models", "correct", "detect", "load_model", "__version__"]
