"""Time-varying audio corrections (correct/warp.py): sample-level maths on test signals."""
import numpy as np
import pytest

from avsync.correct.warp import AudioWarp, WarpPlan

RATE = 16_000


def _run(plan, src, blocks=(1000, 4096, 333, 7919)):
    w = AudioWarp(plan, RATE, src.shape[1])
    out, i, b = [], 0, 0
    while i < len(src):
        n = blocks[b % len(blocks)]
        out.append(w.push(src[i : i + n]))
        i += n
        b += 1
    out.append(w.finish())
    return np.concatenate(out)


def _noise(n, ch=2, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, (n, ch)).astype(np.float32)


@pytest.mark.parametrize("shift", [0, 640, -640])
def test_constant_shift_keeps_length_and_moves_samples(shift):
    src = _noise(3 * RATE)
    out = _run(WarpPlan((0,), (shift,)), src)
    assert out.shape == src.shape
    n = np.arange(len(src))
    q = n + shift
    ok = (q >= 0) & (q < len(src))
    assert np.array_equal(out[ok], src[q[ok]])
    assert not out[~ok].any()  # silence where the source has nothing


def test_piecewise_shifts_with_a_crossfade_and_block_sizes_do_not_matter():
    src = _noise(4 * RATE, ch=1)
    plan = WarpPlan((0, 2 * RATE), (0, 1120))
    out = _run(plan, src)
    assert out.shape == src.shape
    assert np.array_equal(out, _run(plan, src, blocks=(len(src),)))
    half = int(0.01 * RATE)
    e = 2 * RATE
    assert np.array_equal(out[: e - half], src[: e - half])
    n = np.arange(e + half, len(src) - 1120)
    assert np.array_equal(out[n], src[n + 1120])
    mid = out[e - half : e + half]
    assert np.all(np.abs(mid) <= np.maximum(np.abs(src[e - half : e + half]), np.abs(src[e - half + 1120 : e + half + 1120])) + 1e-6)


def test_crossfade_makes_no_click_on_a_steady_tone():
    t = np.arange(4 * RATE) / RATE
    src = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[:, None]
    out = _run(WarpPlan((0, 2 * RATE), (0, 3333)), src)[:, 0]
    # The largest sample-to-sample step stays that of the tone itself (no discontinuity).
    assert np.abs(np.diff(out)).max() <= np.abs(np.diff(src[:, 0])).max() * 1.05


def test_linear_drift_moves_clicks_where_the_line_says():
    n_src = 60 * RATE
    src = np.zeros((n_src, 1), np.float32)
    clicks = np.arange(RATE, n_src - RATE, 5 * RATE)
    src[clicks, 0] = 1.0
    ratio, c = 1.0 + 400e-6, 800  # 400 ppm (24 ms/min) and a 50 ms lead
    out = _run(WarpPlan((0,), (int(round(c / ratio)),), ratio), src)[:, 0]
    assert len(out) == n_src
    for q in clicks:
        expect = (q - c) / ratio  # the output sample that reads source position q
        if expect < 10 or expect > n_src - 10:
            continue
        lo = int(expect) - 40
        got = lo + int(np.argmax(np.abs(out[lo : lo + 80])))
        assert abs(got - expect) <= 1.0, (q, got, expect)


def test_plan_from_a_piecewise_timeline():
    tl = {"kind": "piecewise", "offset_ms": 280.0, "change_points_s": [16.0],
          "pieces": [{"start_s": 0, "end_s": 16, "offset_ms": 0.0}, {"start_s": 16, "end_s": 32, "offset_ms": 280.0}]}
    plan = WarpPlan.from_timeline(tl, RATE, audio_start_s=0.5, video_start_s=0.0)
    assert plan.shifts == (0, int(0.28 * RATE)) and plan.edges == (0, int(15.5 * RATE))


def test_plan_from_a_linear_timeline():
    # offset(t) = 10 + 6 t/60 ms over [0, 600] s; audio and video start together.
    tl = {"kind": "linear", "offset_ms": 10 + 6 * 5, "drift_ms_per_min": 6.0, "span_s": [0.0, 600.0]}
    plan = WarpPlan.from_timeline(tl, RATE, 0.0, 0.0)
    assert plan.ratio == pytest.approx(1 + 6 / 60_000)
    assert plan.shifts[0] == round(0.010 * RATE / plan.ratio)
