"""Shift the audio of a file against its picture, without touching the picture.

Every stream but audio is copied packet for packet (no re-encode). Each audio
stream is decoded, shifted by a whole number of samples at its own rate, and
re-encoded, in its source codec where FFmpeg has an encoder for it. The total
number of samples is kept, so the file's duration does not change:

* ``offset_ms > 0`` (audio late): the audio is advanced, its first samples are
  dropped and silence pads the end;
* ``offset_ms < 0`` (audio early): silence is inserted at the start and the
  tail beyond the original length is dropped.

The output is written to a temporary file beside the destination and renamed
into place only when complete; the input is never opened for writing.
"""
from __future__ import annotations

import os
from fractions import Fraction
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from avsync.errors import NoAudioError, OutputError, TruncatedMediaError, UsageError
from avsync.media.decode import _ffmsg, _url, open_input, probe
from avsync.util import atomic_output

#: Codecs we re-encode audio into when the source codec has no encoder here.
_FALLBACK_CODEC = {"mp4": "aac", "mov": "aac", "matroska": "flac", "webm": "libopus", "avi": "pcm_s16le"}
#: numpy dtype of each packed sample format (planar ones add a "p").
_SAMPLE_DTYPE = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}
#: Decoder names whose encoder has another name.
_ENCODER_FOR = {"mp3": "libmp3lame", "mp3float": "libmp3lame", "opus": "libopus", "vorbis": "libvorbis"}


@dataclass
class CorrectionReport:
    input: str
    output: str
    offset_ms: float
    #: Per audio stream: codec written, and the shift in samples at its rate.
    audio: list[dict] = field(default_factory=list)
    copied_streams: int = 0
    dropped_streams: list[str] = field(default_factory=list)


def default_output_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.fixed{p.suffix or '.mp4'}")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: Muxers with no way to signal encoder delay (no edit list): lossy encoders
#: would shift the audio by their priming, so PCM is written there instead.
_NO_EDIT_LIST = ("avi",)


def _encoder_name(src_codec: str, out_format: str) -> str:
    if any(f in out_format for f in _NO_EDIT_LIST):
        return "pcm_s16le"
    name = _ENCODER_FOR.get(src_codec, src_codec)
    if name in av.codecs_available:
        try:
            codec = av.Codec(name, "w")
            if codec.type == "audio":
                return name
        except (av.error.FFmpegError, ValueError):
            pass
    for fmt, fallback in _FALLBACK_CODEC.items():
        if fmt in out_format:
            return fallback
    return "aac"


class _AudioShifter:
    """Decode -> shift -> re-encode one audio stream."""

    def __init__(self, in_stream, out_container, shift_samples: int, total_samples: int | None):
        cc = in_stream.codec_context
        self.rate = cc.sample_rate
        self.layout = cc.layout.name
        self.encoder = _encoder_name(cc.name, out_container.format.name)
        self.out = out_container.add_stream(self.encoder, rate=self.rate)
        self.out.layout = self.layout
        if cc.bit_rate and self.encoder not in ("flac",) and not self.encoder.startswith("pcm_"):
            self.out.bit_rate = cc.bit_rate
        fmt = self.out.codec_context.codec.audio_formats
        self.format = fmt[0].name if fmt else "fltp"
        self.out.format = self.format
        self.resampler = av.AudioResampler(format=self.format, layout=self.layout, rate=self.rate)
        self.fifo = av.AudioFifo()
        self.shift = shift_samples  # >0: drop this many; <0: insert this many zeros
        self.to_drop = max(0, shift_samples)
        self.total = total_samples
        self.written = 0  # samples handed to the fifo
        self.next_pts: int | None = None
        self.started = False

    def _silence(self, n: int) -> av.AudioFrame:
        channels = len(av.AudioLayout(self.layout).channels)
        planar = av.AudioFormat(self.format).is_planar
        dtype = _SAMPLE_DTYPE[self.format.rstrip("p")]
        shape = (channels, n) if planar else (1, n * channels)
        frame = av.AudioFrame.from_ndarray(np.zeros(shape, dtype=dtype), format=self.format, layout=self.layout)
        frame.sample_rate = self.rate
        return frame

    def _push(self, frame: av.AudioFrame) -> None:
        n = frame.samples
        if self.total is not None and self.written + n > self.total:
            keep = self.total - self.written
            if keep <= 0:
                return
            frame = self._slice(frame, 0, keep)
            n = keep
        frame.pts = None
        self.fifo.write(frame)
        self.written += n

    def _slice(self, frame: av.AudioFrame, start: int, stop: int) -> av.AudioFrame:
        arr = frame.to_ndarray()
        channels = len(av.AudioLayout(self.layout).channels)
        if av.AudioFormat(self.format).is_planar:
            arr = arr[:, start:stop]
        else:
            arr = arr[:, start * channels : stop * channels]
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=self.format, layout=self.layout)
        out.sample_rate = self.rate
        return out

    def feed(self, frame: av.AudioFrame | None):
        """Take a decoded frame (None at the end); return packets to mux."""
        if frame is not None and not self.started:
            self.started = True
            t = frame.time if frame.time is not None else 0.0
            self.next_pts = int(round(t * self.rate))
            if self.shift < 0:
                self._push(self._silence(-self.shift))
        for rf in self.resampler.resample(frame):
            if self.to_drop:
                if rf.samples <= self.to_drop:
                    self.to_drop -= rf.samples
                    continue
                rf = self._slice(rf, self.to_drop, rf.samples)
                self.to_drop = 0
            self._push(rf)
        if frame is None and self.total is not None and self.written < self.total:
            self._push(self._silence(self.total - self.written))
        return self._encode(final=frame is None)

    def _encode(self, final: bool):
        packets = []
        size = self.out.codec_context.frame_size or 1024
        while self.fifo.samples >= size or (final and self.fifo.samples):
            chunk = self.fifo.read(min(size, self.fifo.samples))
            chunk.pts = self.next_pts
            chunk.time_base = Fraction(1, self.rate)
            self.next_pts += chunk.samples
            packets.extend(self.out.encode(chunk))
        if final:
            packets.extend(self.out.encode(None))
        return packets


