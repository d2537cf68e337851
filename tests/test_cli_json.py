"""`avsync detect` output on a real clip: the sentence, --json, --window-frames, --check."""
from __future__ import annotations

import json

import pytest

from conftest import FRAME_25_MS, grid_clip

REQUIRED = ("offset_ms", "offset_frames", "fps", "duration_s", "confidence", "in_sync", "tolerance_ms",
            "syncnet_offset_frames", "method", "model", "faces")


def _strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name} in output")

    return json.loads(text, parse_constant=no_constants)


def _one_object(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}: {stdout!r}"
    d = _strict_json(lines[0])
    assert isinstance(d, dict)
    return d


@pytest.fixture(scope="module")
def json_run(cli):
    proc = cli("detect", "--json", grid_clip("pwij3p"))
    assert proc.returncode == 0, proc.stderr
    return proc


def test_detect_json_is_one_object_with_the_documented_keys(json_run, detect_cached):
    assert "Traceback" not in json_run.stderr
    d = _one_object(json_run.stdout)
    for key in REQUIRED:
        assert key in d, key
    assert "windows" not in d or d["windows"] is None
    assert "curve" not in d, "the score curve is only kept with --curve"
    assert d["fps"] == pytest.approx(25.0)
    assert d["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert d["offset_frames"] == pytest.approx(d["offset_ms"] / FRAME_25_MS, abs=0.011)
    assert d["syncnet_offset_frames"] == -round(d["offset_frames"])
    assert d["tolerance_ms"] == pytest.approx(40.0)
    from avsync.api import default_model

    assert d["model"] == default_model()
    assert isinstance(d["in_sync"], bool)
    assert len(d["faces"]) == 1 and d["faces"][0]["active"] is True
    # The same numbers as the Python API.
    r = detect_cached(grid_clip("pwij3p"))
    assert d["offset_ms"] == pytest.approx(r.offset_ms, abs=0.05)
    assert d["confidence"] == pytest.approx(r.confidence, abs=0.01)


def test_detect_json_with_windows(cli):
    proc = cli("detect", "--json", "--window-frames", "25", grid_clip("pwij3p"))
    assert proc.returncode == 0, proc.stderr
    d = _one_object(proc.stdout)
    for key in REQUIRED:
        assert key in d, key
    w = d["windows"]
    assert isinstance(w, list) and len(w) == 3  # 75 frames in 25-frame windows
    for item in w:
        for key in ("start_s", "offset_ms", "confidence"):
            assert key in item, key
        assert item["offset_ms"] is None or abs(item["offset_ms"]) <= 600.0 + 1e-6
    starts = [item["start_s"] for item in w]
    assert starts == pytest.approx([0.0, 1.0, 2.0], abs=0.01)


def test_detect_json_with_curve(cli):
    proc = cli("detect", "--json", "--curve", grid_clip("pwij3p"))
    assert proc.returncode == 0, proc.stderr
    d = _one_object(proc.stdout)
    lags, scores = d["curve"]["lags_ms"], d["curve"]["scores"]
    assert len(lags) == len(scores) == 121
    assert lags[0] == pytest.approx(-600.0) and lags[-1] == pytest.approx(600.0) and 0.0 in lags


def test_detect_sentence_and_check(cli, trial_factory):
    clip = grid_clip("pwij3p")
    proc = cli("detect", clip)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert line.startswith("audio ") and "confidence" in line and "tolerance" in line
    # --check: exit 1 only when out of sync (a 7-frame trial is).
    late = trial_factory(clip, +7, ".mkv")
    proc = cli("detect", "--check", late.path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "late" in proc.stdout and "out of sync" in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = cli("detect", "--check", "--tolerance-frames", "10", late.path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "in sync" in proc.stdout
