"""Writing test media from real clips (PyAV): re-timed, concatenated, composited, with edited audio.

Everything is written under pytest's temporary folders; nothing here is ever stored in the repository.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

RATE = 16_000


def read_video(src):
    """[(time_s, rgb)] of every frame."""
    with av.open(str(src)) as c:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def read_audio(src, rate=RATE) -> np.ndarray:
    """Mono float32 audio at ``rate``, from the stream's first sample."""
    with av.open(str(src)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=rate)
        return np.concatenate([g.to_ndarray().reshape(-1) for f in c.decode(audio=0) for g in rs.resample(f)])


def write(dst, frames, fps, audio, rate=RATE, audio_start_s=0.0, preset="ultrafast", audio_hole=None):
    """H.264 + PCM (MKV): ``frames`` as [(time_s, rgb)] on a 1/1000 s clock, ``audio`` mono float32.

    ``audio_hole = (start_s, end_s)``: no audio packets there (the timestamps jump over the hole).
    """
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.height, vs.width = frames[0][1].shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "23", "preset": preset}
        aus = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        for t, arr in frames:
            g = av.VideoFrame.from_ndarray(arr, format="rgb24")
            g.pts, g.time_base = int(round(t * 1000)), Fraction(1, 1000)
            out.mux(vs.encode(g))
        out.mux(vs.encode(None))
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        start = int(round(audio_start_s * rate))
        for i in range(0, len(pcm), 4096):
            if audio_hole and audio_hole[0] * rate <= i < audio_hole[1] * rate:
                continue
            g = av.AudioFrame.from_ndarray(pcm[None, i : i + 4096].copy(), format="s16", layout="mono")
            g.sample_rate = rate
            g.pts, g.time_base = start + i, Fraction(1, rate)
            out.mux(aus.encode(g))
        out.mux(aus.encode(None))
    return dst


def fps_of(frames) -> float:
    """Frames per second over the whole span (a median step would read 30 fps on a 1 ms clock as 30.3)."""
    t = [t for t, _ in frames]
    return float(np.round((len(t) - 1) / (t[-1] - t[0]), 3))
