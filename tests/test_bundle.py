"""Training features carried to a GPU machine (``train.bundle``): packed here, unpacked and trained on there.

The clips are real train clips, cached as training caches them; the training run at the end goes in a
child process where PyAV, MediaPipe, PySceneDetect, soxr and LiteRT cannot be imported, as on the lent
machine (its image has torch, OpenCV and onnxruntime, and none of those).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsync.train import bundle
from avsync.train.cache import ClipRecord, build_cache, load_clip, manifest_clips
from avsync.train.loop import BUDGET_PROBE_STEPS, fit_steps

from conftest import DATA, REPO

#: Held out by the tiny run below (its validation speaker).
VAL_SPEAKER = "vrt_face5_woman_glasses_red"

_NO_DECODERS = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("av", "mediapipe", "scenedetect", "soxr", "ai_edge_litert"):
            raise ImportError(f"{name} is not installed on the GPU machine")
sys.meta_path.insert(0, _Absent())
"""


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Six real train clips cached (GRID s1, the held-out speaker, Arabic news), then packed."""
    recs = manifest_clips(DATA, ("train",))
    grid = [r for r in recs if r.speaker == "grid_s1"][:3]
    val = [r for r in recs if r.speaker == VAL_SPEAKER][:1]
    lrcar = [r for r in recs if "train_lrcar" in r.path][:2]
    chosen = grid + val + lrcar
    cache = tmp_path_factory.mktemp("cache")
    assert build_cache(chosen, cache) == chosen
    out = tmp_path_factory.mktemp("bundle")
    info = bundle.pack(out, DATA, cache, max_mib=5, grid_clips=2, recs=chosen)
    return chosen, cache, out, info


def test_grid_clips_are_a_spread_that_keeps_the_last():
    recs = [ClipRecord(f"/g{i}", "train", "grid_s1", f"g{i}", 3.0) for i in range(10)]
    recs.insert(3, ClipRecord("/w", "train", "someone", "w", 5.0))
    kept, dropped = bundle.choose_clips(recs, 4)
    assert [r.sha256 for r in kept] == ["g0", "w", "g3", "g6", "g9"]  # manifest order kept; the last GRID clip in
    assert len(dropped) == 6 and all(r.speaker == "grid_s1" for r in dropped)
    assert bundle.choose_clips(recs, 0)[0] == [recs[3]]


def test_a_time_budget_fits_the_steps_to_the_speed_measured():
    assert fit_steps(20, 10.0, 60.0, 1000) == 120  # 0.5 s a step: 120 steps in a minute
    assert fit_steps(20, 10.0, 6000.0, 1000) == 1000  # never more than planned
    assert fit_steps(20, 10.0, 1.0, 1000) == 20  # nor fewer than already done


def test_pack_records_what_it_packed_and_left_out(packed):
    chosen, _, out, info = packed
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle.FILES)
    assert [c["sha256"] for c in info["clips"]] == [r.sha256 for r in chosen if r.sha256 != chosen[1].sha256]
    assert info["left_out"]["grid_s1_beyond_grid_clips"] == 1
    assert info["size_mib"] <= 5 and info["crf"] == bundle.CRFS[0]
    assert info["crop_error"]["mean"] < 2.0 and info["lips_error_max"] <= bundle.LIPS_STEP / 2 + 1e-6
    assert info["mel_error_max"] <= bundle.MEL_STEP / 2 + 1e-3
    rows = (out / "manifest.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(info["clips"]) and rows[0].split("\t")[0] == "path"


def test_unpack_rebuilds_the_cache_entries(packed, tmp_path):
    _, cache, out, info = packed
    assert bundle.unpack(out, tmp_path) == len(info["clips"])
    for c in info["clips"]:
        rec = ClipRecord("", "train", c["speaker"], c["sha256"], 0.0)
        want, got = load_clip(cache, rec), load_clip(tmp_path, rec)
        assert sorted(got) == sorted(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        for k in ("found", "times", "fps", "audio_t0"):
            np.testing.assert_array_equal(got[k], want[k])
        assert np.array_equal(np.isnan(got["lips"]), np.isnan(want["lips"]))
        np.testing.assert_allclose(got["lips"], want["lips"], atol=bundle.LIPS_STEP / 2 + 1e-6)
        np.testing.assert_allclose(got["mel40"].astype(np.float32), want["mel40"].astype(np.float32),
                                   atol=bundle.MEL_STEP / 2 + 1e-3)
        seen = want["found"]
        err = np.abs(got["crops"].astype(np.int16) - want["crops"].astype(np.int16))[seen]
        assert err.mean() < 2.0  # the only lossy part: H.264 at the CRF recorded


def test_a_damaged_bundle_is_refused(packed, tmp_path):
    _, _, out, info = packed
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in bundle.FILES:
        (bad / f).write_bytes((out / f).read_bytes())
    meta = json.loads((bad / "bundle.json").read_text())
    meta["clips"][0]["crops_sha256"] = "0" * 64
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="decoded crops differ"):
        bundle.unpack(bad, tmp_path / "c")


def test_training_from_a_bundle_needs_no_decoder(packed, tmp_path):
    """As on the GPU machine: unpack, then ``avsync train --data BUNDLE``, with no PyAV or MediaPipe."""
    _, _, out, info = packed
    (tmp_path / "carried.toml").write_text(_tiny((REPO / "configs" / "pm-small.toml").read_text()))
    script = _NO_DECODERS + (
        "import runpy\n"
        f"sys.argv = ['avsync.train.bundle', 'unpack', {str(out)!r}]\n"
        "runpy.run_module('avsync.train.bundle', run_name='__main__')\n"
    )
    env = {"AVSYNC_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    script = _NO_DECODERS + (
        "import runpy\n"
        f"sys.argv = ['avsync', 'train', {str(tmp_path / 'carried.toml')!r}, '--data', {str(out)!r}, "
        f"'--out', {str(tmp_path / 'run')!r}, '--quiet', '--minutes', '0.0001']\n"
        "runpy.run_module('avsync', run_name='__main__')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    from avsync.models.checkpoint import read_checkpoint

    obj = read_checkpoint(tmp_path / "run" / "carried.pt")
    t = obj["training"]
    # the time budget (a lent machine's command limit) cut the run after the steps that time it
    assert t["steps"] == BUDGET_PROBE_STEPS and obj["train"]["steps_planned"] == 24
    assert t["val_speakers"] == [VAL_SPEAKER]
    packed_train = {c["sha256"] for c in info["clips"] if c["speaker"] != VAL_SPEAKER}
    assert set(t["clips_sha256"]) == packed_train


def _tiny(cfg: str) -> str:
    """pm-small's config cut to a few steps on the packed clips, validated on the packed held-out speaker."""
    import tomllib

    c = tomllib.loads(cfg)
    lines = [f'name = "carried"', f'description = "pm-small on a carried bundle (test)"', "[model]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in c["model"].items()]
    train = {**c.get("train", {}), "steps": 24, "batch": 4, "save_every": 10, "holdout_clips": 0,
             "val_speakers": [VAL_SPEAKER], "val_offsets": [-3, 0, 3]}
    train.pop("speaker_weights", None)
    lines.append("[train]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in train.items()]
    return "\n".join(lines) + "\n"


def test_the_working_tree_leaves_room_for_a_bundle():
    """A call carries the tracked files and the bundle: the default bundle size fits beside them."""
    tree = bundle.working_tree_bytes(REPO)
    assert tree is not None and tree > 0
    assert tree / 2**20 + bundle.DEFAULT_MAX_MIB <= bundle.CARRY_LIMIT_MIB
