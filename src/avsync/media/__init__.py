"""Media input and output through PyAV (FFmpeg libraries; no shell, no subprocess).

PyAV loads with the first thing that reads a file (``avsync.media.decode``), not with ``import avsync``:
training from a feature cache (``avsync.train.bundle``, a lent GPU machine without PyAV) decodes nothing.
"""
from __future__ import annotations

__all__ = ["MediaInfo", "iter_audio_chunks", "iter_video_frames", "open_input", "probe", "read_audio"]


def __getattr__(name: str):
    if name in __all__:
        from avsync.media import decode

        return getattr(decode, name)
    raise AttributeError(f"module 'avsync.media' has no attribute {name!r}")
