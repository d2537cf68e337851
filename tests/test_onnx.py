"""The ONNX exports of the shipped two-stream models: verified files, and torch's outputs within tolerance."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsync.errors import ModelError
from avsync.models import onnx as mx
from avsync.models.registry import package_dir, registry
from avsync.sync.offset import lag_grid

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TWO_STREAM = sorted(n for n, e in registry().items() if e["family"] in mx.ONNX_FAMILIES)


def test_every_shipped_two_stream_model_has_a_verified_export():
    assert TWO_STREAM, "no shipped two-stream model"
    for name in TWO_STREAM:
        entry = registry()[name]["onnx"]
        assert entry["max_abs_diff"] <= mx.TOLERANCE
        for part in mx.PARTS:
            path = mx._verified(name, part)  # raises on a sha256 mismatch
            assert path.stat().st_size <= 20 * 1024 * 1024


def test_tampered_export_is_refused(monkeypatch):
    name = TWO_STREAM[0]
    entry = json.loads(json.dumps(registry()[name]))
    entry["onnx"]["visual"]["sha256"] = "0" * 64
    monkeypatch.setattr(mx, "registry", lambda: {name: entry})
    with pytest.raises(ModelError, match="sha256"):
        mx.OnnxEstimator(name)


def test_runtime_choice(monkeypatch):
    name = TWO_STREAM[0]
    monkeypatch.delenv("AVSYNC_RUNTIME", raising=False)
    assert mx.runtime_for(name) == "onnx"
    monkeypatch.setenv("AVSYNC_RUNTIME", "torch")
    assert mx.runtime_for(name) == "torch"
    monkeypatch.delenv("AVSYNC_RUNTIME")
    other = next((n for n, e in registry().items() if e["family"] not in mx.ONNX_FAMILIES), None)
    if other:
        assert mx.runtime_for(other) == "torch"


@pytest.fixture(scope="module")
def train_extraction():
    """A real GRID s1 training clip with mouth crops (train split: nothing here tunes anything)."""
    from avsync.extract import extract
    from avsync.train.cache import manifest_clips

    if not DATA.is_dir():
        pytest.skip(f"no data folder at {DATA}")
    rec = next(r for r in manifest_clips(DATA, ("train",)) if r.speaker == "grid_s1")
    return extract(rec.path, keep_crops=True)


@pytest.mark.parametrize("name", TWO_STREAM)
def test_onnx_matches_torch_on_a_real_clip(name, train_extraction):
    """Per-frame and per-step embeddings, window scores and the file curve agree with torch within TOLERANCE."""
    from avsync.models.checkpoint import estimator_from_file, registered_path

    ext = train_extraction
    ref, got = estimator_from_file(registered_path(name)), mx.OnnxEstimator(name)
    p_ref, p_got = ref.prepare(ext, 0), got.prepare(ext, 0)
    assert p_ref["found"].sum() > 50
    assert np.abs(p_ref["v"] - p_got["v"]).max() <= mx.TOLERANCE
    last = int(p_ref["pos"][-1])
    a_ref, a_got = ref._audio(p_ref, 0, last)[0], got._audio(p_got, 0, last)[0]
    assert a_ref.shape == a_got.shape and np.abs(a_ref - a_got).max() <= mx.TOLERANCE
    lags = lag_grid(15 / ext.fps, ext.fps)
    starts = np.arange(0, ext.n_frames - 25, 10)
    s_ref, s_got = ref.scores(p_ref, lags, starts, 25), got.scores(p_got, lags, starts, 25)
    assert np.array_equal(np.isnan(s_ref), np.isnan(s_got))
    assert np.nanmax(np.abs(s_ref - s_got)) <= 2 * mx.TOLERANCE  # cosines of unit vectors each within TOLERANCE
    c_ref, c_got = ref.file_curve(p_ref, lags, ext.fps), got.file_curve(p_got, lags, ext.fps)
    assert np.abs(c_ref - c_got).max() <= 2 * mx.TOLERANCE
    assert int(np.argmax(c_ref)) == int(np.argmax(c_got))
    assert got.name == ref.name and got.calibration.to_dict() == ref.calibration.to_dict()
    assert got.training_summary == ref.training_summary


def test_export_reproduces_the_shipped_behaviour(tmp_path):
    """The ship step's export, run again from the shipped .pt, agrees with torch within TOLERANCE."""
    pytest.importorskip("onnx")
    from avsync.models.checkpoint import registered_path

    name = min(TWO_STREAM, key=lambda n: registry()[n]["size_bytes"])
    out = mx.export_model(registered_path(name), tmp_path)
    assert out["max_abs_diff"] <= mx.TOLERANCE
    assert {p.name for p in tmp_path.iterdir()} == {f"{name}.visual.onnx", f"{name}.audio.onnx"}
    assert (package_dir() / "weights" / f"{name}.visual.onnx").is_file()


def test_default_model_detects_without_torch():
    """The default model runs on onnxruntime: a real detection in a fresh interpreter never imports torch."""
    clip = DATA / "clips" / "dev" / "yerfor__Real3DPortrait__May_5s.mp4"
    if not clip.is_file():
        pytest.skip(f"clip not found: {clip}")
    code = ("import sys, avsync\n"
            f"r = avsync.detect({str(clip)!r})\n"
            "print(r.model, type(avsync.load_model()).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    model, kind, torch_loaded = out.stdout.split()[-3:]
    if registry().get(model, {}).get("onnx"):
        assert (kind, torch_loaded) == ("OnnxEstimator", "False")
