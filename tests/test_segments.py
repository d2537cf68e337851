"""Planning the spans a file is read in (sync/segments.py): pure maths on per-frame masks."""
import numpy as np
import pytest

from avsync.sync.segments import (
    MAX_SPEECH_S,
    NO_FACE,
    NO_SPEECH,
    TARGET_SPEECH_S,
    TOO_LITTLE,
    Span,
    Segment,
    choose,
    plan_segments,
    pool_curves,
    speaking_seconds,
)

FPS = 25.0
DT = 1 / FPS


def _frames(seconds):
    return int(round(seconds * FPS))


def _check_cover(spans, n):
    assert spans[0].start == 0 and spans[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))


def test_continuous_speech_is_cut_in_target_sized_spans():
    n = _frames(29)
    spans = plan_segments(np.ones(n, bool), np.ones(n, bool), np.zeros(n, int), DT)
    _check_cover(spans, n)
    assert all(s.reason is None for s in spans)
    assert all(TARGET_SPEECH_S - DT <= s.speech_s <= MAX_SPEECH_S for s in spans)
    assert len(spans) == 7  # 7 x 4 s, the last 1 s joins the one before it


def test_spans_never_cross_a_cut_and_short_shots_are_still_read():
    n = _frames(12)
    shot = np.zeros(n, int)
    shot[_frames(5):] = 1
    shot[_frames(6):] = 2  # a 1 s shot
    spans = plan_segments(np.ones(n, bool), np.ones(n, bool), shot, DT)
    _check_cover(spans, n)
    for s in spans:
        assert len(set(shot[s.start:s.stop])) == 1
    assert any(s.shot == 1 and s.reason is None and abs(s.speech_s - 1.0) < 1e-6 for s in spans)


def test_silence_and_faceless_stretches_are_their_own_unread_spans():
    n = _frames(20)
    heard = np.ones(n, bool)
    seen = np.ones(n, bool)
    heard[_frames(5):_frames(9)] = False   # 4 s of silence
    seen[_frames(13):_frames(16)] = False  # 3 s with no face
    heard[_frames(2):_frames(2.5)] = False  # a short pause: stays inside a read span
    spans = plan_segments(heard, seen, np.zeros(n, int), DT)
    _check_cover(spans, n)
    reasons = [(round(s.start * DT, 2), round(s.stop * DT, 2), s.reason) for s in spans if s.reason]
    assert reasons == [(5.0, 9.0, NO_SPEECH), (13.0, 16.0, NO_FACE)]


def test_a_tiny_read_span_is_marked_too_little():
    n = _frames(0.4)
    spans = plan_segments(np.ones(n, bool), np.ones(n, bool), np.zeros(n, int), DT)
    assert [s.reason for s in spans] == [TOO_LITTLE]


class _R:
    def __init__(self, lag_s, confidence, peak=1.0):
        self.lag_s, self.confidence, self.peak = lag_s, confidence, peak


def test_choose_takes_the_most_confident_face_and_keeps_reasons():
    times = np.arange(_frames(12)) * DT + 3.0  # a clock that does not start at 0
    spans = [Span(0, 100, 0, 4.0), Span(100, 200, 0, 4.0), Span(200, 300, 0, 0.0, NO_SPEECH)]
    per_face = {0: {0: _R(0.04, 0.9), 1: _R(0.2, 0.3)}, 3: {1: _R(0.0, 0.8)}}
    segs = choose(spans, times, FPS, per_face)
    assert [(g.face, g.offset_ms) for g in segs] == [(0, 40.0), (3, 0.0), (None, None)]
    assert segs[0].start_s == 0.0 and segs[1].start_s == 4.0 and segs[2].end_s == 12.0
    assert segs[2].reason == NO_SPEECH


def test_locate_change_finds_the_split_despite_noise():
    from avsync.sync.segments import locate_change

    rng = np.random.default_rng(0)
    c = np.arange(0.5, 10.0, 0.2)
    m = np.where(c < 6.3, -1.0, 1.0) + rng.normal(0, 0.8, len(c))
    m[3] = np.nan
    assert abs(locate_change(c, m) - 6.3) <= 0.4
    assert locate_change(c, np.zeros(len(c))) is None


def test_speaking_seconds_add_up_each_faces_segments():
    segs = [Segment(0, 4, 40.0, 0.9, 2, 0, 3.5), Segment(4, 8, None, 0.0, None, 0, 0.0, NO_SPEECH),
            Segment(8, 12, 0.0, 0.5, 5, 1, 1.25), Segment(12, 16, 40.0, 0.8, 2, 1, 4.0)]
    assert speaking_seconds(segs) == {2: 7.5, 5: 1.25}


def test_pooled_curve_is_the_speaking_time_weighted_mean_of_the_faces_curves():
    lags = np.arange(-5, 6)  # frames
    # Face A speaks 6 s and peaks (modestly) at +2; face B speaks 2 s and peaks higher at -3.
    a = np.where(lags == 2, 0.10, 0.0) + 0.01 * np.cos(lags)
    b = np.where(lags == -3, 0.25, 0.0) + 0.01 * np.sin(lags)
    pooled = pool_curves([a, b], [6.0, 2.0])
    np.testing.assert_allclose(pooled, (6 * a + 2 * b) / 8)
    assert lags[np.argmax(pooled)] == 2  # an unweighted mean (or the sum of B's larger scores) would pick -3
    assert lags[np.argmax(pool_curves([a, b], [1.0, 1.0]))] == -3
    assert lags[np.argmax(pool_curves([a, b], [2.0, 6.0]))] == -3
    # a mean, not a sum: one face's curve pooled with itself is that curve, whatever the weights
    np.testing.assert_allclose(pool_curves([a, a], [6.0, 2.0]), a)
    # a face with weight 0 does not enter, however large its scores
    np.testing.assert_allclose(pool_curves([a, 100 * b], [1.0, 0.0]), a)


def test_pooled_curve_renormalises_where_a_face_has_no_score():
    a = np.array([0.1, 0.2, 0.3, np.nan])
    b = np.array([0.5, np.nan, 0.1, np.nan])
    pooled = pool_curves([a, b], [3.0, 1.0])
    np.testing.assert_allclose(pooled[[0, 2]], [(0.3 + 0.5) / 4, (0.9 + 0.1) / 4])
    assert pooled[1] == pytest.approx(0.2) and np.isnan(pooled[3])
    assert np.isnan(pool_curves([a, b], [0.0, 0.0])).all()
