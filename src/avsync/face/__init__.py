"""Faces and lips: detection, tracking, landmark normalisation and mouth crops."""
from avsync.face.landmarks import (
    KEY_INDICES,
    LIP_INDICES,
    lip_features,
    normalise_lips,
)
from avsync.face.tracker import FaceTrack, FaceTracker

__all__ = [
    "KEY_INDICES",
    "LIP_INDICES",
    "FaceTrack",
    "FaceTracker",
    "lip_features",
    "normalise_lips",
]
