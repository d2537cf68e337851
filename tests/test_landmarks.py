"""Geometry on face-mesh key points (avsync.face.landmarks); hand-made shapes, no video."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.face import landmarks as lm


def _rotation(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _rot_z(angle):
    return _rotation([0, 0, 1], angle)


# --- similarity_align ----------------------------------------------------------------------------


def test_similarity_align_recovers_known_rotation_scale_translation():
    rng = np.random.default_rng(0)
    dst = rng.normal(size=(18, 3)) * [30, 40, 10]
    frames, rots, scales, shifts = [], [], [], []
    for t in range(5):
        r = _rotation(rng.normal(size=3), rng.uniform(-1.2, 1.2))
        s = rng.uniform(0.4, 3.0)
        tr = rng.normal(size=3) * 100
        frames.append(s * dst @ r.T + tr)
        rots.append(r), scales.append(s), shifts.append(tr)
    src = np.stack(frames)
    out = lm.similarity_align(src, dst)
    assert out.shape == src.shape
    np.testing.assert_allclose(out, np.broadcast_to(dst, src.shape), atol=1e-8)


def test_similarity_align_carries_other_points_with_the_same_transform():
    rng = np.random.default_rng(1)
    dst = rng.normal(size=(18, 3)) * 20
    extra = rng.normal(size=(40, 3)) * 5 + [0, 30, 0]  # e.g. lips, in dst's frame
    r, s, tr = _rotation([1, 2, 3], 0.7), 1.7, np.array([300.0, -20.0, 5.0])
    src = (s * dst @ r.T + tr)[None]
    carry = (s * extra @ r.T + tr)[None]
    out = lm.similarity_align(src, dst, carry=carry)
    assert out.shape == (1, 40, 3)
    np.testing.assert_allclose(out[0], extra, atol=1e-8)


def test_similarity_align_never_reflects():
    rng = np.random.default_rng(2)
    dst = rng.normal(size=(18, 3))
    mirrored = dst * [-1, 1, 1]  # a reflection cannot be undone by a rotation
    out = lm.similarity_align(mirrored[None], dst)[0]
    # The result is a proper rotation of the input, so it cannot match dst exactly ...
    assert np.abs(out - dst).max() > 1e-3
    # ... and its handedness (signed volume of the first 3 centred points) is preserved.
    def vol(p):
        c = p - p.mean(0)
        return np.linalg.det(c[:3])
    assert np.sign(vol(out)) == np.sign(vol(mirrored))


# --- a hand-made mouth -----------------------------------------------------------------------------


def _ring(indices, a, b):
    """Points of a LIP_OUTER/LIP_INNER contour on an ellipse (semi-axes a, b).

    Both contours start at the left corner, run along the lower lip to the
    right corner (position 10) and back along the upper lip; position 5 is
    the lower middle, 15 the upper middle.
    """
    n = len(indices)
    theta = np.pi + 2 * np.pi * np.arange(n) / n
    return np.stack([a * np.cos(theta), b * np.sin(theta), np.zeros(n)], axis=1)


def _mouth(outer_a, outer_b, inner_a, inner_b):
    lips = np.zeros((lm.N_LIP, 3))
    lips[: len(lm.LIP_OUTER)] = _ring(lm.LIP_OUTER, outer_a, outer_b)
    lips[len(lm.LIP_OUTER) :] = _ring(lm.LIP_INNER, inner_a, inner_b)
    return lips


def test_named_mouth_points_are_where_the_ring_puts_them():
    lips = _mouth(1.0, 0.5, 0.8, 0.2)
    # Sanity of the hand-made mouth against the module's named positions.
    np.testing.assert_allclose(lips[lm.LEFT_CORNER, :2], [-1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(lips[lm.RIGHT_CORNER, :2], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(lips[lm.LOWER_INNER, :2], [0.0, -0.2], atol=1e-12)
    np.testing.assert_allclose(lips[lm.UPPER_INNER, :2], [0.0, 0.2], atol=1e-12)


def test_lip_features_of_a_hand_made_mouth():
    closed = _mouth(0.5, 0.2, 0.4, 0.0)
    open_ = _mouth(0.45, 0.35, 0.35, 0.15)
    lips = np.stack([closed, open_, np.full((lm.N_LIP, 3), np.nan)])
    f = lm.lip_features(lips)
    assert f.shape == (3, len(lm.LIP_FEATURE_NAMES))
    col = {name: i for i, name in enumerate(lm.LIP_FEATURE_NAMES)}
    regular_20gon = 10 * np.sin(2 * np.pi / 20)  # area of a 20-gon inscribed in the unit circle
    # closed mouth
    assert f[0, col["inner_gap"]] == pytest.approx(0.0, abs=1e-12)
    assert f[0, col["outer_gap"]] == pytest.approx(0.4)
    assert f[0, col["width"]] == pytest.approx(1.0)
    assert f[0, col["inner_area"]] == pytest.approx(0.0, abs=1e-12)
    # open mouth
    assert f[1, col["inner_gap"]] == pytest.approx(0.30)
    assert f[1, col["outer_gap"]] == pytest.approx(0.70)
    assert f[1, col["width"]] == pytest.approx(0.90)
    assert f[1, col["inner_area"]] == pytest.approx(regular_20gon * 0.35 * 0.15)
    # a lost frame stays lost
    assert np.isnan(f[2]).all()


# --- normalise_lips ----------------------------------------------------------------------------------


def _face_track(n_frames=12, seed=3):
    """Key points (T, 58, 3) of a still head whose mouth opens and closes."""
    rng = np.random.default_rng(seed)
    n_rigid = len(lm.RIGID_INDICES)
    rigid = rng.normal(size=(n_rigid, 3)) * [25, 25, 8] + [0, -40, 0]
    # Put the outer eye corners where eyes are, 60 px apart.
    rigid[lm.LEFT_EYE_OUTER - lm.N_LIP] = [-30, -50, 0]
    rigid[lm.RIGHT_EYE_OUTER - lm.N_LIP] = [30, -50, 0]
    key = np.zeros((n_frames, len(lm.KEY_INDICES), 3))
    for t in range(n_frames):
        opening = 6 + 5 * np.sin(t)
        key[t, : lm.N_LIP] = _mouth(22, 6 + opening, 17, opening) + [0, 30, 0]
        key[t, lm.N_LIP :] = rigid
    return key


def test_normalise_lips_units_are_interocular_distances():
    key = _face_track()
    lips = lm.normalise_lips(key)
    f = lm.lip_features(lips)
    raw = lm.lip_features(key[:, : lm.N_LIP])
    # The head never moves, so normalising only divides by the 60 px eye distance.
    np.testing.assert_allclose(f, raw / np.array([60, 60, 60, 3600]), rtol=1e-6, atol=1e-9)


def test_normalise_lips_removes_per_frame_pose_and_size():
    key = _face_track()
    rng = np.random.default_rng(4)
    moved = key.copy()
    for t in range(len(key)):
        r = _rot_z(rng.uniform(-0.6, 0.6))  # head roll
        s = rng.uniform(0.5, 2.5)  # distance to camera
        tr = np.r_[rng.uniform(-200, 200, size=2), 0.0]
        moved[t] = s * key[t] @ r.T + tr
    f_still = lm.lip_features(lm.normalise_lips(key))
    f_moved = lm.lip_features(lm.normalise_lips(moved))
    np.testing.assert_allclose(f_moved, f_still, rtol=1e-6, atol=1e-9)
    # ... while the raw pixel features do change with pose and size.
    raw_still = lm.lip_features(key[:, : lm.N_LIP])
    raw_moved = lm.lip_features(moved[:, : lm.N_LIP])
    assert np.abs(raw_moved - raw_still).max() > 1.0


def test_normalise_lips_is_equivariant_to_a_global_rotation_and_scale():
    key = _face_track()
    r = _rotation([0.3, -1.0, 0.4], 0.9)
    moved = 2.3 * key @ r.T + [50.0, -7.0, 3.0]
    a = lm.normalise_lips(key)
    b = lm.normalise_lips(moved)
    # Scale and translation vanish; the whole result turns with the rotation.
    np.testing.assert_allclose(b, a @ r.T, atol=1e-8)
    # In-plane (roll) rotation + scale leaves the 2-D mouth measures unchanged.
    roll = 0.5 * key @ _rot_z(1.1).T + [10.0, 20.0, 0.0]
    np.testing.assert_allclose(lm.lip_features(lm.normalise_lips(roll)), lm.lip_features(a), rtol=1e-6, atol=1e-9)


def test_normalise_lips_marks_invalid_frames_nan():
    key = _face_track()
    key[3] = np.nan
    out = lm.normalise_lips(key)
    assert out.shape == (len(key), lm.N_LIP, 3)
    assert np.isnan(out[3]).all()
    assert np.isfinite(np.delete(out, 3, axis=0)).all()
    assert np.isnan(lm.normalise_lips(np.full_like(key, np.nan))).all()
