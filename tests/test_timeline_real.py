"""The offset over time on real clips: an edit between two speakers, found with its change point."""
from fractions import Fraction

import av
import numpy as np
import pytest

import avsync
from avsync.eval.trials import make_trial
from conftest import clip_path

#: Three 8 s HDTF dev clips of three speakers, all 512x512, 25 fps, 16 kHz: two in sync, then one whose
#: audio lags by 7 frames. (RD_Radio34, the fourth such clip, reads about 3 frames early on its own, so a
#: "within one frame of zero" check after the fix would measure the clip, not the fix.)
FIRST = ("dev/OpenTalker__SadTalker__WDA_AlexandriaOcasioCortez_000.mp4",
         "dev/OpenTalker__SadTalker__WDA_KatieHill_000.mp4")
SECOND = ("dev/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4",)
RATE = 16_000


def _concat(parts, dst):
    """Write the clips one after another (H.264 + PCM in MKV); returns each part's start time (s)."""
    out = av.open(str(dst), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width = vs.height = 512
    vs.pix_fmt = "yuv420p"
    vs.options = {"crf": "18", "preset": "veryfast"}
    aus = out.add_stream("pcm_s16le", rate=RATE, layout="mono")
    starts, n_video, n_audio = [], 0, 0
    for path in parts:
        starts.append(n_video / 25)
        with av.open(str(path)) as c:
            for f in c.decode(video=0):
                frame = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
                frame.pts, frame.time_base = n_video, Fraction(1, 25)
                out.mux(vs.encode(frame))
                n_video += 1
        with av.open(str(path)) as c:
            rs = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for f in c.decode(audio=0):
                for g in rs.resample(f):
                    g.pts, g.time_base = n_audio, Fraction(1, RATE)
                    n_audio += g.samples
                    out.mux(aus.encode(g))
        # keep the streams together: the audio of each part ends where its video ends
        assert abs(n_audio / RATE - n_video / 25) < 0.1
    out.mux(vs.encode(None))
    out.mux(aus.encode(None))
    out.close()
    return starts


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edit")
    parts = []
    for i, rel in enumerate(FIRST + SECOND):
        k = 0 if rel in FIRST else 7
        parts.append(make_trial(clip_path(rel), tmp / f"part{i}.mkv", k).path)
    path = tmp / "edited.mkv"
    starts = _concat(parts, path)
    return path, starts[2]


def test_an_edit_between_speakers_gives_both_offsets_and_the_change_point(edited):
    path, change_s = edited
    r = avsync.detect(path)
    tl = r.timeline
    assert len(r.shots) == 3  # the two joins are cuts
    assert tl["kind"] == "piecewise", (tl, r.segments)
    frames = [p["offset_ms"] / 40.0 for p in tl["pieces"]]
    # Each piece within one frame of what its clips read alone (their own offsets, which for these HDTF
    # clips is about a frame late, plus the 0 or 7 frames the edit adds), and so within 2.5 frames of 0 and 7.
    own = [avsync.detect(clip_path(rel)).offset_ms / 40.0 for rel in FIRST + SECOND]
    first, last = float(np.mean(own[: len(FIRST)])), own[-1] + 7
    assert abs(frames[0] - first) <= 1 and abs(frames[-1] - last) <= 1, (frames, own)
    assert abs(frames[0] - 0) <= 2.5 and abs(frames[-1] - 7) <= 2.5, frames
    assert any(abs(c - change_s) <= 1.0 for c in tl["change_points_s"]), (tl["change_points_s"], change_s)
    assert "an edit" in r.sentence() or "edits" in r.sentence()
    for seg in r.segments:  # every segment lies in one shot
        shot = r.shots[seg["shot"]]
        assert shot["start_s"] - 1e-6 <= seg["start_s"] and seg["end_s"] <= shot["end_s"] + 1e-6


def test_fix_applies_the_edit_and_every_segment_reads_in_sync(edited, tmp_path):
    path, _ = edited
    r = avsync.detect(path)
    out = tmp_path / "fixed.mkv"
    report = avsync.correct(path, out, offset_ms=r.offset_ms, timeline=r.timeline)
    assert report.timeline["kind"] == "piecewise"
    fixed = avsync.detect(out)
    assert fixed.timeline["kind"] == "constant", fixed.timeline
    read = [s for s in fixed.segments if s["offset_ms"] is not None]
    # Every segment the model reads with some confidence lies within one frame of zero.
    sure = [s for s in read if s["confidence"] >= 0.7]
    assert len(sure) >= len(read) // 2
    assert all(abs(s["offset_ms"]) <= 40.0 + 1e-6 for s in sure), fixed.segments
