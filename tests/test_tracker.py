"""Faces the tracker must find: phone videos stored sideways, tight face crops, small faces in wide shots.

The inputs are real clips from ``../shared/data``, reframed at test time (in a
tmp folder) the way VoxCeleb/LRS-style crops and wide shots frame a face.
"""
from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from avsync.extract import extract
from avsync.face.tracker import FaceTracker, frame_to_rgb

from conftest import clip_path

#: A phone video whose frames are stored sideways, with a display matrix that turns them (train split).
SIDEWAYS = "train/amrkh97__Lipify-LipReading__Prototype-Test-Videos__Alphabet_4.mp4"
#: A 512x512 HDTF-style crop whose face the full-range detector misses once it is cropped tighter.
PORTRAIT = "train/OpenTalker__SadTalker__test__examples__source_image__WDA_BobMenendez_000.mp4"
#: A 512x512 anchor crop, used as a small face in a wide shot.
ANCHOR = "train/sstzal__DFRF__dataset__vids__cnn2_25fps.mp4"


def _frames(path, n=50):
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(frame_to_rgb(f))
            if len(out) == n:
                break
    return out


def _found_share(frames) -> float:
    tr = FaceTracker(max_faces=2)
    for im in frames:
        tr.update(np.ascontiguousarray(im))
    tr.close()
    return max((t.n_found for t in tr.tracks), default=0) / len(frames)


def test_sideways_phone_video_is_turned_upright_and_its_face_found():
    path = clip_path(SIDEWAYS)
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 90 and f.width > f.height  # stored sideways
        up = frame_to_rgb(f)
    assert up.shape[:2] == (f.width, f.height)  # shown upright: portrait
    ext = extract(path, max_faces=1)
    assert ext.tracks and ext.tracks[0].n_found >= 0.9 * ext.n_frames


@pytest.mark.parametrize("keep", [0.6, 0.5])
def test_tight_face_crop_cut_at_forehead_and_chin(keep):
    """A 224x224 crop holding the middle of the face (the forehead and chin cut off), as VoxCeleb2/LRS crops."""
    frames = _frames(clip_path(PORTRAIT))
    h, w = frames[0].shape[:2]
    s = int(min(h, w) * keep)
    y0, x0 = int(h / 2 + 0.12 * h) - s // 2, w // 2 - s // 2
    tight = [cv2.resize(im[y0 : y0 + s, x0 : x0 + s], (224, 224), interpolation=cv2.INTER_AREA) for im in frames]
    assert _found_share(tight) >= 0.9


def test_small_face_in_a_wide_shot():
    """The anchor's 512-pixel crop shrunk to 80 pixels (a face of about 40) in a 1280x720 frame."""
    frames = _frames(clip_path(ANCHOR))
    wide = []
    for im in frames:
        small = cv2.resize(im, (80, 80), interpolation=cv2.INTER_AREA)
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        canvas[240:320, 256:336] = small
        wide.append(canvas)
    assert _found_share(wide) >= 0.9


def _track_of(path, **kw):
    with av.open(str(path)) as c:
        frames = [f for _, f in zip(range(60), c.decode(video=0))]
    tr = FaceTracker(max_faces=1, keep_crops=True, **kw)
    for f in frames:
        tr.update(f)  # PyAV frames: converted to RGB only around the face
    tr.close()
    t = max(tr.tracks, key=lambda t: t.n_found)
    return t.landmarks(len(frames)), t.crops, [frame_to_rgb(f) for f in frames]


def _assert_same_crop(luma: np.ndarray, whole: np.ndarray) -> None:
    """A grey crop read from the luma plane is the whole-frame RGB crop's grey to within rounding."""
    assert luma.shape == whole.shape and luma.dtype == np.uint8
    diff = np.abs(luma.astype(int) - whole)
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2, (diff.mean(), diff.max())


def test_crops_from_the_luma_plane_match_the_whole_frame_conversion():
    """The tracker cuts a 4:2:0 frame's grey mouth crops from its Y plane alone; they are the grey of the
    crop of the whole frame converted to RGB, to within a level (rounding; a clipped colour channel)."""
    from avsync.face.tracker import Picture, mouth_crop, mouth_crop_grey

    key, crops, rgb = _track_of(clip_path(PORTRAIT))
    with av.open(str(clip_path(PORTRAIT))) as c:
        frames = [f for _, f in zip(range(41), c.decode(video=0))]
    assert Picture.of(frames[0])._yuv is not None  # the clip is 4:2:0, so the luma path is the one tested
    seen = 0
    for i in (0, 17, 40):
        if crops[i] is not None:
            whole = cv2.cvtColor(mouth_crop(rgb[i], key[i]), cv2.COLOR_RGB2GRAY)
            _assert_same_crop(crops[i], whole)
            assert np.array_equal(crops[i], mouth_crop_grey(frames[i], key[i]))
            assert np.array_equal(mouth_crop_grey(rgb[i], key[i]), whole)  # an RGB frame: grey of its crop
            seen += 1
    assert seen == 3


