"""Streams that start at different times, frame rates other than the analysis rate (real clips, rewritten)."""

import av
import numpy as np
import pytest

import avsync
from conftest import clip_path
from mediagen import RATE, fps_of, read_audio, read_video, write

CLIP = "dev/facebookresearch__VisualVoice__noisy_restaurant.mp4"  # 9 s, 25 fps: 3 s less audio used to read "truncated"


def _write(src, dst, audio_from_s):
    """Video as in ``src``; audio as in ``src`` but only from ``audio_from_s`` on, with its true timestamps."""
    v = read_video(src)
    return write(dst, v, fps_of(v), read_audio(src)[int(round(audio_from_s * RATE)):], audio_start_s=audio_from_s)


@pytest.fixture(scope="module")
def reference():
    return avsync.detect(clip_path(CLIP))


def test_audio_that_starts_three_seconds_late_is_not_truncated(tmp_path, reference):
    late = _write(clip_path(CLIP), tmp_path / "late_audio.mkv", audio_from_s=3.0)
    with av.open(str(late)) as c:
        first = next(p for p in c.demux(audio=0) if p.pts is not None)
        assert abs(float(first.pts * first.time_base) - 3.0) < 0.01  # the audio really starts at 3 s
    r = avsync.detect(late)
    assert abs(r.offset_ms - reference.offset_ms) <= 40.0, (r.offset_ms, reference.offset_ms)
    assert r.fps == pytest.approx(25.0, abs=0.01)


def _retime(src, dst, out_fps, drop=None):
    """Re-time ``src``'s video to ``out_fps`` (each output frame shows the source frame on screen at its
    time), dropping output frames inside ``drop = (start_s, end_s)``; audio kept as it is."""
    v = read_video(src)
    times = [t for t, _ in v]
    end = times[-1] + (times[-1] - times[-2])
    out = []
    for k in range(int(np.ceil(end * out_fps - 1e-6))):
        t = k / out_fps
        if not (drop and drop[0] <= t < drop[1]):
            out.append((t, v[max(0, min(len(v) - 1, int(np.searchsorted(times, t + 1e-6)) - 1))][1]))
    return write(dst, out, out_fps, read_audio(src))


@pytest.mark.parametrize("out_fps", [60, 120])
def test_high_frame_rates_report_their_own_frames(tmp_path, reference, out_fps):
    conv = _retime(clip_path(CLIP), tmp_path / f"at{out_fps}.mkv", out_fps)
    r = avsync.detect(conv)
    assert r.fps == pytest.approx(out_fps, abs=0.01)
    assert r.tolerance_ms == pytest.approx(1000 / out_fps, abs=0.1)
    assert r.offset_frames == pytest.approx(r.offset_ms * out_fps / 1000, abs=0.01)
    assert abs(r.offset_ms - reference.offset_ms) <= 40.0  # the reading itself does not move


def test_a_hole_in_the_video_keeps_the_frame_rate_and_the_reading(tmp_path, reference):
    holed = _retime(clip_path(CLIP), tmp_path / "hole.mkv", 25, drop=(2.0, 7.0))
    r = avsync.detect(holed)
    assert r.fps == pytest.approx(25.0, abs=0.01)
    assert abs(r.offset_ms - reference.offset_ms) <= 40.0, (r.offset_ms, reference.offset_ms)


def test_a_hole_in_the_audio_keeps_what_follows_at_its_time(tmp_path, reference):
    v = read_video(clip_path(CLIP))
    a = read_audio(clip_path(CLIP))
    holed = write(tmp_path / "audio_hole.mkv", v, fps_of(v), a, audio_hole=(1.024, 3.072))
    r = avsync.detect(holed)
    after = [s for s in r.segments if s["start_s"] >= 3.0 and s["offset_ms"] is not None]
    assert after, r.segments
    assert abs(r.offset_ms - reference.offset_ms) <= 40.0, (r.offset_ms, reference.offset_ms)


def test_variable_frame_rate_keeps_the_reading(tmp_path, reference):
    v = read_video(clip_path(CLIP))
    # First half at 25 fps, second half at 12.5 fps (every other frame dropped): a VFR file.
    half = len(v) // 2
    vfr = v[:half] + v[half::2]
    r = avsync.detect(write(tmp_path / "vfr.mkv", vfr, 25, read_audio(clip_path(CLIP))))
    assert abs(r.offset_ms - reference.offset_ms) <= 40.0, (r.offset_ms, reference.offset_ms)


@pytest.mark.parametrize("timeline", [None, {"kind": "linear", "offset_ms": 40.0, "drift_ms_per_min": 0.0,
                                             "change_points_s": [], "pieces": [], "span_s": [0.0, 6.0]}], ids=["shift", "warp"])
def test_fix_fills_a_hole_in_the_audio_with_silence_and_keeps_what_follows_at_its_time(tmp_path, timeline):
    """A file whose audio stream jumps over 2 s (no packets there) comes out of `fix` with silence of that length
    in the hole, and every other sample where the shift puts it: the audio after the hole stays with its lips."""
    src = clip_path(CLIP)
    v = read_video(src)
    a = np.clip(read_audio(src)[: 6 * RATE], -1, 1)  # as mediagen writes it (s16)
    hole = (1.024, 3.072)  # whole 4096-sample packets of mediagen's
    holed = write(tmp_path / "audio_hole.mkv", v[:150], fps_of(v), a, audio_hole=hole)
    out = tmp_path / "fixed.mkv"
    avsync.correct(holed, out, offset_ms=40.0, timeline=timeline)
    got = read_audio(out)
    shift = int(round(0.040 * RATE))  # advanced by 40 ms: output sample j is input sample j + shift
    want = a[shift:].copy()
    h0, h1 = int(hole[0] * RATE) - shift, int(hole[1] * RATE) - shift
    want[h0:h1] = 0.0
    assert len(got) == pytest.approx(len(a), abs=shift + 1)  # the hole kept its length (the shift pads the end)
    n = min(len(got), len(want)) - 2 * RATE // 10
    assert np.abs(got[h0:h1]).max() == 0.0
    # what follows the hole is where it belongs, to the sample (PCM: lossless, up to the s16 rounding)
    assert np.abs(got[h1:n] - want[h1:n]).max() < 2e-4 and np.abs(got[:h0] - want[:h0]).max() < 2e-4
