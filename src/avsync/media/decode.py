"""Decode audio and video with their timestamps, in bounded memory.

Every time here is in seconds on the container's presentation timeline, so the
audio and video clocks are directly comparable: stream start times, edit lists
and AAC encoder priming (which FFmpeg's demuxer removes through the edit list)
are honoured rather than assumed to be zero.
"""
from __future__ import annotations

import errno
import heapq
import os
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avsync.constants import AUDIO_CHUNK_S, AUDIO_SR, FALLBACK_FPS
from avsync.errors import (
    InputNotFoundError,
    InputUnreadableError,
    NoAudioError,
    NotMediaError,
    NoVideoError,
    TruncatedMediaError,
)

# First bytes of containers FFmpeg reads. A file that starts like one of these
# but cannot be opened is reported as truncated/corrupt rather than "not media".
_MAGIC = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI / WAV
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS sync byte
)


#: Frames held back to restore presentation order of timestamps.
_REORDER_DEPTH = 8


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its headers."""

    path: str
    container: str
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float
    width: int
    height: int
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    video_start_s: float
    audio_start_s: float
    n_video_frames: int
    #: The only picture is a still image (an MP3's or M4A's cover art), not video.
    cover_art_only: bool = False


def _url(path: Path) -> str:
    # An absolute path behind the explicit "file:" protocol: FFmpeg never reads a
    # hostile name ("pipe:1", "concat:...", "http:x") as another protocol.
    return "file:" + str(path.resolve())


def _check_path(path: str | os.PathLike) -> Path:
    """The input, if it is a readable regular file; otherwise the error that says why not.

    Nothing is opened here: opening a FIFO would block until something writes to it.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except PermissionError:
        raise InputUnreadableError(f"cannot reach the input (permission denied): {p}") from None
    except OSError as exc:
        why = {errno.ENAMETOOLONG: " (name too long)", errno.ELOOP: " (symbolic link loop)"}.get(exc.errno, "")
        raise InputNotFoundError(f"input not found{why}: {p}") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotMediaError(f"input is a directory, not a media file: {p}")
    if stat.S_ISFIFO(st.st_mode):
        raise NotMediaError(f"input is a named pipe (FIFO), not a file: avsync reads its input more than once; "
                            f"save the stream to a file first: {p}")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise NotMediaError(f"input is a device, not a media file: {p}")
    if not stat.S_ISREG(st.st_mode):
        raise NotMediaError(f"input is not a regular file: {p}")
    if st.st_size == 0:
        raise NotMediaError(f"input is an empty file: {p}")
    if not os.access(p, os.R_OK):
        raise InputUnreadableError(f"cannot read the input (permission denied): {p}")
    return p


