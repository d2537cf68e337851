"""Planning the spans a file is read in (sync/segments.py): pure maths on per-frame masks."""
import numpy as np

from avsync.sync.segments import (
    MAX_SPEECH_S,
    NO_FACE,
    NO_SPEECH,
    TARGET_SPEECH_S,
    TOO_LITTLE,
    Span,
    choose,
    plan_segments,
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
