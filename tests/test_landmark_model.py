"""The face-landmark network run directly (``face.landmark_model``) against MediaPipe's FaceMesh solution."""
from __future__ import annotations

import av
import numpy as np
import pytest

from avsync.face.landmark_model import INPUT_SIDE, LandmarkModel, eye_angle, roi_matrix

from conftest import clip_path


def test_roi_matrix_centres_scales_and_levels():
    m = roi_matrix(300.0, 200.0, 96.0, np.deg2rad(20))
    assert np.allclose(m[:, :2] @ [300.0, 200.0] + m[:, 2], [INPUT_SIDE / 2] * 2)
    # a segment at +20 degrees through the centre comes out level, twice as long (96 px -> 192 px)
    d = np.array([np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))]) * 10
    out = m[:, :2] @ d
    assert abs(out[1]) < 1e-9 and np.isclose(out[0], 20.0)


def test_eye_angle():
    pts = np.zeros((468, 3))
    pts[33, :2], pts[263, :2] = (10, 10), (20, 20)
    assert np.isclose(eye_angle(pts), np.pi / 4)


@pytest.fixture(scope="module")
def both_meshes():
    """Per frame of a train-split clip: MediaPipe FaceMesh's 468 points on the whole frame, and the
    network's on the region placed from the previous frame's FaceMesh points (as the tracker places it)."""
    from avsync.face.tracker import import_mediapipe

    mp = import_mediapipe()
    path = clip_path("train/OpenTalker__video-retalking__1.mp4")
    model = LandmarkModel()
    ref, ours, presence = [], [], []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as fm, av.open(str(path)) as c:
        prev = None
        for k, frame in enumerate(c.decode(video=0)):
            if k >= 60:
                break
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            res = fm.process(rgb)
            assert res.multi_face_landmarks, "FaceMesh lost the face of a plain talking-head clip"
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark])
            if prev is not None:
                lo, hi = prev[:, :2].min(0), prev[:, :2].max(0)
                (cx, cy), side = (lo + hi) / 2, float((hi - lo).max())

                def warp(m, size):
                    import cv2

                    return cv2.warpAffine(rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

                got, p = model.run(warp, cx, cy, 1.5 * side, eye_angle(prev))
                ref.append(pts)
                ours.append(got)
                presence.append(p)
            prev = pts
    return np.array(ref), np.array(ours), np.array(presence)


def test_network_agrees_with_facemesh(both_meshes):
    ref, ours, presence = both_meshes
    iod = np.linalg.norm(ref[:, 33, :2] - ref[:, 263, :2], axis=1)
    err = np.linalg.norm(ours[:, :, :2] - ref[:, :, :2], axis=2) / iod[:, None]
    lips = [0, 13, 14, 17, 61, 291]
    assert presence.min() > 0.9
    assert err.mean() < 0.01, f"mean point error {err.mean():.4f} of the inter-ocular distance"
    assert np.percentile(err[:, lips].mean(1), 95) < 0.02
    # the mouth opening the sync models read moves the same way
    gap_ref = ref[:, 14, 1] - ref[:, 13, 1]
    gap_ours = ours[:, 14, 1] - ours[:, 13, 1]
    assert np.corrcoef(gap_ref, gap_ours)[0, 1] > 0.95


def test_a_region_without_a_face_is_not_a_face():
    model = LandmarkModel()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    import cv2

    _, p = model.run(lambda m, size: cv2.warpAffine(noise, m, size), 200.0, 200.0, 150.0, 0.0)
    assert p < 0.5
