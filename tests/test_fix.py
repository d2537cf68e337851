"""avsync.correct / `avsync fix`: the audio moves sample-exactly, nothing else changes."""
from __future__ import annotations

import importlib
import json
import os

import av
import numpy as np
import pytest

import avsync
from avsync.errors import AvsyncError, OutputError, UsageError
from avsync.media import read_audio
from conftest import FRAME_25_MS, assert_cli_error, clip_path, grid_clip, sha256

remux = importlib.import_module("avsync.correct.remux")

K = 6  # frames of audio lag in the trial that gets fixed
SR = 16000

def audio_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 6000) -> tuple[int, float]:
    """L such that b[n] ~ a[n + L], by cross-correlation; and the normalised peak height."""
    n = min(len(a), len(b)) - 2 * max_lag
    assert n > SR, "need more than a second of overlap"
    seg = b[max_lag : max_lag + n].astype(np.float64)
    ref = a[: n + 2 * max_lag].astype(np.float64)
    c = np.correlate(ref, seg, mode="valid")
    j = int(np.argmax(c))
    norm = np.sqrt((seg**2).sum() * (ref[j : j + n] ** 2).sum())
    return j - max_lag, float(c[j] / norm)


def video_packets(path) -> list[tuple[bytes, float, bool]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [
            (bytes(p), round(float(p.pts * p.time_base), 3) if p.pts is not None else None, p.is_keyframe)
            for p in c.demux(s)
            if p.size
        ]


@pytest.fixture(scope="module")
def fixed(trial_factory, tmp_path_factory):
    """For each container: the k=+6 trial, its hash before/after, and the corrected copy."""
    out = {}
    for ext in (".mkv", ".mp4"):
        trial = trial_factory(grid_clip("lwbsza"), K, ext)
        before = sha256(trial.path)
        folder = tmp_path_factory.mktemp(f"fixed{ext[1:]}")
        dst = folder / f"fixed{ext}"
        report = avsync.correct(trial.path, dst, offset_ms=trial.truth_ms)
        out[ext] = dict(trial=trial, before=before, after=sha256(trial.path), dst=dst, folder=folder, report=report)
    return out


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_fix_then_detect_matches_the_untouched_clip(fixed, detect_cached, ext):
    f = fixed[ext]
    assert f["trial"].truth_ms == pytest.approx(K * FRAME_25_MS)
    untouched = detect_cached(grid_clip("lwbsza"))
    shifted = detect_cached(f["trial"].path)
    after = detect_cached(f["dst"])
    # The trial really was out by ~6 frames, and the fix brings it back to the clip's own reading.
    assert abs(shifted.offset_ms - untouched.offset_ms - K * FRAME_25_MS) <= 1.5 * FRAME_25_MS
    assert abs(after.offset_ms - untouched.offset_ms) <= 1.5 * FRAME_25_MS, (after.offset_ms, untouched.offset_ms)


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
@pytest.mark.parametrize("offset_ms", [K * FRAME_25_MS, -37.3])
def test_audio_is_shifted_sample_exactly(fixed, tmp_path, ext, offset_ms):
    trial = fixed[ext]["trial"]
    dst = tmp_path / f"shifted{ext}"
    report = avsync.correct(trial.path, dst, offset_ms=offset_ms)
    assert report.offset_ms == offset_ms
    (entry,) = report.audio
    assert entry["codec"] == ("pcm_s16le" if ext == ".mkv" else "aac")
    assert entry["shift_samples"] == round(offset_ms / 1000 * entry["rate"])
    t0a, a = read_audio(trial.path)
    t0b, b = read_audio(dst)
    assert t0a == pytest.approx(t0b, abs=1e-3), "the audio keeps its start time; the content moves"
    lag, peak = audio_lag(a, b)
    assert peak > 0.9, f"shifted audio should match the original (normalised correlation {peak:.3f})"
    assert abs(lag - round(offset_ms * SR / 1000)) <= 1, (lag, offset_ms)


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_video_packets_are_copied_unchanged(fixed, ext):
    f = fixed[ext]
    src, dst = video_packets(f["trial"].path), video_packets(f["dst"])
    assert len(dst) == len(src)
    assert [p[0] for p in dst] == [p[0] for p in src], "video packet bytes differ"
    assert [p[1] for p in dst] == [p[1] for p in src], "video timestamps differ"
    assert [p[2] for p in dst] == [p[2] for p in src], "keyframe flags differ"


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_audio_keeps_its_length(fixed, ext):
    f = fixed[ext]
    _, a = read_audio(f["trial"].path)
    _, b = read_audio(f["dst"])
    assert abs(len(b) - len(a)) <= 16, f"input {len(a)} samples, output {len(b)} (at 16 kHz)"


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_input_unchanged_and_no_temp_files_left(fixed, ext):
    f = fixed[ext]
    assert f["after"] == f["before"], "the input file was modified"
    assert sorted(os.listdir(f["folder"])) == [f["dst"].name], os.listdir(f["folder"])
    with av.open(str(f["dst"])) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
    assert f["report"].copied_streams == 1 and not f["report"].dropped_streams


# --- refusals -----------------------------------------------------------------------------------------


@pytest.fixture()
def work_copy(tmp_path):
    """A private copy of a real clip (so links and overwrites never touch the data folder)."""
    p = tmp_path / "in" / "talk.mp4"
    p.parent.mkdir()
    p.write_bytes(grid_clip("pwij3p").read_bytes())
    return p


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_output_equal_to_input_is_refused(work_copy, spelling):
    before = sha256(work_copy)
    if spelling == "same":
        dst = work_copy
    elif spelling == "dotted":
        dst = work_copy.parent / "." / ".." / work_copy.parent.name / work_copy.name
    elif spelling == "symlink":
        dst = work_copy.parent / "link.mp4"
        dst.symlink_to(work_copy)
    else:
        dst = work_copy.parent / "hard.mp4"
        os.link(work_copy, dst)
    with pytest.raises(UsageError):
        avsync.correct(work_copy, dst, offset_ms=40.0, overwrite=True)
    assert sha256(work_copy) == before
    leftovers = sorted(set(os.listdir(work_copy.parent)) - {"talk.mp4", "link.mp4", "hard.mp4"})
    assert leftovers == []


def test_cli_refuses_output_equal_to_input(cli, work_copy):
    before = sha256(work_copy)
    proc = cli("fix", work_copy, "-o", work_copy, "--offset-ms", "40", "--overwrite")
    assert_cli_error(proc, UsageError.exit_code)
    assert sha256(work_copy) == before


def test_existing_output_refused_without_overwrite(cli, work_copy):
    dst = work_copy.parent / "out.mp4"
    dst.write_bytes(b"precious")
    with pytest.raises(UsageError):
        avsync.correct(work_copy, dst, offset_ms=40.0)
    assert dst.read_bytes() == b"precious"
    proc = cli("fix", work_copy, "-o", dst, "--offset-ms", "40")
    assert_cli_error(proc, UsageError.exit_code)
    assert dst.read_bytes() == b"precious"
    # With overwrite, it is replaced by a real file.
    avsync.correct(work_copy, dst, offset_ms=40.0, overwrite=True)
    with av.open(str(dst)) as c:
        assert c.streams.video and c.streams.audio
    assert sorted(os.listdir(dst.parent)) == ["out.mp4", "talk.mp4"]


def test_no_temp_file_left_when_writing_fails(work_copy, monkeypatch):
    folder = work_copy.parent
    dst = folder / "out.mp4"
    dst.write_bytes(b"old")

    def broken_write(src, tmp, *args, **kw):
        with open(tmp, "wb") as fh:
            fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(remux, "_write", broken_write)
    with pytest.raises(OutputError):
        avsync.correct(work_copy, dst, offset_ms=40.0, overwrite=True)
    assert dst.read_bytes() == b"old", "a failed write must leave the existing output alone"
    assert sorted(os.listdir(folder)) == ["out.mp4", "talk.mp4"]


def test_no_temp_file_left_for_an_unwritable_format(work_copy):
    folder = work_copy.parent
    with pytest.raises((AvsyncError, ValueError)):
        avsync.correct(work_copy, folder / "out.xyz", offset_ms=40.0)
    assert sorted(os.listdir(folder)) == ["talk.mp4"]


def test_cli_unknown_output_extension_is_a_clean_error(cli, work_copy):
    proc = cli("fix", work_copy, "-o", work_copy.parent / "out.xyz", "--offset-ms", "40")
    assert proc.returncode in (UsageError.exit_code, OutputError.exit_code), (proc.returncode, proc.stderr)
    assert_cli_error(proc, proc.returncode)
    assert sorted(os.listdir(work_copy.parent)) == ["talk.mp4"]


def test_missing_output_folder_is_an_output_error(cli, work_copy):
    proc = cli("fix", work_copy, "-o", work_copy.parent / "nope" / "out.mp4", "--offset-ms", "40")
    assert_cli_error(proc, OutputError.exit_code)


def test_cli_fix_with_known_offset_json(cli, fixed, tmp_path):
    trial = fixed[".mp4"]["trial"]
    dst = tmp_path / "cli_fixed.mp4"
    proc = cli("fix", trial.path, "-o", dst, "--offset-ms", trial.truth_ms, "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    d = json.loads(line)
    assert d["applied_offset_ms"] == pytest.approx(trial.truth_ms)
    assert d["output"] == str(dst) and d["detected"] is None
    assert d["audio"][0]["shift_samples"] == round(trial.truth_ms / 1000 * d["audio"][0]["rate"])
    assert sorted(os.listdir(tmp_path)) == ["cli_fixed.mp4"]
    _, a = read_audio(trial.path)
    _, b = read_audio(dst)
    lag, _ = audio_lag(a, b)
    assert abs(lag - round(trial.truth_ms * SR / 1000)) <= 1


def test_cli_fix_detects_then_corrects(cli, fixed, detect_cached, tmp_path):
    trial = fixed[".mp4"]["trial"]
    dst = tmp_path / "auto.mp4"
    proc = cli("fix", trial.path, "-o", dst, "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["detected"] is not None
    assert d["applied_offset_ms"] == pytest.approx(d["detected"]["offset_ms"])
    assert abs(d["applied_offset_ms"] - trial.truth_ms) <= 1.5 * FRAME_25_MS
    untouched = detect_cached(grid_clip("lwbsza"))
    after = detect_cached(dst)
    assert abs(after.offset_ms - untouched.offset_ms) <= 1.5 * FRAME_25_MS


def test_cli_fix_applies_a_reliable_detection_without_force(cli, trial_factory, detect_cached, tmp_path):
    """On a clean talking head (an interview, unseen speaker) the default model is sure enough for `fix`
    to act without --force, and the fixed copy then reads in sync."""
    src = clip_path("dev/facebookresearch__VisualVoice__interview.mp4")
    own = detect_cached(src).offset_ms  # the source's own offset as the model reads it
    trial = trial_factory(src, 6, ".mp4")
    frame_ms = 1000.0 / trial.fps
    dst = tmp_path / "fixed.mp4"
    proc = cli("fix", trial.path, "-o", dst, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["detected"]["reliable"] and d["detected"]["confidence"] >= 0.9
    assert abs(d["applied_offset_ms"] - (trial.truth_ms + own)) <= 1.5 * frame_ms
    after = detect_cached(dst)  # the source's own offset is corrected too
    assert after.in_sync and abs(after.offset_ms) <= frame_ms, after.sentence()


def test_cli_fix_refuses_an_unreliable_detection_without_force(cli, tmp_path):
    """Where the lips and the voice barely agree (a short LRS3 face crop the default model cannot read), `fix`
    without --force writes nothing and says why on one line (exit 13); with --force it applies the guess."""
    src = clip_path("dev/filby89__spectre__samples__LRS3__OzA6jRYjVQs_00004.mp4")
    before = sha256(src)
    dst = tmp_path / "fixed.mp4"
    proc = cli("fix", src, "-o", dst)
    line = assert_cli_error(proc, 13)
    assert line.startswith("avsync: not writing a correction:") and "--force" in line
    assert not dst.exists() and list(tmp_path.iterdir()) == [] and sha256(src) == before
    forced = cli("fix", src, "-o", dst, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert dst.is_file() and not json.loads(forced.stdout)["detected"]["reliable"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_follows_the_umask(work_copy, umask):
    """mkstemp makes 0600 files; the renamed output must get what a new file gets under the user's umask."""
    old = os.umask(umask)
    try:
        dst = work_copy.with_name(f"out-{umask:o}.mp4")
        avsync.correct(work_copy, dst, offset_ms=40.0)
    finally:
        os.umask(old)
    assert (dst.stat().st_mode & 0o777) == 0o666 & ~umask