def _looks_like_media(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(16)
    return any(head[off : off + len(sig)] == sig for off, sig in _MAGIC)


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a file for reading, mapping every failure to a specific error."""
    p = _check_path(path)
    try:
        return av.open(_url(p), mode="r", metadata_errors="ignore")
    except av.error.PermissionError:
        raise InputUnreadableError(f"cannot read the input (permission denied): {p}") from None
    except (av.error.InvalidDataError, av.error.EOFError, av.error.PermissionError, ValueError) as exc:
        if _looks_like_media(p):
            raise TruncatedMediaError(f"file is truncated or corrupt ({_ffmsg(exc)}): {p}") from None
        raise NotMediaError(f"not a media file FFmpeg can read ({_ffmsg(exc)}): {p}") from None
    except av.error.FFmpegError as exc:
        raise NotMediaError(f"cannot open as media ({_ffmsg(exc)}): {p}") from None


def is_truncated(end_s: float, declared_s: float) -> bool:
    """Streams that stop well short of the container's declared duration mean a cut file."""
    return declared_s > 0 and end_s < 0.8 * declared_s - 0.5


def _ffmsg(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return str(msg).strip().rstrip(".")


def _stream_start(stream) -> float:
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _is_cover_art(stream) -> bool:
    """A picture attached to an audio file (album art), not video."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def video_stream(container):
    """The first video stream that is real video (cover art skipped), or None."""
    return next((s for s in container.streams.video if not _is_cover_art(s)), None)


def _declared(stream, container) -> bool:
    """The headers promise content for this stream (so none decoding means a cut file)."""
    return bool(stream.frames) or bool(stream.duration) or bool(container.duration)


def _video_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            fps = float(rate)
            if 1.0 <= fps <= 1000.0:
                return fps
    return FALLBACK_FPS


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read a file's stream layout. Raises for missing or unreadable files."""
    p = _check_path(path)
    with open_input(p) as c:
        v = video_stream(c)
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None and not c.streams.video:
            raise NotMediaError(f"file holds neither audio nor video: {p}")
        duration = float(c.duration) / av.time_base if c.duration else 0.0
        fps = _video_fps(v) if v is not None else 0.0
        n_frames = int(v.frames) if v is not None and v.frames else int(round(duration * fps))
        return MediaInfo(
            path=str(p),
            container=c.format.name,
            duration_s=duration,
            has_video=v is not None,
            has_audio=a is not None,
            fps=fps,
            width=int(v.codec_context.width) if v is not None else 0,
            height=int(v.codec_context.height) if v is not None else 0,
            video_codec=v.codec_context.name if v is not None else None,
            audio_codec=a.codec_context.name if a is not None else None,
            audio_sample_rate=int(a.codec_context.sample_rate) if a is not None else None,
            audio_channels=int(a.codec_context.channels) if a is not None else None,
            video_start_s=_stream_start(v) if v is not None else 0.0,
            audio_start_s=_stream_start(a) if a is not None else 0.0,
            n_video_frames=n_frames,
            cover_art_only=v is None and bool(c.streams.video),
        )


#: A hole in the audio longer than this (s) is filled with silence.
AUDIO_GAP_S = 0.05


#: Share of a stream's packets that may fail to decode with the damage still counted as local
#: (concealed, as players do); more than this and the file is reported as corrupt.
MAX_DAMAGED_SHARE = 0.2


def _decode_concealing(c, stream, name: str, damaged: list):
    """Decode ``stream`` packet by packet, skipping packets that fail (local damage) as players do.

    Each skipped packet's span ``(start_s, end_s)`` on the container clock is appended to
    ``damaged``. Damage beyond ``MAX_DAMAGED_SHARE`` of the packets is a corrupt file.
    """
    bad = total = 0
    for packet in c.demux(stream):
        total += 1
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            bad += 1
            if bad > 25 and bad > MAX_DAMAGED_SHARE * total:  # not local: stop early
                raise TruncatedMediaError(f"{stream.type} stream is corrupt ({_ffmsg(exc)}): {name}") from None
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and packet.time_base:
                start = float(ts * packet.time_base)
                damaged.append((start, start + float((packet.duration or 0) * packet.time_base)))
            continue
        yield from frames
    if bad > 2 and bad > MAX_DAMAGED_SHARE * total:
        raise TruncatedMediaError(f"{stream.type} stream is corrupt ({bad} of {total} packets unreadable): {name}")


def iter_audio_chunks(
    path: str | os.PathLike, sr: int = AUDIO_SR, chunk_s: float = AUDIO_CHUNK_S, damaged: list | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_time_s, mono float32 samples at sr)`` chunks, contiguous in time.

    The first chunk's start time is the first decoded audio frame's
    presentation time; every later chunk follows it sample for sample. A hole
    in the audio (a frame that starts more than ``AUDIO_GAP_S`` after the
    previous one ends) is filled with silence, as players do, so the audio after
    it stays at its own time; so are packets that fail to decode (their spans
    are appended to ``damaged``).
    """
    damaged = [] if damaged is None else damaged
    p = _check_path(path)
    with open_input(p) as c:
        if not c.streams.audio:
            raise NoAudioError(f"no audio stream in {p.name}")
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunk_len = max(1, int(round(chunk_s * sr)))
        pending: list[np.ndarray] = []
        n_pending = 0
        t0: float | None = None
        emitted = 0
        n_damaged = len(damaged)
        try:
            for frame in _decode_concealing(c, stream, p.name, damaged):
                if t0 is None:
                    t0 = float(frame.time) if frame.time is not None else _stream_start(stream)
                elif frame.time is not None:
                    lost = len(damaged) > n_damaged  # packets lost to damage since the last frame
                    n_damaged = len(damaged)
                    gap = float(frame.time) - (t0 + (emitted + n_pending) / sr)
                    if gap > AUDIO_GAP_S or (lost and gap > 0):
                        pending.append(np.zeros(int(round(gap * sr)), np.float32))
                        n_pending += pending[-1].size
                for rf in resampler.resample(frame):
                    pending.append(rf.to_ndarray().reshape(-1))
                    n_pending += pending[-1].size
                if n_pending >= chunk_len:
                    data = np.concatenate(pending)
                    cut = (data.size // chunk_len) * chunk_len
                    for i in range(0, cut, chunk_len):
                        yield t0 + emitted / sr, data[i : i + chunk_len]
                        emitted += chunk_len
                    pending, n_pending = [data[cut:]], data.size - cut
            for rf in resampler.resample(None):
                pending.append(rf.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(f"audio stream is corrupt ({_ffmsg(exc)}): {p.name}") from None
        if t0 is None:
            if _declared(stream, c):
                raise TruncatedMediaError(f"file is truncated: its audio stream holds no data: {p.name}")
            raise NoAudioError(f"the audio stream of {p.name} holds no decodable samples")
        rest = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if rest.size or emitted == 0:
            yield t0 + emitted / sr, rest


def read_audio(path: str | os.PathLike, sr: int = AUDIO_SR) -> tuple[float, np.ndarray]:
    """Whole audio track as ``(start_time_s, mono float32)``. For short files and tests."""
    parts = list(iter_audio_chunks(path, sr=sr))
    return parts[0][0], np.concatenate([x for _, x in parts])


def iter_video_frames(
    path: str | os.PathLike, max_fps: float | None = None, damaged: list | None = None
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """Yield ``(frame_index, time_s, frame)`` for every decoded video frame.

    With ``max_fps``, frames closer than ``1/max_fps`` to the last yielded one
    are skipped (they are still decoded: inter-coded video needs them), so the
    indices then count yielded frames. Timestamps are always the frames' own.
    Packets that fail to decode are skipped, their spans appended to ``damaged``.
    """
    damaged = [] if damaged is None else damaged
    p = _check_path(path)
    with open_input(p) as c:
        stream = video_stream(c)
        if stream is None:
            raise NoVideoError(f"no video stream in {p.name}")
        stream.thread_type = "AUTO"
        min_gap = (1.0 / max_fps) * 0.999 if max_fps else 0.0
        last_t = -np.inf
        idx = 0
        fallback_dt = 1.0 / _video_fps(stream)
        guess_t = _stream_start(stream)
        # Decoders emit frames in presentation order, but some containers (AVI
        # with B-frames) stamp them with decode-order times. Keep a short delay
        # line and give the k-th frame out the k-th smallest time seen.
        held: deque = deque()
        stamps: list[float] = []

        def emit(frame):
            nonlocal last_t, idx
            t = heapq.heappop(stamps)
            if t - last_t < min_gap:
                return None
            last_t = t
            idx += 1
            return idx - 1, t, frame

        try:
            for frame in _decode_concealing(c, stream, p.name, damaged):
                t = float(frame.time) if frame.time is not None else guess_t
                guess_t = t + fallback_dt
                held.append(frame)
                heapq.heappush(stamps, t)
                if len(held) > _REORDER_DEPTH:
                    item = emit(held.popleft())
                    if item:
                        yield item
            while held:
                item = emit(held.popleft())
                if item:
                    yield item
        except av.error.FFmpegError as exc:
            raise TruncatedMediaError(f"video stream is corrupt ({_ffmsg(exc)}): {p.name}") from None
        if idx == 0 and _declared(stream, c):
            raise TruncatedMediaError(f"file is truncated: its video stream holds no frames: {p.name}")
        if idx == 0:
            raise NoVideoError(f"the video stream of {p.name} holds no decodable frames")
