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

import errno
import os
from fractions import Fraction
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from avsync.correct.warp import AudioWarp, WarpPlan
from avsync.errors import NoAudioError, OutputError, TruncatedMediaError, UsageError
from avsync.media.decode import AUDIO_GAP_S, MAX_DAMAGED_SHARE, _ffmsg, _url, is_truncated, open_input, probe
from avsync.util import atomic_output, fit_bytes, merge_spans, name_max

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
    #: The offset over time that was applied (``SyncResult.timeline``), None for one constant shift.
    timeline: dict | None = None
    #: Audio spans (start_s, end_s) that could not be decoded: written as silence of the same length.
    damaged: list = field(default_factory=list)


def default_output_path(path: str | os.PathLike) -> Path:
    """NAME.fixed.EXT beside the input; NAME is shortened where the whole would not fit in a file name."""
    p = Path(path)
    tail = f".fixed{p.suffix or '.mp4'}"
    room = name_max(p.parent if str(p.parent) else ".") - len(os.fsencode(tail))
    stem = fit_bytes(p.stem, room) if room > 0 else ""
    if not stem:
        raise UsageError(f"no default output name fits beside {p.name}: give one with -o")
    return p.with_name(stem + tail)


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputError(f"output name too long for the file system: {path}") from None
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            return False
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return _exists(b) and os.path.samefile(a, b)
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
    """Decode -> shift -> re-encode one audio stream, keeping its sample count.

    Advancing (shift > 0) drops the first ``shift`` samples and pads as many
    zeros at the end; delaying (shift < 0) inserts zeros at the start and holds
    back the last |shift| samples, which are dropped at the end.
    """

    def __init__(self, in_stream, out_container, shift_samples: int):
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
        self.channels = len(av.AudioLayout(self.layout).channels)
        self.planar = av.AudioFormat(self.format).is_planar
        self.resampler = av.AudioResampler(format=self.format, layout=self.layout, rate=self.rate)
        self.fifo = av.AudioFifo()
        self.shift = shift_samples
        self.to_drop = max(0, shift_samples)
        self.hold_back = max(0, -shift_samples)
        self.next_pts: int | None = None
        self.start_s: float | None = None  # the first decoded frame's time
        self.fed = 0  # input samples taken since then: decoded, concealed and filled holes

    def _silence(self, n: int) -> av.AudioFrame:
        dtype = _SAMPLE_DTYPE[self.format.rstrip("p")]
        shape = (self.channels, n) if self.planar else (1, n * self.channels)
        return self._frame(np.zeros(shape, dtype=dtype))

    def _frame(self, arr: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=self.format, layout=self.layout)
        frame.sample_rate = self.rate
        return frame

    def _tail(self, frame: av.AudioFrame, start: int) -> av.AudioFrame:
        arr = frame.to_ndarray()
        return self._frame(arr[:, start:] if self.planar else arr[:, start * self.channels :])

    def _push(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        self.fifo.write(frame)

    def _hole(self, frame: av.AudioFrame | None) -> int:
        """Samples missing before ``frame``: a hole in the stream (the frame starts more than ``AUDIO_GAP_S``
        after the audio so far ends) is filled with silence of its length, as ``detect`` and players do, so what
        follows stays at its own time. Counts the frame as taken."""
        if frame is None:
            return 0
        n = 0
        if self.start_s is None:
            self.start_s = float(frame.time) if frame.time is not None else 0.0
        elif frame.time is not None:
            gap = int(round((float(frame.time) - self.start_s) * self.rate)) - self.fed
            n = gap if gap > AUDIO_GAP_S * self.rate else 0
        self.fed += n + frame.samples
        return n

    def _fill(self, n: int) -> None:
        """``n`` samples of silence in the input's place (lost or missing audio)."""
        if self.to_drop:
            dropped = min(n, self.to_drop)
            self.to_drop -= dropped
            n -= dropped
        if n:
            self._push(self._silence(n))

    def feed(self, frame: av.AudioFrame | None):
        """Take a decoded frame (None at the end); return packets to mux."""
        if frame is not None and self.next_pts is None:
            t = frame.time if frame.time is not None else 0.0
            self.next_pts = int(round(t * self.rate))
            if self.shift < 0:
                self._push(self._silence(-self.shift))
        hole = self._hole(frame)
        if hole:
            self._fill(hole)
        for rf in self.resampler.resample(frame):
            if self.to_drop:
                if rf.samples <= self.to_drop:
                    self.to_drop -= rf.samples
                    continue
                rf = self._tail(rf, self.to_drop)
                self.to_drop = 0
            self._push(rf)
        final = frame is None
        if final and self.shift > 0 and self.next_pts is not None:
            self._push(self._silence(self.shift))
        return self._encode(final)

    def conceal(self, n: int):
        """A packet of ``n`` samples that could not be decoded: silence of its length keeps the timing."""
        if self.next_pts is None or n <= 0:  # nothing decoded yet: the first good frame sets the start
            return []
        self.fed += n
        self._fill(n)
        return self._encode(False)

    def _encode(self, final: bool):
        packets = []
        if self.next_pts is None:  # the stream held no audio at all
            return packets
        size = self.out.codec_context.frame_size or 1024
        while self.fifo.samples - self.hold_back > 0:
            n = min(size, self.fifo.samples - self.hold_back)
            if n < size and not final:
                break
            chunk = self.fifo.read(n)
            chunk.pts = self.next_pts
            chunk.time_base = Fraction(1, self.rate)
            self.next_pts += chunk.samples
            packets.extend(self.out.encode(chunk))
        if final:
            packets.extend(self.out.encode(None))
        return packets


class _AudioWarper(_AudioShifter):
    """Decode -> apply an offset that changes over time (``correct.warp``) -> re-encode, keeping the length."""

    def __init__(self, in_stream, out_container, timeline: dict, video_start_s: float):
        super().__init__(in_stream, out_container, 0)
        self.timeline = timeline
        self.video_start_s = video_start_s
        self.to_float = av.AudioResampler(format="flt", layout=self.layout, rate=self.rate)
        self.warp: AudioWarp | None = None
        self.plan: WarpPlan | None = None

    def _fill(self, n: int) -> None:
        """Lost or missing input goes through the warp like the audio around it (it sits in the input's time)."""
        self._emit(self.warp.push(np.zeros((n, self.channels), np.float32)))

    def _emit(self, block: np.ndarray) -> None:
        if len(block):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.reshape(1, -1)), format="flt",
                                           layout=self.layout)
            f.sample_rate = self.rate
            for rf in self.resampler.resample(f):
                self._push(rf)

    def feed(self, frame: av.AudioFrame | None):
        if frame is not None and self.warp is None:
            t = frame.time if frame.time is not None else 0.0
            self.next_pts = int(round(t * self.rate))
            self.plan = WarpPlan.from_timeline(self.timeline, self.rate, t, self.video_start_s)
            self.warp = AudioWarp(self.plan, self.rate, self.channels)
        if self.warp is None:  # the stream held no audio at all
            return self._encode(frame is None)
        hole = self._hole(frame)
        if hole:
            self._fill(hole)
        for rf in self.to_float.resample(frame):
            self._emit(self.warp.push(rf.to_ndarray().reshape(-1, self.channels)))
        if frame is None:
            self._emit(self.warp.finish())
            for rf in self.resampler.resample(None):
                self._push(rf)
        return self._encode(frame is None)


