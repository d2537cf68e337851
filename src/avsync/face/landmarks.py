"""MediaPipe face-mesh landmark subsets and pure geometry on them.

Only a subset of the 468 mesh points is kept per frame (``KEY_INDICES``): the
40 lip points and a set of rigid points (eye corners, nose ridge, forehead,
temples) that move with the head but not with the jaw. The rigid points give
each frame's head pose and size, which are removed from the lips.
"""
from __future__ import annotations

import numpy as np

#: The 40 lip points of MediaPipe's FACEMESH_LIPS: 20 outer, 20 inner contour.
LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIP_INDICES = LIP_OUTER + LIP_INNER

#: Points that move rigidly with the skull (no jaw, no lips, no eyelids).
RIGID_INDICES = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 10, 151, 9, 234, 454, 127, 356, 1)

#: What the tracker stores per frame, in this order.
KEY_INDICES = LIP_INDICES + RIGID_INDICES

_POS = {mesh_idx: k for k, mesh_idx in enumerate(KEY_INDICES)}
N_LIP = len(LIP_INDICES)
RIGID_SLICE = slice(N_LIP, len(KEY_INDICES))

# Positions, within KEY_INDICES, of the named points used below.
UPPER_INNER, LOWER_INNER = _POS[13], _POS[14]
UPPER_OUTER, LOWER_OUTER = _POS[0], _POS[17]
LEFT_CORNER, RIGHT_CORNER = _POS[61], _POS[291]
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = _POS[33], _POS[263]
INNER_CONTOUR = [_POS[i] for i in LIP_INNER]


def similarity_align(src: np.ndarray, dst: np.ndarray, carry: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (Umeyama) of each frame of src (T,N,3) onto dst (N,3).

    Returns the aligned src (T,N,3); with ``carry`` (T,M,3), returns those points
    moved by each frame's same transform instead. Reflections are excluded.
    """
    mu_s = src.mean(1, keepdims=True)
    mu_d = dst.mean(0)
    s0 = src - mu_s
    cov = np.einsum("nd,tne->tde", dst - mu_d, s0) / src.shape[1]
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(sig.shape)
    sign[:, -1] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rot = u @ (sign[:, :, None] * vt)
    var_s = (s0**2).sum((1, 2)) / src.shape[1]
    scale = (sig * sign).sum(1) / np.where(var_s > 0, var_s, 1.0)
    pts = s0 if carry is None else carry - mu_s
    return scale[:, None, None] * np.einsum("tde,tne->tnd", rot, pts) + mu_d


def normalise_lips(key: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Remove head pose and size from the lip points.

    ``key`` is (T, len(KEY_INDICES), 3) in pixels. Each frame's rigid points are
    aligned (rotation, translation, scale) onto the track's mean rigid shape, and
    the result is divided by that shape's inter-ocular distance. Returns
    (T, 40, 3) lip points in inter-ocular units; frames not ``valid`` are NaN.
    """
    key = np.asarray(key, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(key).all(axis=(1, 2))
    out = np.full((len(key), N_LIP, 3), np.nan)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    rigid = key[idx][:, RIGID_SLICE]
    # Reference shape by generalised Procrustes: align all to the mean, twice.
    ref = rigid[0] - rigid[0].mean(0)
    for _ in range(2):
        ref = similarity_align(rigid, ref).mean(0)
        ref -= ref.mean(0)
    iod = float(np.linalg.norm(ref[RIGHT_EYE_OUTER - N_LIP] - ref[LEFT_EYE_OUTER - N_LIP])) or 1.0
    out[idx] = similarity_align(rigid, ref, carry=key[idx][:, :N_LIP]) / iod
    return out


def _polygon_area(xy: np.ndarray) -> np.ndarray:
    """Shoelace area of (T, N, 2) closed polygons."""
    x, y = xy[..., 0], xy[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y).sum(-1))


#: Names of the columns ``lip_features`` returns.
LIP_FEATURE_NAMES = ("inner_gap", "outer_gap", "width", "inner_area")


def lip_features(lips: np.ndarray) -> np.ndarray:
    """Per-frame mouth shape from normalised lips (T, 40, 3) -> (T, 4).

    Columns are ``LIP_FEATURE_NAMES``: inner-lip gap, outer-lip height, mouth
    width and inner-lip area, all in inter-ocular units. NaN rows stay NaN.
    """
    inner_gap = np.linalg.norm(lips[:, UPPER_INNER, :2] - lips[:, LOWER_INNER, :2], axis=-1)
    outer_gap = np.linalg.norm(lips[:, UPPER_OUTER, :2] - lips[:, LOWER_OUTER, :2], axis=-1)
    width = np.linalg.norm(lips[:, LEFT_CORNER, :2] - lips[:, RIGHT_CORNER, :2], axis=-1)
    area = _polygon_area(lips[:, INNER_CONTOUR, :2])
    return np.stack([inner_gap, outer_gap, width, area], axis=1)
