"""Real footage: two faces and the speaking one, drift, stretches with no speech (real clips, rewritten)."""
import numpy as np
import pytest

import avsync
from avsync.eval.trials import make_trial
from conftest import clip_path
from mediagen import RATE, fps_of, read_audio, read_video, write

LEFT = "dev/OpenTalker__SadTalker__WDA_AlexandriaOcasioCortez_000.mp4"  # 512x512, 25 fps
RIGHT = "dev/OpenTalker__SadTalker__WDA_KatieHill_000.mp4"
LONG = "dev/sstzal__DFRF__dataset__vids__french.mp4"  # 50 s, 30 fps
TALK = "dev/facebookresearch__VisualVoice__interview.mp4"  # 17.6 s, 25 fps


def test_side_by_side_the_speaking_face_is_picked_and_its_offset_read(tmp_path):
    # Two real talking heads side by side; only the right one's voice is kept, 4 frames late.
    right = make_trial(clip_path(RIGHT), tmp_path / "right.mkv", 4).path
    lv, rv = read_video(clip_path(LEFT)), read_video(right)
    n = min(len(lv), len(rv))
    frames = [(rv[i][0], np.concatenate([lv[i][1], rv[i][1]], axis=1)) for i in range(n)]
    path = write(tmp_path / "side_by_side.mkv", frames, 25, read_audio(right))
    r = avsync.detect(path)
    assert len(r.faces) >= 2
    active = next(f for f in r.faces if f.active)
    assert active.box[0] >= 512 - active.box[2] / 2, active  # the right half
    assert abs(r.offset_ms - 160.0) <= 40.0, r.offset_ms
    left = [f for f in r.faces if f.box[0] + f.box[2] < 512]
    assert left and all(f.speaking_s < active.speaking_s for f in left)


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    """The 50 s address twice over (100 s), its audio stretched by 2,000 ppm: 120 ms/min of drift."""
    tmp = tmp_path_factory.mktemp("drift")
    v = read_video(clip_path(LONG))
    a = read_audio(clip_path(LONG))
    dur = v[-1][0] + 1 / fps_of(v)
    frames = v + [(t + dur, x) for t, x in v]
    audio = np.concatenate([a[: int(round(dur * RATE))], a])
    import soxr

    stretched = soxr.resample(audio, RATE, RATE * (1 + 2000e-6)).astype(np.float32)
    return write(tmp / "drift.mkv", frames, fps_of(v), stretched[: len(audio)]), 120.0


def test_drift_rate_is_found_and_fix_removes_it(drifting, tmp_path):
    path, truth = drifting
    r = avsync.detect(path)
    tl = r.timeline
    assert tl["kind"] == "linear", (tl, r.segments)
    assert abs(tl["drift_ms_per_min"] - truth) <= 0.2 * truth, tl
    assert "drifts" in r.sentence()
    out = tmp_path / "fixed.mkv"
    avsync.correct(path, out, offset_ms=r.offset_ms, timeline=tl)
    after = avsync.detect(out).timeline
    assert after["kind"] == "constant" or abs(after["drift_ms_per_min"]) < 0.1 * truth, after


def test_a_stretch_of_silence_is_no_reading(tmp_path):
    v = read_video(clip_path(TALK))
    a = read_audio(clip_path(TALK))
    a[6 * RATE : 11 * RATE] = 0.0
    r = avsync.detect(write(tmp_path / "silent_middle.mkv", v, fps_of(v), a))
    quiet = [s for s in r.segments if s["offset_ms"] is None]
    assert any(s["reason"] == "no speech" and s["start_s"] <= 6.6 and s["end_s"] >= 10.4 for s in quiet), r.segments
    assert all(s["start_s"] >= 10.0 or s["end_s"] <= 7.0 for s in r.segments if s["offset_ms"] is not None)