def correct(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    offset_ms: float,
    overwrite: bool = False,
    timeline: dict | None = None,
) -> CorrectionReport:
    """Write ``dst``: ``src`` with its audio advanced by ``offset_ms`` (delayed if negative).

    Pass the ``offset_ms`` that ``detect`` reported to bring the file into sync.
    With a ``timeline`` (``SyncResult.timeline``) whose kind is ``linear`` or
    ``piecewise``, the offset that changes over time is applied instead: drift
    by resampling (rate and length kept), edits by per-piece shifts with a short
    crossfade at each change point.
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
    if _exists(dst_p) and not overwrite:
        raise UsageError(f"output exists (use --overwrite to replace it): {dst_p}")

    if dst_p.suffix.lower() not in _MUXER_FOR_SUFFIX:
        raise UsageError(f"cannot write a {dst_p.suffix or 'suffix-less'} file; use one of "
                         + ", ".join(sorted(_MUXER_FOR_SUFFIX)))
    if timeline is not None and timeline.get("kind") not in ("constant", "linear", "piecewise"):
        raise UsageError(f"unknown timeline kind {timeline.get('kind')!r}")
    varying = timeline if timeline is not None and timeline["kind"] != "constant" else None
    report = CorrectionReport(input=str(src_p), output=str(dst_p), offset_ms=float(offset_ms),
                              timeline=varying)
    with atomic_output(dst_p) as tmp:
        try:
            _write(src_p, tmp, dst_p.suffix, offset_ms, report, varying, info.video_start_s)
        except av.error.FFmpegError as exc:
            raise OutputError(f"could not write {dst_p.name}: {_ffmsg(exc)}") from None
    return report


def _write(src: Path, tmp: Path, suffix: str, offset_ms: float, report: CorrectionReport,
           timeline: dict | None = None, video_start_s: float = 0.0) -> None:
    fmt = _MUXER_FOR_SUFFIX[suffix.lower()]
    with open_input(src) as inp, av.open(_url(tmp), mode="w", format=fmt) as out:
        mapping: dict[int, object] = {}
        shifters: dict[int, _AudioShifter] = {}
        for s in inp.streams:
            if s.type == "audio":
                cc = s.codec_context
                if timeline is not None:
                    sh = _AudioWarper(s, out, timeline, video_start_s)
                    report.audio.append({"stream": s.index, "codec": sh.encoder, "rate": cc.sample_rate,
                                         "timeline": timeline["kind"]})
                else:
                    shift = int(round(offset_ms / 1000.0 * cc.sample_rate))
                    sh = _AudioShifter(s, out, shift)
                    report.audio.append({"stream": s.index, "codec": sh.encoder, "rate": cc.sample_rate,
                                         "shift_samples": shift})
                shifters[s.index] = sh
                mapping[s.index] = sh.out
            else:
                try:
                    mapping[s.index] = out.add_stream_from_template(s)
                    report.copied_streams += 1
                except (ValueError, av.error.FFmpegError) as exc:
                    report.dropped_streams.append(f"#{s.index} {s.type} ({_ffmsg(exc)})")
        ends: dict[int, float] = {}
        n_bad = n_audio = 0
        try:
            for packet in inp.demux():
                idx = packet.stream.index
                if packet.stream.type in ("audio", "video") and packet.pts is not None and packet.time_base:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    ends[idx] = max(ends.get(idx, end), end)
                if idx in shifters:
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:  # local damage: silence in its place, as players do
                        frames = []
                        n_bad += 1
                        tb, rate = packet.time_base, shifters[idx].rate
                        if packet.pts is not None and tb:
                            start = float(packet.pts * tb)
                            report.damaged.append((round(start, 3), round(start + float((packet.duration or 0) * tb), 3)))
                        for p in shifters[idx].conceal(int(round(float((packet.duration or 0) * (tb or 0)) * rate))):
                            out.mux(p)
                    n_audio += 1
                    for frame in frames:
                        for p in shifters[idx].feed(frame):
                            out.mux(p)
                    continue
                # Demuxers end each stream with an empty flush packet; Matroska
                # gives real packets without dts, which must be kept.
                if idx not in mapping or packet.size == 0:
                    continue
                packet.stream = mapping[idx]
                out.mux(packet)
        except av.error.InvalidDataError as exc:
            raise TruncatedMediaError(f"input is corrupt ({_ffmsg(exc)}): {src.name}") from None
        report.damaged = [(round(a, 2), round(b, 2)) for a, b in merge_spans(report.damaged)]
        if n_bad > 2 and n_bad > MAX_DAMAGED_SHARE * n_audio:
            raise TruncatedMediaError(f"audio is corrupt ({n_bad} of {n_audio} packets unreadable): {src.name}")
        for sh in shifters.values():
            for p in sh.feed(None):
                out.mux(p)
        declared = float(inp.duration) / av.time_base if inp.duration else 0.0
        start = float(inp.start_time) / av.time_base if inp.start_time else 0.0
        if declared > 0 and not ends:
            raise TruncatedMediaError(f"file is truncated: it holds no audio or video data: {src.name}")
        if ends and is_truncated(min(ends.values()) - start, declared):
            raise TruncatedMediaError(
                f"file is truncated: streams end at {min(ends.values()) - start:.1f} s of a declared "
                f"{declared:.1f} s: {src.name}")


#: Output extensions ``correct`` writes, and their muxers.
_MUXER_FOR_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".avi": "avi", ".ts": "mpegts", ".flv": "flv"}
