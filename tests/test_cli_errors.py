"""Bad inputs through the command line: the documented exit code, one clean line, no traceback.

Every broken file is made here, from real clips, under pytest's tmp folder.
"""
from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsync.errors import (
    InputNotFoundError,
    NoAudioError,
    NoFaceError,
    NoSpeechError,
    NotMediaError,
    NoVideoError,
    TooShortError,
    TruncatedMediaError,
    UsageError,
)
from conftest import MOUTH_ONLY_CLIP, assert_cli_error, clip_path, grid_clip


def _copy_streams(src, dst, kinds=("video", "audio"), options=None, max_t=None):
    """Packet-for-packet copy of some streams of src (no re-encode)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options=options or {}) as o:
        out = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in kinds}
        for pk in i.demux():
            if pk.stream.index not in out or pk.size == 0 or pk.dts is None:
                continue
            if max_t is not None and pk.pts is not None and float(pk.pts * pk.time_base) >= max_t:
                continue
            pk.stream = out[pk.stream.index]
            o.mux(pk)


def _top_level_atoms(path) -> list[str]:
    b = Path(path).read_bytes()
    i, names = 0, []
    while i + 8 <= len(b):
        size = int.from_bytes(b[i : i + 4], "big")
        names.append(b[i + 4 : i + 8].decode("latin1"))
        if size == 1:
            size = int.from_bytes(b[i + 8 : i + 16], "big")
        if size < 8:
            break
        i += size
    return names


def _write_wav(src, dst):
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        a = o.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        res = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for f in list(i.decode(audio=0)) + [None]:
            for g in res.resample(f):
                g.pts = None
                o.mux(a.encode(g))
        o.mux(a.encode(None))


def _with_silent_audio(src, dst):
    """The clip's video packets, with its audio replaced by digital zeros (AAC)."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        v = o.add_stream_from_template(vin)
        rate = 44100
        a = o.add_stream("aac", rate=rate)
        a.layout = "mono"
        for pk in i.demux(vin):
            if pk.size == 0 or pk.dts is None:
                continue
            pk.stream = v
            o.mux(pk)
        total, pts = 3 * rate, 0
        while pts < total:
            n = min(1024, total - pts)
            f = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = rate, pts, Fraction(1, rate)
            pts += n
            o.mux(a.encode(f))
        o.mux(a.encode(None))


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory):
    """name -> (path, expected exit code) for every broken-input case."""
    d = tmp_path_factory.mktemp("bad")
    src = grid_clip("lwbsza")
    cases = {}

    cases["missing"] = (d / "does_not_exist.mp4", InputNotFoundError.exit_code)
    (d / "text.mp4").write_text("This is a text file, not a video.\n" * 20)
    cases["text_renamed_mp4"] = (d / "text.mp4", NotMediaError.exit_code)
    (d / "empty.mp4").write_bytes(b"")
    cases["empty"] = (d / "empty.mp4", NotMediaError.exit_code)
    (d / "folder.mp4").mkdir()
    cases["directory"] = (d / "folder.mp4", NotMediaError.exit_code)

    _copy_streams(src, d / "audio_only.m4a", kinds=("audio",))
    cases["audio_only_m4a"] = (d / "audio_only.m4a", NoVideoError.exit_code)
    _write_wav(src, d / "audio_only.wav")
    cases["audio_only_wav"] = (d / "audio_only.wav", NoVideoError.exit_code)
    _copy_streams(src, d / "video_only.mp4", kinds=("video",))
    cases["video_only"] = (d / "video_only.mp4", NoAudioError.exit_code)

    cases["no_face"] = (clip_path(MOUTH_ONLY_CLIP), NoFaceError.exit_code)
    _with_silent_audio(src, d / "silence.mp4")
    cases["silence"] = (d / "silence.mp4", NoSpeechError.exit_code)
    _copy_streams(src, d / "short.mp4", max_t=0.3)
    cases["too_short"] = (d / "short.mp4", TooShortError.exit_code)

    # Truncated: the first 40 % of the bytes, with the index (moov) at the end and at the start.
    _copy_streams(src, d / "moov_end.mp4")
    _copy_streams(src, d / "faststart.mp4", options={"movflags": "faststart"})
    for name in ("moov_end", "faststart"):
        data = (d / f"{name}.mp4").read_bytes()
        (d / f"trunc_{name}.mp4").write_bytes(data[: int(0.4 * len(data))])
        cases[f"truncated_{name}"] = (d / f"trunc_{name}.mp4", TruncatedMediaError.exit_code)
    return cases


def test_truncation_layouts_are_what_they_claim(bad_inputs):
    moov_end = bad_inputs["truncated_moov_end"][0].with_name("moov_end.mp4")
    faststart = bad_inputs["truncated_faststart"][0].with_name("faststart.mp4")
    atoms_end, atoms_fast = _top_level_atoms(moov_end), _top_level_atoms(faststart)
    assert atoms_end.index("moov") > atoms_end.index("mdat"), atoms_end
    assert atoms_fast.index("moov") < atoms_fast.index("mdat"), atoms_fast
    # The truncated moov-at-end file has lost its index; the faststart one has it.
    assert b"moov" not in bad_inputs["truncated_moov_end"][0].read_bytes()[:64]
    assert "moov" in _top_level_atoms(bad_inputs["truncated_faststart"][0])[:3]