def test_network_input_sampled_from_the_planes_matches_the_whole_frame_warp():
    """``Picture.sample`` resamples the landmark network's input from Y, U and V without converting the
    face region: the image is the whole-frame warp's to within rounding and chroma placement, outside the
    frame it is black, and the landmarks found on it are those found on the whole-frame warp."""
    from avsync.face.landmark_model import INPUT_SIDE, ROI_SCALE, LandmarkModel, roi_matrix
    from avsync.face.tracker import Picture

    key, _, rgb = _track_of(clip_path(PORTRAIT))
    with av.open(str(clip_path(PORTRAIT))) as c:
        frames = [f for _, f in zip(range(41), c.decode(video=0))]
    lm = LandmarkModel()
    for i in (0, 17, 40):
        cx, cy = np.nanmean(key[i][:, :2], axis=0)
        side = 2.5 * float(np.ptp(key[i][:, 0]))
        for angle in (0.0, 0.3):
            m = roi_matrix(cx, cy, side * ROI_SCALE, angle)
            whole = cv2.warpAffine(rgb[i], m, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            planes = Picture.of(frames[i]).sample(m, (INPUT_SIDE, INPUT_SIDE))
            assert planes.shape == whole.shape and planes.dtype == np.uint8
            diff = np.abs(planes.astype(int) - whole)
            assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 12
            a, _ = lm.run(lambda mm, sz: cv2.warpAffine(rgb[i], mm, sz, flags=cv2.INTER_LINEAR,
                                                        borderMode=cv2.BORDER_CONSTANT), cx, cy, side, angle)
            b, _ = lm.run(Picture.of(frames[i]).sample, cx, cy, side, angle)
            iod = float(np.hypot(*(a[263, :2] - a[33, :2])))
            assert np.abs(a[:, :2] - b[:, :2]).mean() < 0.005 * iod
    # a region reaching past the frame's corner is black there, as the whole-frame warp is
    m = roi_matrix(0.0, 0.0, 200.0, 0.0)
    corner = Picture.of(frames[0]).sample(m, (INPUT_SIDE, INPUT_SIDE))
    assert corner[: INPUT_SIDE // 2 - 2, : INPUT_SIDE // 2 - 2].max() <= 2


def test_mesh_on_every_other_frame_places_crops_from_interpolated_landmarks():
    """``mesh_every=2``: the frames between meshes keep a face (landmarks interpolated, close to the mesh's own)
    and a crop cut from their own pixels."""
    from avsync.face.tracker import mouth_crop

    path = clip_path(PORTRAIT)
    every, _, _ = _track_of(path)
    key, crops, rgb = _track_of(path, mesh_every=2)
    found1, found2 = np.isfinite(every).all((1, 2)), np.isfinite(key).all((1, 2))
    assert found2.sum() >= found1.sum() - 1  # at most the last frame, waiting for a next mesh, is left out
    both = found1 & found2
    iod = np.linalg.norm(every[both][:, 40, :2] - every[both][:, 43, :2], axis=1).mean()  # 33 and 263: eye corners
    err = np.linalg.norm(every[both][:, :40, :2] - key[both][:, :40, :2], axis=2).mean()
    assert err < 0.03 * iod, (err, iod)
    for i in (1, 3, 5):  # frames between meshes: their own pixels, placed by the interpolated landmarks
        assert found2[i] and crops[i] is not None
        _assert_same_crop(crops[i], cv2.cvtColor(mouth_crop(rgb[i], key[i]), cv2.COLOR_RGB2GRAY))


def test_landmark_rate_follows_the_models_calibration(monkeypatch):
    """A crop model runs the landmarks as often as its confidence was calibrated with (recorded in its
    calibration); a landmark model always on every frame; ``AVSYNC_MESH_EVERY`` overrides crop models only."""
    from avsync.api import load_model
    from avsync.extract import mesh_every_for
    from avsync.sync.confidence import Calibration

    monkeypatch.delenv("AVSYNC_MESH_EVERY", raising=False)
    crops, lips = load_model("pm-small"), load_model("landmark-wild")
    assert crops.input_key == "crops" and lips.input_key == "lips"
    assert mesh_every_for(crops) == 1 and mesh_every_for(lips) == 1  # the shipped calibrations record none
    cal = crops.calibration
    monkeypatch.setattr(crops, "calibration", Calibration(cal.coef, cal.intercept, cal.features,
                                                          {**(cal.fitted_on or {}), "mesh_every": 2}))
    assert mesh_every_for(crops) == 2
    monkeypatch.setattr(crops, "calibration", None)
    assert mesh_every_for(crops) == 1
    monkeypatch.setenv("AVSYNC_MESH_EVERY", "3")
    assert mesh_every_for(crops) == 3 and mesh_every_for(lips) == 1


def test_landmark_input_exact_for_lip_readers_planes_for_crop_readers():
    """Lip-landmark readers get the landmark network's input converted as the whole frame is, so their
    landmarks are bit for bit those found on whole-frame RGB; crop readers get the cheaper resample from
    the planes, which moves them a little (within the bound of the ``Picture.sample`` test)."""
    from avsync.api import load_model
    from avsync.extract import landmark_input_for

    assert landmark_input_for(load_model("pm-small")) == "planes"
    assert landmark_input_for(load_model("landmark-wild")) == "exact"
    assert landmark_input_for(load_model("modelfree")) == "exact"
    with pytest.raises(ValueError, match="landmark_input"):
        FaceTracker(landmark_input="fast")

    path = clip_path(PORTRAIT)
    exact, _, rgb = _track_of(path)  # the default: "exact"
    tr = FaceTracker(max_faces=1)
    for im in rgb:
        tr.update(im)  # whole frames already in RGB
    tr.close()
    whole = max(tr.tracks, key=lambda t: t.n_found).landmarks(len(rgb))
    assert np.isfinite(exact).all() and np.array_equal(exact, whole)
    planes, _, _ = _track_of(path, landmark_input="planes")
    iod = np.linalg.norm(exact[:, 40, :2] - exact[:, 43, :2], axis=1).mean()
    moved = np.linalg.norm(planes[:, :40, :2] - exact[:, :40, :2], axis=2).mean()
    assert 0 < moved < 0.01 * iod, (moved, iod)
