"""SyncResult: the wording of the answer, SyncNet's sign, and the JSON form."""
from __future__ import annotations

import json
import math

import pytest

from avsync.result import FaceInfo, SyncResult, WindowEstimate


def make_result(offset_ms=120.0, fps=25.0, confidence=2.5, tolerance_ms=40.0, reliable=True, **kw):
    frames = round(offset_ms * fps / 1000.0, 2)
    base = dict(
        path="/x/talk.mp4",
        offset_ms=offset_ms,
        offset_frames=frames,
        fps=fps,
        duration_s=3.0,
        confidence=confidence,
        in_sync=abs(offset_ms) <= tolerance_ms,
        tolerance_ms=tolerance_ms,
        tolerance_frames=tolerance_ms * fps / 1000.0,
        reliable=reliable,
        method="test",
        model="modelfree",
        search_ms=600.0,
    )
    base.update(kw)
    return SyncResult(**base)


def test_sentence_audio_late():
    s = make_result(120.0).sentence()
    assert s.startswith("audio is 120 ms late (3.0 frames at 25 fps)")
    assert "out of sync" in s and "±40 ms" in s
    assert "confidence 2.50" in s
    assert "early" not in s


def test_sentence_audio_early_uses_magnitudes():
    s = make_result(-80.0).sentence()
    assert s.startswith("audio is 80 ms early (2.0 frames at 25 fps)")
    assert "-" not in s.split(";")[0], "the sentence says early/late, not a signed number"
    assert "out of sync" in s


def test_sentence_zero_offset_says_line_up_and_in_sync():
    s = make_result(0.0).sentence()
    assert "line up" in s and "(0 ms)" in s
    assert "late" not in s and "early" not in s
    assert "-> in sync" in s


def test_sentence_ntsc_rate_and_low_confidence_note():
    s = make_result(100.1, fps=29.97, reliable=False, confidence=0.3,
                    caution="only 1.2 s of speech with a visible face").sentence()
    assert "3.0 frames at 29.97 fps" in s
    assert "low confidence (only 1.2 s of speech with a visible face): treat with caution" in s
    assert "low confidence" not in make_result(100.1, fps=29.97).sentence()


def test_sentence_half_ms_is_not_zero_ms_late():
    s = make_result(0.5).sentence()
    assert "0 ms late" not in s


@pytest.mark.parametrize(
    "frames, expected", [(3.0, -3), (-3.0, 3), (2.6, -3), (-0.4, 0), (0.0, 0), (7.49, -7), (-11.6, 12)]
)
def test_syncnet_offset_frames_has_the_opposite_sign(frames, expected):
    r = make_result(frames * 40.0)
    r.offset_frames = frames
    assert r.syncnet_offset_frames == expected
    assert isinstance(r.syncnet_offset_frames, int)


def test_correction_is_the_offset():
    assert make_result(-64.5).correction_ms == -64.5


def test_to_dict_is_strict_json_without_nan():
    r = make_result(
        40.0,
        confidence=float("nan"),
        faces=[FaceInfo(0, 70, 0.93, 0.0, 2.96, 140.0, None, float("nan"), True),
               FaceInfo(1, 10, 0.13, 1.0, 1.4, 30.0, float("inf"), 0.0, False)],
        windows=[WindowEstimate(0.0, 1.0, None, None, float("nan"))],
        curve={"lags_ms": [-40.0, 0.0, 40.0], "scores": [float("nan"), 0.5, float("-inf")]},
    )
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN/inf
    back = json.loads(text)
    assert back["syncnet_offset_frames"] == -1
    assert back["confidence"] is None
    assert back["faces"][0]["confidence"] is None and back["faces"][1]["offset_ms"] is None
    assert back["curve"]["scores"] == [None, 0.5, None]
    assert back["windows"][0]["confidence"] is None
    for key in ("offset_ms", "offset_frames", "fps", "duration_s", "confidence", "in_sync", "tolerance_ms",
                "syncnet_offset_frames", "correction_ms", "method", "model", "faces", "sentence"):
        assert key in back, key
    assert back["faces"][0]["active"] is True


def test_to_dict_keeps_finite_values():
    d = make_result(-120.0).to_dict()
    assert d["offset_ms"] == -120.0 and d["offset_frames"] == -3.0
    assert d["syncnet_offset_frames"] == 3
    assert d["in_sync"] is False
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in d.values())
