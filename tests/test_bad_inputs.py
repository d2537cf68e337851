"""A bad-input suite: hostile files, names and folders made at test time, each run through the CLI.

Every case is generated here, once per session, from real clips in ../shared/data (trimmed to about
2 s with PyAV) or from scratch, each in a folder of its own. All the CLI runs happen once, in parallel
child processes, in a module-scoped fixture; the tests then check, per case:

* the exit code a careful user expects;
* on failure, exactly one ``avsync:`` line on stderr, and never a traceback;
* the input's sha256 unchanged;
* no stray temporary files, and no file written but the expected output.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avsync.errors import (
    InputNotFoundError,
    NoAudioError,
    NoFaceError,
    NoSpeechError,
    NotMediaError,
    NoVideoError,
    OutputError,
    TooShortError,
    TruncatedMediaError,
    UsageError,
)
from conftest import REPO, assert_cli_error, clip_path, grid_clip, sha256

OK = 0
#: A 5 s dev clip read well by the default model (HDTF-style, 25 fps).
TALK = "dev/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


@dataclass
class Case:
    name: str
    args: list  # CLI arguments; "{in}" is replaced by the input path, "{dir}" by the case folder
    code: int
    input: Path | None = None
    #: Files (names in the case folder) the run is expected to create.
    creates: tuple = ()
    #: Extra check on the finished run.
    check: object = None
    folder: Path | None = None
    setup: object = None  # called just before the run (FIFO writers)
    teardown: object = None
    hash_input: bool = True
    result: dict = field(default_factory=dict)


# --- making media ---------------------------------------------------------------------------------------


def trim(src, dst, max_t=2.0, kinds=("video", "audio"), options=None, fmt=None):
    """Packet-for-packet copy of ``src``'s first ``max_t`` seconds (no re-encode)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        out = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in kinds}
        for pk in i.demux():
            if pk.stream.index not in out or pk.size == 0 or pk.dts is None:
                continue
            if pk.pts is not None and float(pk.pts * pk.time_base) >= max_t:
                continue
            pk.stream = out[pk.stream.index]
            o.mux(pk)


def decode_frames(src, max_t=2.0):
    """(RGB frames, fps) of the first max_t seconds."""
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        fps = float(v.average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v) if f.time is None or f.time < max_t]
    return frames, fps