def test_generated_inputs_hold_what_they_should(bad_inputs):
    with av.open(str(bad_inputs["audio_only_m4a"][0])) as c:
        assert not c.streams.video and c.streams.audio
    with av.open(str(bad_inputs["video_only"][0])) as c:
        assert c.streams.video and not c.streams.audio
    with av.open(str(bad_inputs["silence"][0])) as c:
        samples = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
        assert np.abs(samples).max() < 1e-4 and len(samples) > 2 * 44100
    with av.open(str(bad_inputs["too_short"][0])) as c:
        n = sum(1 for _ in c.decode(video=0))
        assert 3 <= n <= 10


CASES = [
    "missing",
    "text_renamed_mp4",
    "empty",
    "directory",
    "audio_only_m4a",
    "audio_only_wav",
    "video_only",
    "no_face",
    "silence",
    "too_short",
    "truncated_moov_end",
    "truncated_faststart",
]


@pytest.mark.parametrize("case", CASES)
def test_detect_bad_input(cli, bad_inputs, tmp_path, case):
    path, code = bad_inputs[case]
    proc = cli("detect", path, cwd=tmp_path)
    assert_cli_error(proc, code)
    assert proc.stdout.strip() == "", proc.stdout
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", CASES)
def test_fix_bad_input(cli, bad_inputs, tmp_path, case):
    # Without --offset-ms, fix detects first: the same errors apply, and nothing is written.
    path, code = bad_inputs[case]
    proc = cli("fix", path, "-o", tmp_path / "out.mp4", cwd=tmp_path)
    assert_cli_error(proc, code)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "text_renamed_mp4", "empty", "directory", "video_only",
                                  "truncated_moov_end"])
def test_fix_with_known_offset_bad_input(cli, bad_inputs, tmp_path, case):
    # With --offset-ms nothing is detected, but unreadable inputs still fail cleanly.
    path, code = bad_inputs[case]
    proc = cli("fix", path, "-o", tmp_path / "out.mp4", "--offset-ms", "40", cwd=tmp_path)
    assert_cli_error(proc, code)
    assert os.listdir(tmp_path) == []


def test_fix_with_known_offset_refuses_truncated_faststart(cli, bad_inputs, tmp_path):
    path, code = bad_inputs["truncated_faststart"]
    proc = cli("fix", path, "-o", tmp_path / "out.mp4", "--offset-ms", "40", cwd=tmp_path)
    assert_cli_error(proc, code)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "--window-frames", "2"],
        ["detect", "--max-offset-ms", "5000"],
        ["detect", "--max-offset-ms", "-5"],
        ["detect", "--tolerance-frames", "-1"],
        ["detect", "--max-faces", "0"],
        ["fix", "--offset-ms", "nan"],
        ["fix", "--offset-ms", "120000"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_arguments_are_usage_errors(cli, tmp_path, args):
    clip = grid_clip("pwij3p")
    extra = ["-o", tmp_path / "out.mp4"] if args[0] == "fix" else []
    proc = cli(*args, *extra, clip, cwd=tmp_path)
    assert_cli_error(proc, UsageError.exit_code)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [["detect", "--max-offset-ms", "abc", "x.mp4"], ["detect"]],
                         ids=["non-number", "missing-path"])
def test_click_usage_errors_say_something(cli, tmp_path, args):
    proc = cli(*args, cwd=tmp_path)
    assert_cli_error(proc, UsageError.exit_code)


def test_error_for_a_name_with_a_newline_stays_on_one_line(cli, tmp_path):
    bad = tmp_path / "not\nmedia.mp4"
    bad.write_text("not a video\n")
    proc = cli("detect", bad, cwd=tmp_path)
    assert_cli_error(proc, NotMediaError.exit_code)


# --- hostile file names -------------------------------------------------------------------------------------

HOSTILE = [
    "-rf $(touch pwned) ; 'x'\n.mp4",
    "--help;rm -rf ~ `x` 'y'.mp4",
    "pipe:1.mp4",
    "http:evil.mp4",
    "concat:a.mp4|b.mp4",
]


@pytest.mark.parametrize("name", HOSTILE, ids=["shell-newline", "dashdash-help", "pipe", "http", "concat"])
def test_hostile_file_names_are_analysed_normally(cli, tmp_path, detect_cached, name):
    work = tmp_path / "work"
    work.mkdir()
    src = grid_clip("pwij3p")
    shutil.copyfile(src, work / name)
    before = sorted(os.listdir(work))
    reference = detect_cached(src)
    # Relative, after "--" (the name may start with a dash), from the file's folder ...
    proc = cli("detect", "--json", "--", name, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    d = json.loads(proc.stdout)
    assert d["offset_ms"] == pytest.approx(reference.offset_ms, abs=0.05)
    assert d["path"].endswith(name)
    # ... and by absolute path from elsewhere.
    proc = cli("detect", work / name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("audio ")
    assert sorted(os.listdir(work)) == before, "detect created or removed files"
    assert sorted(os.listdir(tmp_path)) == ["work"]
    assert not (work / "pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", HOSTILE[:3], ids=["shell-newline", "dashdash-help", "pipe"])
def test_hostile_file_names_fix_writes_only_the_default_output(cli, tmp_path, name):
    shutil.copyfile(grid_clip("pwij3p"), tmp_path / name)
    proc = cli("fix", "--offset-ms", "40", "--", name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    expected = Path(name).stem + ".fixed.mp4"
    assert sorted(os.listdir(tmp_path)) == sorted([name, expected])
    with av.open(str(tmp_path / expected)) as c:
        assert c.streams.video and c.streams.audio
