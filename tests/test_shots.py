"""Shot cuts (media/shots.py) on real clips whose cuts were checked by eye on contact sheets."""
import numpy as np
import pytest

from avsync.face.tracker import frame_to_rgb
from avsync.media.decode import iter_video_frames
from avsync.media.shots import ShotDetector, shot_index, shots_from_cuts
from conftest import clip_path

#: The rap clip: stage -> close-up at ~0.6 s, close-up -> singer at ~2.8 s, singer -> audience at ~7.1 s.
HAMILTON = "dev/ageitgey__face_recognition__short_hamilton_clip.mp4"
HAMILTON_CUTS = ((0.34, 0.67), (2.67, 3.00), (6.94, 7.27))
#: The sitcom: one cut, from the two-shot to the reverse angle, between 2.00 and 2.27 s.
SITCOM = "unverified/Sindhu-Hegde__gestsync__asd_sample_2.mp4"


def _cuts(rel):
    times, det = [], None
    for _, t, frame in iter_video_frames(clip_path(rel), max_fps=31.0):
        det = det or ShotDetector(fps=25.0)
        det.push(frame_to_rgb(frame))
        times.append(t)
    times = np.asarray(times)
    cuts = det.cut_frames()
    return times, cuts, [float(times[c] - times[0]) for c in cuts]


def test_cuts_of_the_rap_clip_are_found():
    times, cuts, at = _cuts(HAMILTON)
    for lo, hi in HAMILTON_CUTS:
        assert any(lo - 0.05 <= a <= hi + 0.05 for a in at), (lo, hi, at)
    assert len(at) <= len(HAMILTON_CUTS) + 1  # at most one more (the clip's last second changes shot again)
    shots = shots_from_cuts(times, cuts, 1 / 29.97)
    assert len(shots) == len(cuts) + 1
    assert shots[0].start_s == 0.0
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(shots, shots[1:]))
    idx = shot_index(len(times), cuts)
    assert idx[0] == 0 and idx[-1] == len(cuts) and np.all(np.diff(idx) >= 0)


def test_sitcom_has_one_cut():
    _, _, at = _cuts(SITCOM)
    assert len(at) == 1 and 1.95 <= at[0] <= 2.32, at


@pytest.mark.parametrize("rel", ["dev/facebookresearch__VisualVoice__interview.mp4",
                                 "dev/JuanFMontesinos__VoViT__comedy.mp4"])
def test_single_shot_clips_have_no_cut(rel):
    # Split-screen interview (heads moving, no cut); stand-up comedians walking on stage.
    assert _cuts(rel)[2] == []


def test_detect_gives_shots_and_no_face_track_crosses_a_cut():
    import avsync

    r = avsync.detect(clip_path(HAMILTON))
    assert len(r.shots) >= len(HAMILTON_CUTS) + 1
    for f in r.faces:
        shot = r.shots[f.shot]
        assert shot["start_s"] - 1e-6 <= f.first_s and f.last_s <= shot["end_s"] + 1e-6, (f, shot)
    for g in r.segments:
        shot = r.shots[g["shot"]]
        assert shot["start_s"] - 1e-6 <= g["start_s"] and g["end_s"] <= shot["end_s"] + 1e-6


def test_trials_sliced_from_an_extraction_keep_their_cuts():
    # avsync eval slices one extraction into trials: the cuts must follow the frames.
    from avsync.api import DetectOptions, estimate, load_model
    from avsync.eval.slide import crop_extraction, shift_extraction
    from avsync.extract import extract

    est = load_model()
    ext = extract(clip_path(HAMILTON), keep_crops=True)
    assert ext.cuts
    for k in (7, -7):
        s = shift_extraction(ext, k)
        lo = max(k, 0)
        assert s.cuts == [c - lo for c in ext.cuts if lo < c < lo + s.n_frames]
        r = estimate(s, est, DetectOptions())
        assert len(r.shots) == len(s.cuts) + 1
    c = crop_extraction(ext, 10, 100)
    assert c.cuts == [x - 10 for x in ext.cuts if 10 < x < 100]
    assert len(estimate(c, est, DetectOptions()).shots) == len(c.cuts) + 1
