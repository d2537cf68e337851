"""`avsync eval` on real clips: trials in feature space match trials on disk, runs end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avsync.eval.runner import Clip, EvalOptions, collect_clips, evaluate, split_leaks
from avsync.eval.slide import crop_extraction, shift_extraction
from avsync.extract import extract
from avsync.face.landmarks import lip_features, normalise_lips
from avsync.media import read_audio

from conftest import DATA, grid_clip


def _gap(ext, track=0):
    return lip_features(normalise_lips(ext.tracks[track].landmarks(ext.n_frames)))[:, 0]


def _best_shift(a: np.ndarray, b: np.ndarray, max_shift: int) -> int:
    """s such that b[i] ~ a[i + s] (by correlation over the overlap)."""
    best, arg = -np.inf, 0
    for s in range(-max_shift, max_shift + 1):
        x = a[max(0, s) : len(a) + min(0, s)]
        y = b[max(0, -s) : len(b) + min(0, -s)]
        n = min(len(x), len(y))
        m = np.isfinite(x[:n]) & np.isfinite(y[:n])
        c = np.corrcoef(x[:n][m], y[:n][m])[0, 1]
        if c > best:
            best, arg = c, s
    return arg


@pytest.fixture(scope="module")
def original():
    return extract(grid_clip("lwbsza"))


def test_trial_file_remeasured_against_original_features_gives_exactly_plus_4(trial_factory, original):
    trial = trial_factory(grid_clip("lwbsza"), +4, ".mkv")
    t = extract(trial.path)
    # Video: trial frame i shows original frame i + 4.
    assert t.n_frames == original.n_frames - 4
    assert _best_shift(_gap(original), _gap(t), 8) == 4
    # Audio: trimmed at the end only, so it starts with the original's samples.
    _, a = read_audio(grid_clip("lwbsza"))
    _, b = read_audio(trial.path)
    assert len(a) - len(b) == pytest.approx(4 * 640, abs=2)
    c = [np.dot(a[s : s + 16000], b[:16000]) for s in range(0, 3 * 640)]
    assert int(np.argmax(c)) == 0
    # Feature-space trial made by slicing the original agrees with the file.
    s = shift_extraction(original, 4)
    assert s.n_frames == t.n_frames
    g_file, g_slice = _gap(t), _gap(s)
    ok = np.isfinite(g_file) & np.isfinite(g_slice)
    # (the file was re-encoded with H.264, so landmarks jitter a little)
    assert np.corrcoef(g_file[ok], g_slice[ok])[0, 1] > 0.95
    assert abs(s.audio_duration_s - t.audio_duration_s) < 0.01


def test_shift_and_crop_extraction_geometry(original):
    n = original.n_frames
    for k in (-7, 0, 5):
        s = shift_extraction(original, k)
        assert s.n_frames == n - abs(k)
        assert s.audio_duration_s == pytest.approx(original.audio_duration_s - abs(k) / original.fps, abs=1e-6)
    c = crop_extraction(original, 10, 25)
    assert c.n_frames == 15
    # Only the audio under those 15 frames (0.6 s) is left.
    assert c.audio_duration_s == pytest.approx(15 / original.fps, abs=0.02)
    assert c.audio_t0 >= c.times[0] - 0.5 / original.fps - 1e-9


def test_small_eval_run_on_two_dev_clips(tmp_path, cli):
    report, plot = tmp_path / "r.json", tmp_path / "r.png"
    proc = cli("eval", grid_clip("lwbsza"), grid_clip("pwij3p"), "--manifest", DATA / "manifest.tsv",
               "--reps", "2", "--report", report, "--plot", plot, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rep = json.loads(report.read_text())
    assert plot.stat().st_size > 10_000
    assert not rep["partial"] and len(rep["clips"]) == 2
    P = rep["protocols"]
    assert P["clip"]["n"] == 22 and P["clip"]["failures"] == 0
    # On these two clean GRID clips the model-free method is right at clip level.
    assert P["clip"]["acc_pm1"] >= 0.9
    assert [r["frames"] for r in P["lrs2"]["contexts"]] == [5, 7, 9, 11, 13, 15]
    assert [r["frames"] for r in P["singing"]["contexts"]][-2:] == [20, 25]
    assert all(r["reps"] == 2 for r in P["strict"]["lengths"])
    assert P["regression"]["rmse_frames"] < P["regression"]["no_information_rmse_frames"]
    assert {r["offset_frames"] for r in P["clip"]["per_offset"]} == {-15, -11, -7, -4, -2, 0, 2, 4, 7, 11, 15}
    assert "±1 frame" in proc.stdout  # the rich table was printed


def test_eval_reruns_match_with_the_same_seed():
    clips = [Clip(str(grid_clip("pwij3p")))]
    opts = EvalOptions(protocols=("strict", "regression"), reps=2)
    a, b = evaluate(clips, opts), evaluate(clips, opts)
    assert a["protocols"] == b["protocols"]


def test_interrupted_eval_leaves_a_partial_report():
    clips = [Clip(str(grid_clip("lwbsza"))), Clip(str(grid_clip("pwij3p")))]

    def stop_after_first(i, clip, rec):
        raise KeyboardInterrupt

    rep = evaluate(clips, EvalOptions(protocols=("clip",), extended=False), on_clip=stop_after_first)
    assert rep["partial"] is True
    assert len(rep["clips"]) == 1
    assert rep["protocols"]["clip"]["n"] == 11


def test_leak_guard_refuses_clips_of_training_speakers(data_dir):
    clips = collect_clips([], split="dev", manifest=data_dir / "manifest.tsv")
    assert clips and all(c.speaker for c in clips)
    victim = clips[0].speaker

    class Trained:  # what a checkpoint-backed estimator exposes
        name = "trained"
        training_summary = {"speakers": [victim]}

    kept, refused = split_leaks(clips, Trained())
    assert refused and all(c.speaker == victim for c, _ in refused)
    assert all(c.speaker != victim for c in kept)
    assert len(kept) + len(refused) == len(clips)