def decode_audio(src, rate, max_t=2.0):
    """Mono float32 audio of the first max_t seconds, resampled to ``rate``."""
    with av.open(str(src)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = [g.to_ndarray().ravel() for f in list(c.decode(audio=0)) + [None] for g in res.resample(f)]
    return np.concatenate(parts)[: int(max_t * rate)]


def encode(dst, frames=None, fps=25, audio=None, rate=16000, vcodec="libx264", acodec="aac", fmt=None,
           size=None):
    """Write frames (RGB arrays) and/or mono float audio to ``dst``."""
    with av.open(str(dst), "w", format=fmt) as o:
        vs = as_ = None
        if frames is not None:
            vs = o.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
            h, w = (size or frames[0].shape[:2])
            vs.width, vs.height = w, h
            vs.pix_fmt = "yuv420p"
        if audio is not None:
            as_ = o.add_stream(acodec, rate=rate)
            as_.layout = "mono"
        if vs is not None:
            for f in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                if size is not None:
                    vf = vf.reformat(width=size[1], height=size[0])
                for p in vs.encode(vf):
                    o.mux(p)
            for p in vs.encode(None):
                o.mux(p)
        if as_ is not None:
            fmt_name = as_.codec_context.codec.audio_formats[0].name
            res = av.AudioResampler(format=fmt_name, layout="mono", rate=rate)
            step = as_.codec_context.frame_size or 1024
            for i in range(0, len(audio), step):
                af = av.AudioFrame.from_ndarray(audio[None, i : i + step].astype(np.float32), format="flt",
                                                layout="mono")
                af.sample_rate = rate
                for g in res.resample(af):
                    for p in as_.encode(g):
                        o.mux(p)
            for g in res.resample(None):
                for p in as_.encode(g):
                    o.mux(p)
            for p in as_.encode(None):
                o.mux(p)


def mp3_with_cover(src, dst):
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        a = o.add_stream("libmp3lame", rate=44100)
        a.layout = "mono"
        v = o.add_stream("png")
        v.width = v.height = 64
        v.pix_fmt = "rgb24"
        v.disposition = av.stream.Disposition.attached_pic
        for p in v.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")):
            o.mux(p)
        res = av.AudioResampler(format="s16p", layout="mono", rate=44100)
        for f in list(i.decode(audio=0)) + [None]:
            for g in res.resample(f):
                g.pts = None
                for p in a.encode(g):
                    o.mux(p)
        for p in a.encode(None):
            o.mux(p)


def atoms(data: bytes) -> list[tuple[bytes, int, int]]:
    out, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        out.append((data[i + 4 : i + 8], i, size))
        if size < 8:
            break
        i += size
    return out


def damage(data: bytes, at: float, n: int = 16384, seed: int = 0) -> bytes:
    b = bytearray(data)
    start = int(at * len(b))
    b[start : start + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


# --- the cases ---------------------------------------------------------------------------------------------


def _json_has(key, pred):
    def check(proc, case):
        d = json.loads(proc.stdout)
        assert pred(d[key]), (key, d[key])
    return check


def _output_plays(name):
    def check(proc, case):
        with av.open(str(case.folder / name)) as c:
            assert c.streams.audio, "the output lost its audio"
            assert sum(1 for _ in c.demux(c.streams.audio[0])) > 10
    return check


def build_cases(root: Path) -> list[Case]:
    grid = grid_clip("lwbsza")
    talk = clip_path(TALK)
    cases: list[Case] = []

    def case(name, args, code, make=None, input_name=None, **kw) -> Case:
        folder = root / name
        folder.mkdir()
        inp = None
        if input_name is not None:
            inp = folder / input_name
            if make is not None:
                make(inp)
        c = Case(name=name, args=args, code=code, input=inp, folder=folder, **kw)
        cases.append(c)
        return c

    src = root / "_src"
    src.mkdir()
    base = src / "base.mp4"  # 2 s of a real GRID clip, moov at the end
    trim(grid, base)
    fast = src / "fast.mp4"  # the same, moov first
    trim(grid, fast, options={"movflags": "faststart"})
    talk2 = src / "talk2.mp4"  # 2 s of a dev clip
    trim(talk, talk2)
    frames, fps = decode_frames(grid)
    rate = 16000
    audio = decode_audio(grid, rate)
    copy = lambda s: (lambda p: shutil.copyfile(s, p))  # noqa: E731
    write = lambda data: (lambda p: p.write_bytes(data))  # noqa: E731
    D = ["detect", "{in}"]

    # -- not there, not files
    case("missing", D, InputNotFoundError.exit_code, input_name="nothing.mp4", hash_input=False)
    case("name-too-long", ["detect", "{dir}/" + "n" * 300 + ".mp4"], InputNotFoundError.exit_code)
    case("dangling-symlink", D, InputNotFoundError.exit_code, input_name="dangling.mp4",
         make=lambda p: os.symlink(p.with_name("gone.mp4"), p), hash_input=False)
    case("symlink-loop", D, InputNotFoundError.exit_code, input_name="loop.mp4",
         make=lambda p: os.symlink(p, p), hash_input=False)
    case("directory", D, NotMediaError.exit_code, input_name="folder.mp4", make=lambda p: p.mkdir(),
         hash_input=False)
    says = lambda words: (lambda proc, c: _says(proc, words))  # noqa: E731
    case("dev-zero", ["detect", "/dev/zero"], NotMediaError.exit_code, check=says("is a device"))
    case("dev-null", ["detect", "/dev/null"], NotMediaError.exit_code, check=says("is a device"))
    case("fifo-no-writer", D, NotMediaError.exit_code, input_name="fifo.mp4", make=lambda p: os.mkfifo(p),
         hash_input=False, check=says("named pipe (FIFO)"))
    fed = case("fifo-fed-a-clip", D, NotMediaError.exit_code, input_name="fed.mp4", make=lambda p: os.mkfifo(p),
               hash_input=False, check=says("named pipe (FIFO)"))
    fed.setup, fed.teardown = _fifo_writer(fed.input, base)

    # -- not media
    case("empty", D, NotMediaError.exit_code, input_name="empty.mp4", make=write(b""), check=says("empty file"))
    case("one-byte", D, NotMediaError.exit_code, input_name="one.mp4", make=write(b"\x00"))
    case("text-as-mp4", D, NotMediaError.exit_code, input_name="notes.mp4", make=write(b"not a video\n" * 100))
    case("random-bytes", D, NotMediaError.exit_code, input_name="noise.mkv",
         make=write(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()))
    case("html-as-mp4", D, NotMediaError.exit_code, input_name="page.mp4",
         make=write(b"<!DOCTYPE html><html><body>" + b"x" * 5000 + b"</body></html>"))

    # -- truncated and damaged
    data_end, data_fast = base.read_bytes(), fast.read_bytes()
    for frac in (0.1, 0.5, 0.9):
        case(f"truncated-{int(frac * 100)}pc-moov-at-end", D, TruncatedMediaError.exit_code,
             input_name="cut.mp4", make=write(data_end[: int(frac * len(data_end))]))
    for frac in (0.1, 0.4):
        case(f"truncated-{int(frac * 100)}pc-faststart", D, TruncatedMediaError.exit_code,
             input_name="cut.mp4", make=write(data_fast[: int(frac * len(data_fast))]))
    moov_end = [a for a in atoms(data_fast) if a[0] == b"moov"][0]
    header_only = data_fast[: moov_end[1] + moov_end[2]]
    case("header-only-mp4", D, TruncatedMediaError.exit_code, input_name="header.mp4", make=write(header_only))
    case("header-only-mp4-fix", ["fix", "{in}", "--offset-ms", "40"], TruncatedMediaError.exit_code,
         input_name="header.mp4", make=write(header_only))
    case("ftyp-only", D, TruncatedMediaError.exit_code, input_name="ftyp.mp4",
         make=write(data_fast[: atoms(data_fast)[0][2]]))
    talk_full = talk.read_bytes()
    case("damaged-16k-middle", ["detect", "--json", "{in}"], OK, input_name="damaged.mp4",
         make=write(damage(talk_full, 0.5)),
         check=_json_has("damaged", lambda spans: len(spans) >= 1 and all(b >= a for a, b in spans)))
    case("damaged-16k-middle-fix", ["fix", "{in}", "--offset-ms", "40"], OK, input_name="damaged.mp4",
         make=write(damage(talk_full, 0.5)), creates=("damaged.fixed.mp4",),
         check=_output_plays("damaged.fixed.mp4"))

    # -- wrong or missing streams
    case("audio-only-m4a", D, NoVideoError.exit_code, input_name="voice.m4a",
         make=lambda p: trim(grid, p, kinds=("audio",)))
    case("audio-only-wav-named-mp4", D, NoVideoError.exit_code, input_name="voice.mp4",
         make=lambda p: encode(p, audio=audio, rate=rate, acodec="pcm_s16le", fmt="wav"))
    case("mp3-with-cover-art", D, NoVideoError.exit_code, input_name="song.mp3",
         make=lambda p: mp3_with_cover(grid, p),
         check=says("audio with a still image (cover art)"))
    case("video-only", D, NoAudioError.exit_code, input_name="mute.mp4",
         make=lambda p: trim(grid, p, kinds=("video",)))
    case("video-only-fix", ["fix", "{in}", "--offset-ms", "40"], NoAudioError.exit_code, input_name="mute.mp4",
         make=lambda p: trim(grid, p, kinds=("video",)))
    case("still-image-as-mp4", D, NoAudioError.exit_code, input_name="photo.mp4",
         make=lambda p: p.write_bytes(cv2.imencode(".png", frames[0][:, :, ::-1])[1].tobytes()))
    case("silent-audio", D, NoSpeechError.exit_code, input_name="silent.mp4",
         make=lambda p: encode(p, frames=frames, fps=fps, audio=np.zeros_like(audio), rate=rate))
    case("no-face-noise-video", D, NoFaceError.exit_code, input_name="noise.mp4",
         make=lambda p: encode(p, frames=[np.random.default_rng(i).integers(0, 256, (96, 128, 3), np.uint8)
                                          for i in range(40)], fps=25, audio=audio, rate=rate))
    case("too-short-0.3s", D, TooShortError.exit_code, input_name="blink.mp4",
         make=lambda p: trim(grid, p, max_t=0.3))

    # -- odd rates and sizes
    case("video-at-1fps", D, TooShortError.exit_code, input_name="slow.mp4",
         make=lambda p: encode(p, frames=frames[::25], fps=1, audio=audio, rate=rate))
    case("tiny-frames-16px", D, NoFaceError.exit_code, input_name="tiny.mp4",
         make=lambda p: encode(p, frames=frames, fps=fps, audio=audio, rate=rate, size=(16, 16)))
    case("huge-frames-3840px-grey", D, NoFaceError.exit_code, input_name="huge.mp4",
         make=lambda p: encode(p, frames=[np.full((2160, 3840, 3), 90, np.uint8)] * 20, fps=25,
                               audio=audio[: int(0.8 * rate)], rate=rate))
    case("audio-8khz", ["detect", "--json", "--model", "modelfree", "{in}"], OK, input_name="phone.mp4",
         make=lambda p: encode(p, frames=frames, fps=fps, audio=decode_audio(grid, 8000), rate=8000),
         check=_json_has("fps", lambda v: abs(v - 25) < 0.5))
    case("audio-96khz-pcm-mkv", ["detect", "--json", "--model", "modelfree", "{in}"], OK, input_name="hires.mkv",
         make=lambda p: encode(p, frames=frames, fps=fps, audio=decode_audio(grid, 96000), rate=96000,
                               acodec="pcm_s16le"),
         check=_json_has("offset_ms", lambda v: v is not None))

    # -- odd containers, extensions, names
    case("mp4-named-avi", ["detect", "--json", "--model", "modelfree", "{in}"], OK, input_name="clip.avi",
         make=copy(base), check=_json_has("offset_ms", lambda v: v is not None))
    case("mp4-without-extension", ["detect", "--json", "--model", "modelfree", "{in}"], OK, input_name="clip",
         make=copy(base), check=_json_has("offset_ms", lambda v: v is not None))
    case("mkv-with-two-audio-tracks", ["fix", "{in}", "--offset-ms", "40"], OK, input_name="dub.mkv",
         make=lambda p: _two_audio_tracks(base, p), creates=("dub.fixed.mkv",), check=_two_tracks_out("dub.fixed.mkv"))
    case("fix-unknown-output-extension", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/out.xyz"],
         UsageError.exit_code, input_name="clip.mp4", make=copy(base))
    case("fix-default-output-for-mp3", ["fix", "{in}", "--offset-ms", "40"], UsageError.exit_code,
         input_name="song.mp3", make=lambda p: mp3_with_cover(grid, p))
    long_stem = "m" * 250
    case("fix-250-char-input-name", ["fix", "{in}", "--offset-ms", "40"], OK, input_name=long_stem + ".mp4",
         make=copy(base), creates=(long_stem[: 255 - len(".fixed.mp4")] + ".fixed.mp4",))
    case("fix-240-char-output-name", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/" + "o" * 236 + ".mp4"],
         OK, input_name="clip.mp4", make=copy(base), creates=("o" * 236 + ".mp4",))
    case("fix-300-char-output-name", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/" + "o" * 296 + ".mp4"],
         OutputError.exit_code, input_name="clip.mp4", make=copy(base))
    case("fix-output-folder-missing", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/no/such/out.mp4"],
         OutputError.exit_code, input_name="clip.mp4", make=copy(base))
    case("fix-output-is-a-folder", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/sub.mp4", "--overwrite"],
         OutputError.exit_code, input_name="clip.mp4",
         make=lambda p: (copy(base)(p), (p.parent / "sub.mp4").mkdir()))
    case("fix-output-under-a-file", ["fix", "{in}", "--offset-ms", "40", "-o", "{in}/out.mp4"],
         OutputError.exit_code, input_name="clip.mp4", make=copy(base))
    case("fix-output-is-input-via-symlink", ["fix", "{in}", "--offset-ms", "40", "-o", "{dir}/alias.mp4",
                                             "--overwrite"], UsageError.exit_code, input_name="clip.mp4",
         make=lambda p: (copy(base)(p), os.symlink(p, p.parent / "alias.mp4")))
    ro = case("fix-into-read-only-folder", ["fix", "{in}", "--offset-ms", "40"], OutputError.exit_code,
              input_name="clip.mp4", make=copy(base))
    ro.setup, ro.teardown = _read_only(ro.folder)
    for label, name in [("newline", "a\nb.mp4"), ("dash", "-rf --help.mp4"), ("protocol", "concat:x.mp4|y.mp4"),
                        ("unicode", "entrevista \u00e9t\u00e9 \U0001f3a4 \u4e2d\u6587.mp4"),
                        ("quotes-dollar", "it's $(touch pwned) `x`.mp4")]:
        case(f"name-{label}-fix", ["fix", "--offset-ms", "40", "--", "{in}"], OK, input_name=name,
             make=copy(base), creates=(Path(name).stem + ".fixed.mp4",))
    case("talk-clip-detect", ["detect", "--json", "{in}"], OK, input_name="talk.mp4", make=copy(talk2),
         check=_json_has("damaged", lambda v: v == []))
    return cases


def _says(proc, words):
    assert words in proc.stderr, proc.stderr


def _two_audio_tracks(src, dst):
    """The clip with its audio track twice (a dub), in Matroska."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        out = {s.index: [o.add_stream_from_template(s)] for s in i.streams}
        a = i.streams.audio[0]
        out[a.index].append(o.add_stream_from_template(a))
        for pk in i.demux():
            if pk.size == 0 or pk.dts is None:
                continue
            for k, stream in enumerate(out[pk.stream.index]):
                q = pk if k == 0 else av.Packet(bytes(pk))
                if k:
                    q.pts, q.dts, q.duration, q.time_base = pk.pts, pk.dts, pk.duration, pk.time_base
                q.stream = stream
                o.mux(q)


def _two_tracks_out(name):
    def check(proc, case):
        with av.open(str(case.folder / name)) as c:
            assert len(c.streams.audio) == 2 and len(c.streams.video) == 1
    return check


def _fifo_writer(fifo: Path, clip: Path):
    """Start a writer feeding ``clip`` into ``fifo``; stop it (unblock it) afterwards."""
    thread: list = []

    def feed():
        try:
            with open(fifo, "wb") as fh:
                fh.write(clip.read_bytes())
        except OSError:  # the reader went away: a broken pipe
            pass

    def setup():
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        thread.append(t)

    def teardown():
        # avsync never opened the FIFO: open its read end ourselves so the writer finishes.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            thread[0].join(timeout=0.5)
            while thread[0].is_alive():
                try:
                    os.read(fd, 1 << 16)
                except BlockingIOError:
                    pass
                thread[0].join(timeout=0.05)
        finally:
            os.close(fd)

    return setup, teardown


def _read_only(folder: Path):
    """Make ``folder`` read-only for this process: chmod, and for root (who ignores modes) chattr +i."""
    state = {}

    def setup():
        os.chmod(folder, 0o555)
        if os.geteuid() == 0:
            state["chattr"] = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0

    def teardown():
        if state.get("chattr"):
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        os.chmod(folder, 0o755)

    return setup, teardown


# --- running them ----------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink() or not p.exists():
            out[rel] = "link"
        elif p.is_file():
            out[rel] = sha256(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = "special"
    return out


def _run(case: Case) -> None:
    args = [str(a).replace("{in}", str(case.input)).replace("{dir}", str(case.folder)) for a in case.args]
    before = _snapshot(case.folder)
    in_hash = sha256(case.input) if case.hash_input and case.input and case.input.is_file() else None
    env = dict(os.environ)
    env.pop("AVSYNC_NATIVE_LOGS", None)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "80"
    if case.setup:
        case.setup()
    try:
        proc = subprocess.run([sys.executable, "-m", "avsync", *args], cwd=case.folder, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=300)
    finally:
        if case.teardown:
            case.teardown()
    case.result = dict(proc=proc, before=before, after=_snapshot(case.folder), in_hash=in_hash,
                       in_hash_after=sha256(case.input) if in_hash else None)


@pytest.fixture(scope="module")
def ran_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = build_cases(root)
    # Cheap failures in parallel first, then the runs that decode whole files; 2 workers on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, cases))
    return {c.name: c for c in cases}


CASE_NAMES = [
    "missing", "name-too-long", "dangling-symlink", "symlink-loop", "directory", "dev-zero", "dev-null",
    "fifo-no-writer", "fifo-fed-a-clip", "empty", "one-byte", "text-as-mp4", "random-bytes", "html-as-mp4",
    "truncated-10pc-moov-at-end", "truncated-50pc-moov-at-end", "truncated-90pc-moov-at-end",
    "truncated-10pc-faststart", "truncated-40pc-faststart", "header-only-mp4", "header-only-mp4-fix", "ftyp-only",
    "damaged-16k-middle", "damaged-16k-middle-fix", "audio-only-m4a", "audio-only-wav-named-mp4",
    "mp3-with-cover-art", "video-only", "video-only-fix", "still-image-as-mp4", "silent-audio",
    "no-face-noise-video", "too-short-0.3s", "video-at-1fps", "tiny-frames-16px", "huge-frames-3840px-grey",
    "audio-8khz", "audio-96khz-pcm-mkv", "mp4-named-avi", "mp4-without-extension", "mkv-with-two-audio-tracks",
    "fix-unknown-output-extension", "fix-default-output-for-mp3", "fix-250-char-input-name",
    "fix-240-char-output-name", "fix-300-char-output-name", "fix-output-folder-missing", "fix-output-is-a-folder",
    "fix-output-under-a-file", "fix-output-is-input-via-symlink", "fix-into-read-only-folder",
    "name-newline-fix", "name-dash-fix", "name-protocol-fix", "name-unicode-fix", "name-quotes-dollar-fix",
    "talk-clip-detect",
]


def test_the_suite_has_at_least_40_cases(ran_cases):
    assert len(ran_cases) >= 40
    assert sorted(ran_cases) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_input(ran_cases, name):
    case = ran_cases[name]
    proc, r = case.result["proc"], case.result
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    if case.code == OK:
        assert proc.returncode == 0, proc.stderr
        assert not [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("avsync: note:")], \
            proc.stderr
    else:
        assert_cli_error(proc, case.code)
        assert proc.stdout.strip() == "", proc.stdout
    if case.check:
        case.check(proc, case)
    assert r["in_hash"] == r["in_hash_after"], "the input was modified"
    new = sorted(set(r["after"]) - set(r["before"]))
    assert new == sorted(case.creates), f"files created: {new}"
    changed = [k for k in r["before"] if r["after"].get(k) != r["before"][k]]
    assert changed == [], f"files changed or removed: {changed}"
    assert not [k for k in r["after"] if "avsync-tmp" in k], "a temporary file was left"
