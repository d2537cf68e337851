"""Make desynchronised trials from in-sync clips, as benchmark-protocol.md says.

The shift is baked into the content by trimming; nothing is padded and no
container timestamp is bent. For audio lagging by ``k`` frames (k > 0) the
first k video frames and the last k frames' worth of audio are dropped; for
k < 0 the last |k| video frames and the first |k| frames' worth of audio. Both
streams then start at t = 0. The truth is ``offset_ms = k * 1000 / fps``.

MKV trials carry PCM s16 audio (no codec delay); MP4 trials carry AAC, whose
priming the MP4 edit list describes.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avsync.errors import NoAudioError, NoVideoError, UsageError
from avsync.media.decode import _url, iter_video_frames, open_input, probe

#: Offsets of the standard pass, in frames (benchmark-protocol.md).
STANDARD_OFFSETS = (-15, -11, -7, -4, -2, 0, 2, 4, 7, 11, 15)
#: Offsets added by the extended-range pass.
EXTENDED_OFFSETS = (-25, -20, 20, 25)


@dataclass(frozen=True)
class Trial:
    path: str
    source: str
    k_frames: int
    fps: float
    truth_ms: float


def make_trial(src: str | os.PathLike, dst: str | os.PathLike, k_frames: int, *, crf: int = 18) -> Trial:
    """Write ``dst`` (.mkv: H.264 + PCM s16; .mp4: H.264 + AAC) with audio lagging by ``k_frames``."""
    src, dst = Path(src), Path(dst)
    info = probe(src)
    if not info.has_video:
        raise NoVideoError(f"no video stream in {src.name}")
    if not info.has_audio:
        raise NoAudioError(f"no audio stream in {src.name}")
    suffix = dst.suffix.lower()
    if suffix not in (".mkv", ".mp4"):
        raise UsageError("trials are written as .mkv (PCM) or .mp4 (AAC)")
    fps = info.fps
    k = int(k_frames)
    if abs(k) * 3 >= max(info.n_video_frames, 1):
        raise UsageError(f"clip too short for a {k}-frame trial: {src.name}")
    audio_codec = "pcm_s16le" if suffix == ".mkv" else "aac"

    # Audio at its native rate, with the presentation time of its first sample.
    with open_input(src) as c:
        a_in = c.streams.audio[0]
        rate = a_in.codec_context.sample_rate
        layout = a_in.codec_context.layout.name
        if layout not in ("mono", "stereo"):
            layout = "stereo"
        res = av.AudioResampler(format="s16", layout=layout, rate=rate)
        a0 = None
        chunks = []
        for fr in c.decode(a_in):
            if a0 is None:
                a0 = float(fr.time) if fr.time is not None else 0.0
            chunks += [f.to_ndarray() for f in res.resample(fr)]
        chunks += [f.to_ndarray() for f in res.resample(None)]
    if a0 is None:
        raise NoAudioError(f"the audio stream of {src.name} holds no decodable samples")
    channels = 1 if layout == "mono" else 2
    audio = np.concatenate(chunks, axis=1).reshape(-1, channels)  # packed s16 -> (n, ch)
    cut = int(round(abs(k) * rate / fps))

    # Source streams may start at different times (a clip whose picture starts
    # 0.8 s after its sound, say). Both are first cut to a common start, the
    # first video frame at or after the first audio sample, so that the trial's
    # t = 0 is the same instant in both; then the k-frame trim is applied.
    tmp = dst.with_name(f".{dst.name}.part{suffix}")
    tb = Fraction(1, 90_000)
    try:
        with av.open(_url(tmp), "w") as out:
            v_out = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            v_out.width = info.width // 2 * 2
            v_out.height = info.height // 2 * 2
            v_out.pix_fmt = "yuv420p"
            v_out.time_base = tb
            v_out.codec_context.time_base = tb
            v_out.options = {"crf": str(crf), "preset": "veryfast"}
            a_out = out.add_stream(audio_codec, rate=rate)
            a_out.layout = layout
            if audio_codec == "aac":
                a_out.bit_rate = 192_000
            held: deque = deque()
            t_first = None
            n_seen = 0
            for _, t, frame in iter_video_frames(src):
                if t < a0 - 1e-6:  # picture before the sound starts
                    continue
                n_seen += 1
                if k > 0 and n_seen <= k:
                    if n_seen == 1:
                        audio = audio[int(round((t - a0) * rate)) :]
                    continue
                held.append((t, frame))
                if k < 0 and len(held) <= -k:
                    continue
                t_f, f = held.popleft()
                if t_first is None:
                    t_first = t_f
                    if k <= 0:
                        audio = audio[int(round((t_f - a0) * rate)) :]
                g = f.reformat(width=v_out.width, height=v_out.height, format="yuv420p")
                g.pts = int(round((t_f - t_first) / tb))
                g.time_base = tb
                out.mux(v_out.encode(g))
            out.mux(v_out.encode(None))
            audio = audio[: len(audio) - cut] if k > 0 else audio[cut:]
            _write_audio(out, a_out, audio, rate, layout)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Trial(str(dst), str(src), k, fps, k * 1000.0 / fps)


def _write_audio(out, stream, audio: np.ndarray, rate: int, layout: str) -> None:
    fmt = stream.codec_context.codec.audio_formats[0].name
    res = av.AudioResampler(format=fmt, layout=layout, rate=rate)
    fifo = av.AudioFifo()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.reshape(1, -1)), format="s16", layout=layout)
    frame.sample_rate = rate
    for f in res.resample(frame) + res.resample(None):
        f.pts = None
        fifo.write(f)
    size = stream.codec_context.frame_size or 1024
    pts = 0
    while fifo.samples:
        chunk = fifo.read(min(size, fifo.samples))
        chunk.pts = pts
        chunk.time_base = Fraction(1, rate)
        pts += chunk.samples
        out.mux(stream.encode(chunk))
    out.mux(stream.encode(None))
