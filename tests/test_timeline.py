"""The offset-over-time model choice (sync/timeline.py): pure maths on segment readings."""
import numpy as np
import pytest

from avsync.sync.timeline import fit_timeline

FRAME_MS = 40.0


def _segments(duration_s, seg_s=4.0):
    starts = np.arange(0.0, duration_s - seg_s + 1e-9, seg_s)
    return starts, starts + seg_s


def _noisy(truth, rng, noise_ms=8.0, outliers=0):
    y = truth + rng.normal(0, noise_ms, len(truth))
    idx = rng.choice(len(truth), outliers, replace=False)
    y[idx] += rng.choice([-1, 1], outliers) * rng.uniform(120, 400, outliers)
    return y


@pytest.mark.parametrize("seed", range(5))
def test_constant_with_outliers_stays_constant(seed):
    rng = np.random.default_rng(seed)
    s, e = _segments(300)
    y = _noisy(np.full(len(s), 80.0), rng, outliers=len(s) // 6)
    tl = fit_timeline(s, e, y, np.full(len(s), 0.7), FRAME_MS)
    assert tl.kind == "constant"
    assert abs(tl.offset_ms - 80.0) < 8
    assert tl.change_points_s == () and tl.drift_ms_per_min == 0.0
    assert np.allclose(tl.offset_at([0, 150, 299]), tl.offset_ms)


@pytest.mark.parametrize("seed", range(5))
def test_linear_drift_is_found_with_its_rate(seed):
    rng = np.random.default_rng(seed)
    s, e = _segments(42 * 60, seg_s=8.0)
    rate = 4.3  # ms per minute: 0 -> ~180 ms over 42 min
    t = 0.5 * (s + e)
    y = _noisy(rate * t / 60.0, rng, noise_ms=12.0, outliers=len(s) // 8)
    tl = fit_timeline(s, e, y, np.full(len(s), 0.6), FRAME_MS)
    assert tl.kind == "linear"
    assert abs(tl.drift_ms_per_min - rate) < 0.2 * rate
    assert abs(tl.offset_at(0.0) - 0.0) < 15
    assert abs(tl.offset_at(42 * 60) - 180.6) < 20


@pytest.mark.parametrize("seed", range(5))
def test_edit_gives_a_change_point(seed):
    rng = np.random.default_rng(seed)
    s, e = _segments(60, seg_s=3.0)
    t = 0.5 * (s + e)
    truth = np.where(t < 31.0, 0.0, 7 * FRAME_MS)
    y = _noisy(truth, rng, outliers=2)
    tl = fit_timeline(s, e, y, np.full(len(s), 0.8), FRAME_MS)
    assert tl.kind == "piecewise"
    assert len(tl.change_points_s) == 1
    assert abs(tl.change_points_s[0] - 31.0) <= 3.0  # within one segment
    assert [round(p.offset_ms / FRAME_MS) for p in tl.pieces] == [0, 7]
    assert tl.offset_at(10.0) == pytest.approx(tl.pieces[0].offset_ms)
    assert tl.offset_at(50.0) == pytest.approx(tl.pieces[1].offset_ms)


def test_sub_frame_changes_are_not_worth_a_more_complex_model():
    # A half-frame step and a half-frame drift: not enough to leave "constant".
    s, e = _segments(120)
    t = 0.5 * (s + e)
    for truth in (np.where(t < 60, 0.0, 0.5 * FRAME_MS), 0.5 * FRAME_MS * t / 120):
        tl = fit_timeline(s, e, truth, np.ones(len(s)), FRAME_MS)
        assert tl.kind == "constant"


def test_one_wild_reading_buys_no_change_point():
    s, e = _segments(40)
    y = np.zeros(len(s))
    y[-1] = 400.0  # the last segment read wrong
    assert fit_timeline(s, e, y, np.ones(len(s)), FRAME_MS).kind == "constant"


def test_missing_readings_are_skipped_and_all_missing_gives_none():
    s, e = _segments(40)
    y = [None] * len(s)
    assert fit_timeline(s, e, y, np.ones(len(s)), FRAME_MS) is None
    y[3] = 120.0
    tl = fit_timeline(s, e, y, np.ones(len(s)), FRAME_MS)
    assert tl.kind == "constant" and tl.offset_ms == pytest.approx(120.0)


def test_to_dict_has_the_documented_fields():
    s, e = _segments(60, seg_s=3.0)
    t = 0.5 * (s + e)
    tl = fit_timeline(s, e, np.where(t < 30, 0.0, 200.0), np.ones(len(s)), FRAME_MS)
    d = tl.to_dict()
    assert set(d) >= {"kind", "offset_ms", "drift_ms_per_min", "change_points_s", "residual_ms"}
    assert d["kind"] == "piecewise" and d["change_points_s"] == [30.0]


def test_words_for_an_edit_and_for_drift():
    from avsync.sync.timeline import clock, describe

    s, e = _segments(1500, seg_s=10.0)
    t = 0.5 * (s + e)
    edit = fit_timeline(s, e, np.where(t < 751, 0.0, 200.0), np.ones(len(s)), FRAME_MS).to_dict()
    assert describe(edit, 40.0) == "audio is in sync until 12:30, then 200 ms late: an edit"
    s, e = _segments(42 * 60, seg_s=10.0)
    drift = fit_timeline(s, e, 4.3 * (0.5 * (s + e)) / 60, np.ones(len(s)), FRAME_MS).to_dict()
    words = describe(drift, 40.0)
    assert words.startswith("audio drifts from 0 ms to 181 ms late over 42 min (+4.3 ms/min)"), words
    ntsc = fit_timeline(s, e, 60.0 * (0.5 * (s + e)) / 60, np.ones(len(s)), FRAME_MS).to_dict()
    assert "1000/1001 (NTSC)" in describe(ntsc, 40.0)
    assert describe(fit_timeline(s, e, np.zeros(len(s)), np.ones(len(s)), FRAME_MS).to_dict(), 40.0) is None
    assert clock(3725.4) == "1:02:05" and clock(59.6) == "1:00"


def test_a_short_clip_with_one_wrong_reading_is_not_drift():
    # The split-screen interview's four segments, one read wrong: no drift claimed.
    s, e = np.array([0.0, 4.4, 8.48, 13.16]), np.array([4.4, 8.48, 13.16, 17.52])
    tl = fit_timeline(s, e, [-40.0, -35.0, -301.0, 9.0], [0.61, 0.84, 0.75, 0.88], FRAME_MS)
    assert tl.kind == "constant"


def test_drift_across_cuts_with_per_shot_offsets_is_a_line():
    # Readings of a drifting file cut from several sources: each shot sits up to a frame off on its own
    # (as HDTF clips do), so they scatter by more than the half-frame floor of sigma. The line must
    # still win, with its rate: sigma follows the readings' own scatter (reading_scatter).
    from avsync.sync.timeline import reading_scatter

    rng = np.random.default_rng(3)
    frame = 40.0
    bias = np.tile([30.0, -30.0], 6)  # shots from two sources in turn, each 0.75 frame off
    t0 = np.repeat(np.arange(12) * 7.0, 2)
    start, end = t0 + np.tile([0.0, 3.5], 12), t0 + np.tile([3.5, 7.0], 12)
    mid = 0.5 * (start + end)
    y = 60.0 * mid / 60.0 + np.repeat(bias, 2) + rng.normal(0, 8, len(mid))
    assert reading_scatter(y) > 0.5 * frame
    tl = fit_timeline(start, end, y, np.full(len(y), 0.8), frame)
    assert tl.kind == "linear"
    assert abs(tl.drift_ms_per_min - 60.0) < 0.2 * 60.0
    flat = fit_timeline(start, end, y - mid, np.full(len(y), 0.8), frame)
    assert flat.kind == "constant"


def test_an_edit_at_a_cut_with_one_reading_a_side_is_a_change_point():
    # Two speakers joined at a cut, the second 7 frames late; each shot of 8 s is read as one or two
    # segments (the readings of a real two-speaker join, benchmarks/real_footage.py): without the cut
    # the lone reading of a shot is an outlier; at a cut it is a change point, placed at the cut.
    s, e = np.array([0.0, 8.0, 12.0]), np.array([8.0, 12.0, 15.7])
    y, c = [66.0, 358.9, 319.6], [0.98, 0.98, 0.91]
    assert fit_timeline(s, e, y, c, FRAME_MS).kind == "constant"
    tl = fit_timeline(s, e, y, c, FRAME_MS, shot=[0, 1, 1])
    assert tl.kind == "piecewise" and tl.change_points_s == (8.0,)
    assert abs(tl.pieces[0].offset_ms - 66.0) < 1 and abs(tl.pieces[1].offset_ms - 340.0) < 25
    # one reading on each side
    tl = fit_timeline([0.0, 8.0], [8.0, 15.8], [7.6, 213.2], [0.99, 0.97], FRAME_MS, shot=[0, 1])
    assert tl.kind == "piecewise" and tl.change_points_s == (8.0,)


def test_shots_that_agree_within_a_frame_stay_constant():
    # Cuts between shots read a fraction of a frame apart are no edit; nor is one wild reading in a shot of
    # two readings: a piece of one reading must be a whole shot.
    s, e = _segments(40, seg_s=4.0)
    y = 50.0 + np.tile([10.0, -10.0], len(s) // 2)
    shots = np.repeat(np.arange(len(s) // 2), 2)
    assert fit_timeline(s, e, y, np.full(len(s), 0.9), FRAME_MS, shot=shots).kind == "constant"
    y2 = y.copy()
    y2[3] += 300.0  # the second reading of shot 1
    assert fit_timeline(s, e, y2, np.full(len(s), 0.9), FRAME_MS, shot=shots).kind == "constant"
    # Nor is one wild reading alone in its own shot among ten: its cost is capped (an outlier costs at
    # most 4 x its weight), below the price of a change at a cut (CUT_CHANGE_PARAMS x ln 10).
    y3 = y.copy()
    y3[-1] += 300.0
    one = np.append(shots[:-1], shots[-1] + 1)
    assert fit_timeline(s, e, y3, np.full(len(s), 0.9), FRAME_MS, shot=one).kind == "constant"
    # Two readings of the last shot 300 ms off are an edit at its cut.
    y4 = y.copy()
    y4[-2:] += 300.0
    tl = fit_timeline(s, e, y4, np.full(len(s), 0.9), FRAME_MS, shot=shots)
    assert tl.kind == "piecewise" and tl.change_points_s == (32.0,)
