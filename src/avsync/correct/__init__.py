"""Write a corrected copy: video copied bit for bit, audio shifted sample-exactly.

PyAV loads when a copy is written (``avsync.correct.remux``), not with ``import avsync``.
"""
from __future__ import annotations

import os

__all__ = ["CorrectionReport", "correct", "default_output_path"]


def correct(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    offset_ms: float,
    overwrite: bool = False,
    timeline: dict | None = None,
):
    """Write ``dst``: ``src`` with its audio advanced by ``offset_ms`` (delayed if negative); returns a
    ``CorrectionReport``. See ``avsync.correct.remux.correct``."""
    from avsync.correct.remux import correct as _correct

    return _correct(src, dst, offset_ms=offset_ms, overwrite=overwrite, timeline=timeline)


def __getattr__(name: str):
    if name in ("CorrectionReport", "default_output_path"):
        from avsync.correct import remux

        return getattr(remux, name)
    raise AttributeError(f"module 'avsync.correct' has no attribute {name!r}")
