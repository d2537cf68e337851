"""detect on real clips and on trials shifted by a known number of frames.

Trials are made with ``avsync.eval.trials.make_trial`` (trim, never pad): a
trial with k > 0 has its audio lagging by k frames, truth ``+k * 1000 / fps``.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import FRAME_25_MS, NTSC_CLIP, TWO_FACES_CLIP, clip_path, grid_clip

#: Allowed error, in frames, of a single detection on a good clip.
TOL_FRAMES = 1.5


@pytest.mark.parametrize("k", [+7, -7], ids=["audio_late_7", "audio_early_7"])
@pytest.mark.parametrize("name", ["lwbsza", "pwij3p"])
def test_sign_and_size_of_a_known_shift(trial_factory, detect_cached, name, k):
    trial = trial_factory(grid_clip(name), k, ".mkv")
    assert trial.fps == pytest.approx(25.0)
    assert trial.truth_ms == pytest.approx(k * FRAME_25_MS)
    r = detect_cached(trial.path)
    assert np.sign(r.offset_ms) == np.sign(k), f"wrong sign: {r.offset_ms} ms for truth {trial.truth_ms} ms"
    assert abs(r.offset_ms - trial.truth_ms) <= TOL_FRAMES * FRAME_25_MS, (r.offset_ms, trial.truth_ms)
    assert r.offset_frames == pytest.approx(r.offset_ms / FRAME_25_MS, abs=0.011)
    assert r.syncnet_offset_frames == -round(r.offset_frames)
    # 7 frames is far outside the default 1-frame tolerance.
    assert r.in_sync is False
    word = "late" if k > 0 else "early"
    assert f"ms {word}" in r.sentence()


@pytest.mark.parametrize("name", ["lwbsza", "pwij3p"])
def test_untouched_clip_is_near_zero(detect_cached, name):
    r = detect_cached(grid_clip(name))
    assert r.fps == pytest.approx(25.0)
    assert abs(r.offset_ms) <= TOL_FRAMES * FRAME_25_MS
    assert r.duration_s == pytest.approx(3.0, abs=0.05)
    assert len(r.faces) == 1 and r.faces[0].active
    assert r.faces[0].coverage > 0.9


def test_opposite_shifts_move_the_answer_by_the_difference(trial_factory, detect_cached):
    # The per-clip bias cancels: detect(+7) - detect(-7) ~ 14 frames.
    src = grid_clip("lwbsza")
    late = detect_cached(trial_factory(src, +7, ".mkv").path)
    early = detect_cached(trial_factory(src, -7, ".mkv").path)
    assert (late.offset_ms - early.offset_ms) == pytest.approx(14 * FRAME_25_MS, abs=TOL_FRAMES * FRAME_25_MS)


def test_mp4_aac_and_mkv_pcm_trials_agree(trial_factory, detect_cached):
    src = grid_clip("lwbsza")
    mkv = detect_cached(trial_factory(src, +4, ".mkv").path)
    mp4 = detect_cached(trial_factory(src, +4, ".mp4").path)
    # AAC priming must be compensated (MP4 edit list): same answer within half a frame.
    assert abs(mkv.offset_ms - mp4.offset_ms) <= 0.5 * FRAME_25_MS, (mkv.offset_ms, mp4.offset_ms)
    assert abs(mp4.offset_ms - 4 * FRAME_25_MS) <= TOL_FRAMES * FRAME_25_MS


# --- a 29.97 fps clip ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ntsc_result(detect_cached):
    # These tests are about 29.97 fps timing, so they pin the model-free estimator: they must not
    # change when the default learned model does.
    return detect_cached(clip_path(NTSC_CLIP), model="modelfree")


def test_ntsc_clip_reports_its_frame_rate(ntsc_result):
    r = ntsc_result
    assert r.fps == pytest.approx(29.97, abs=0.01)
    assert r.offset_frames == pytest.approx(r.offset_ms * r.fps / 1000.0, abs=0.011)
    assert r.tolerance_ms == pytest.approx(1000.0 / 29.97, abs=0.1)
    assert "29.97 fps" in r.sentence()
    assert r.duration_s == pytest.approx(6.97, abs=0.1)
    assert abs(r.offset_frames) <= 3  # an in-sync source clip: a small per-clip bias at most


def test_ntsc_trial_shifted_by_6_frames(trial_factory, detect_cached, ntsc_result):
    trial = trial_factory(clip_path(NTSC_CLIP), +6, ".mp4")
    assert trial.fps == pytest.approx(30000 / 1001, rel=1e-6)
    assert trial.truth_ms == pytest.approx(6 * 1001 / 30.0)
    r = detect_cached(trial.path, model="modelfree")
    assert r.fps == pytest.approx(29.97, abs=0.01)
    expected = ntsc_result.offset_frames + 6
    assert abs(r.offset_frames - expected) <= TOL_FRAMES, (r.offset_frames, expected)
    assert r.offset_frames == pytest.approx(r.offset_ms * r.fps / 1000.0, abs=0.011)


def test_ntsc_mkv_trial_reports_29_97_fps(trial_factory, detect_cached):
    trial = trial_factory(clip_path(NTSC_CLIP), +6, ".mkv")
    r = detect_cached(trial.path)
    assert r.fps == pytest.approx(29.97, abs=0.05)
    assert r.offset_frames == pytest.approx(r.offset_ms * 29.97 / 1000.0, abs=0.05)


# --- several faces ------------------------------------------------------------------------------------


def test_two_faces_tracked_one_active(detect_cached):
    r = detect_cached(clip_path(TWO_FACES_CLIP))
    assert len(r.faces) == 2, [(f.track_id, f.frames_found) for f in r.faces]
    active = [f for f in r.faces if f.active]
    assert len(active) == 1
    a = active[0]
    # The active face is the one that speaks longest; the answer pools the curves of every face that speaks
    # somewhere (segments.pool_curves), here both, and agrees with the active face's own reading.
    assert a.speaking_s == max(f.speaking_s for f in r.faces) > 0
    assert all(f.speaking_s > 0 for f in r.faces), r.faces
    assert abs(a.offset_ms - r.offset_ms) <= 40.0, (a, r.offset_ms)
    assert len({f.track_id for f in r.faces}) == 2
    # Split screen: both faces are on screen for most of the clip.
    for f in r.faces:
        assert f.coverage > 0.5 and f.face_px > 20
    assert r.fps == pytest.approx(25.0)
    assert abs(r.offset_ms) <= 3 * FRAME_25_MS