def correct(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    offset_ms: float,
    overwrite: bool = False,
) -> CorrectionReport:
    """Write ``dst``: ``src`` with its audio advanced by ``offset_ms`` (delayed if negative).

    Pass the ``offset_ms`` that ``detect`` reported to bring the file into sync.
    """
    src_p = Path(src)
    info = probe(src_p)  # raises for missing / unreadable input
    if not info.has_audio:
        raise NoAudioError(f"no audio stream in {src_p.name}: nothing to shift")
    if not np.isfinite(offset_ms) or abs(offset_ms) > 60_000:
        raise UsageError(f"offset must be a finite number of ms within ±60000, got {offset_ms}")
    dst_p = Path(dst) if dst is not None else default_output_path(src_p)
    if _same_file(src_p, dst_p):
        raise UsageError("the output would overwrite the input; choose another output path")
    if dst_p.exists() and not overwrite:
        raise UsageError(f"output exists (use --overwrite to replace it): {dst_p}")

    report = CorrectionReport(input=str(src_p), output=str(dst_p), offset_ms=float(offset_ms))
    with atomic_output(dst_p) as tmp:
        try:
            _write(src_p, tmp, dst_p.suffix or src_p.suffix, offset_ms, report)
        except av.error.FFmpegError as exc:
            raise OutputError(f"could not write {dst_p.name}: {_ffmsg(exc)}") from None
    return report


def _write(src: Path, tmp: Path, suffix: str, offset_ms: float, report: CorrectionReport) -> None:
    fmt = _format_for_suffix(suffix)
    with open_input(src) as inp, av.open(_url(tmp), mode="w", format=fmt) as out:
        mapping: dict[int, object] = {}
        shifters: dict[int, _AudioShifter] = {}
        for s in inp.streams:
            if s.type == "audio":
                cc = s.codec_context
                shift = int(round(offset_ms / 1000.0 * cc.sample_rate))
                total = None
                if s.duration and s.time_base:
                    total = int(round(float(s.duration * s.time_base) * cc.sample_rate))
                sh = _AudioShifter(s, out, shift, total)
                shifters[s.index] = sh
                mapping[s.index] = sh.out
                report.audio.append({"stream": s.index, "codec": sh.encoder, "rate": cc.sample_rate, "shift_samples": shift})
            else:
                try:
                    mapping[s.index] = out.add_stream_from_template(s)
                    report.copied_streams += 1
                except (ValueError, av.error.FFmpegError) as exc:
                    report.dropped_streams.append(f"#{s.index} {s.type} ({_ffmsg(exc)})")
        try:
            for packet in inp.demux():
                idx = packet.stream.index
                if idx in shifters:
                    for frame in packet.decode():
                        for p in shifters[idx].feed(frame):
                            out.mux(p)
                    continue
                if idx not in mapping or packet.dts is None:
                    continue
                packet.stream = mapping[idx]
                out.mux(packet)
        except av.error.InvalidDataError as exc:
            raise TruncatedMediaError(f"input is corrupt ({_ffmsg(exc)}): {src.name}") from None
        for sh in shifters.values():
            for p in sh.feed(None):
                out.mux(p)


def _format_for_suffix(suffix: str) -> str | None:
    """Muxer for the output's extension (None lets FFmpeg guess from the name)."""
    s = suffix.lower()
    table = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
    return table.get(s)
