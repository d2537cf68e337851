"""Real footage: two faces and the speaking one, a speaker split by a cut, drift, stretches with no speech
(real clips, rewritten)."""
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
MENENDEZ = "train/OpenTalker__SadTalker__test__examples__source_image__WDA_BobMenendez_000.mp4"  # 8 s, 25 fps


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
    # the right face's reading, undisturbed by the left face: as the right clip reads alone, and within the
    # protocol's ±1 frame (1.5 frame durations) of the truth (the clip reads about +50 ms on its own at k = 0)
    alone = avsync.detect(right).offset_ms
    assert abs(r.offset_ms - alone) <= 20.0, (r.offset_ms, alone)
    assert abs(r.offset_ms - 160.0) <= 60.0, r.offset_ms
    left = [f for f in r.faces if f.box[0] + f.box[2] < 512]
    assert left and all(f.speaking_s < active.speaking_s for f in left)


def _second_camera(rgb):
    """The same scene from another camera: mirrored and closer (a hard cut to it is a new shot)."""
    import cv2

    h, w = rgb.shape[:2]
    return np.ascontiguousarray(cv2.resize(rgb[h // 8 : h - h // 8, w // 8 : w - w // 8, ::-1], (w, h),
                                           interpolation=cv2.INTER_AREA))


def test_a_speaker_split_by_a_cut_is_read_from_both_tracks_pooled(tmp_path):
    # One speaker, audio 5 frames late, with a cut to a second camera a third of the way in while the
    # speech goes on: two shots, two tracks of the same face. The file's reading pools both tracks' curves,
    # weighted by their speaking time, rather than reading one of them.
    from avsync.extract import extract, mesh_every_for

    k = 5
    trial = make_trial(clip_path(MENENDEZ), tmp_path / "trial.mkv", k).path
    v = read_video(trial)
    cut = len(v) // 3
    frames = v[:cut] + [(t, _second_camera(x)) for t, x in v[cut:]]
    path = write(tmp_path / "cut.mkv", frames, fps_of(v), read_audio(trial))
    est = avsync.load_model()  # extracted once, as detect does, and read three times
    ext = extract(path, keep_crops=getattr(est, "needs_crops", False), mesh_every=mesh_every_for(est))
    r = avsync.detect(path, model=est, extraction=ext)
    assert len(r.shots) == 2 and abs(r.shots[1]["start_s"] - v[cut][0] + v[0][0]) <= 0.1, r.shots
    assert len(r.faces) == 2 and {f.shot for f in r.faces} == {0, 1}, r.faces
    assert all(f.speaking_s > 1.0 for f in r.faces), r.faces
    assert abs(r.offset_frames - k) <= 1.0, r.offset_frames
    active = max(r.faces, key=lambda f: f.speaking_s)
    assert active.active and active.shot == 1 and sum(f.active for f in r.faces) == 1
    # each track read on its own (--face N): its own curve and evidence
    alone = [avsync.detect(path, model=est, extraction=ext, face=f.track_id) for f in r.faces]
    curves = np.array([a.curve["scores"] for a in alone], dtype=np.float64)
    w = np.array([f.speaking_s for f in r.faces])
    pooled = np.array(r.curve["scores"], dtype=np.float64)
    np.testing.assert_allclose(pooled, w @ curves / w.sum(), atol=2e-4)
    assert np.abs(pooled - curves.mean(0)).max() > 1e-3  # the weights matter (the shots are 1:2 long)
    assert abs(r.evidence_s - sum(a.evidence_s for a in alone)) <= 0.05  # the tracks never overlap
    assert r.evidence_s > max(a.evidence_s for a in alone) + 1.0


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
