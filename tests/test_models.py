"""The learned models: forward and loss on a real clip, checkpoints, training, shipped weights."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avsync.errors import ModelError
from avsync.models import nets
from avsync.models.checkpoint import estimator_from_file, read_checkpoint, save_checkpoint, sha256_file
from avsync.models.registry import registry
from avsync.sync.offset import lag_grid
from avsync.train.cache import ClipRecord, manifest_clips
from avsync.train.loop import TRAIN_DEFAULTS, Batcher, Clip, Objective, Sampler, load_config, shift_arrays

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SMALL = sorted((ROOT / "configs").glob("*-small.toml"))


@pytest.fixture(scope="module")
def real_clip() -> Clip:
    """A real training clip (GRID s1), extracted with mouth crops, as the training bank holds it."""
    from avsync.models.inputs import mel_stats
    from avsync.train.cache import clip_arrays

    rec = next(r for r in manifest_clips(DATA, ("train",)) if r.speaker == "grid_s1")
    arr = clip_arrays(rec.path)
    arr["mel40"] = arr["mel40"].astype(np.float32)
    return Clip(rec, arr, mel_stats(arr["mel40"]))


def _model_and_batch(cfg_path: Path, clip: Clip, batch: int = 4):
    cfg = load_config(cfg_path)
    mcfg = dict(cfg["model"])
    torch.manual_seed(0)
    model = nets.build_model(mcfg)
    tcfg = {**TRAIN_DEFAULTS, **cfg.get("train", {}), "batch": batch}
    sampler = Sampler([clip], 0.0, seed=0)
    data = Batcher(mcfg["family"], model.visual_kind, tcfg, mcfg, sampler, seed=0)(torch.device("cpu"))
    return cfg, model, data


@pytest.mark.parametrize("cfg_path", SMALL, ids=lambda p: p.stem)
def test_forward_and_loss_on_a_real_clip(cfg_path, real_clip):
    cfg, model, batch = _model_and_batch(cfg_path, real_clip)
    loss = Objective(model)(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    if any(p.requires_grad for p in model.parameters()) and cfg["model"].get("head") != "diagavg":
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    # and the same model scores the clip as an estimator, on the quarter-frame lag grid
    from avsync.models.estimator import LearnedEstimator

    est = LearnedEstimator(model, {"name": cfg["name"], "window_frames": cfg.get("train", {}).get("frames", 50)})
    fps = float(real_clip.arr["fps"])
    lags = lag_grid(5 / fps, fps)
    curve = est.file_curve(est.prepare_arrays(real_clip.arr), lags, fps)
    assert curve.shape == lags.shape and np.isfinite(curve).all()


def test_every_paper_config_builds():
    for p in sorted((ROOT / "configs" / "paper").glob("*.toml")):
        m = nets.build_model(load_config(p)["model"])
        assert nets.n_params(m) > 1_000_000, p.name


def test_checkpoint_round_trip(tmp_path, real_clip):
    cfg, model, _ = _model_and_batch(ROOT / "configs" / "landmark-small.toml", real_clip)
    meta = {"name": "rt", "description": "round trip", "model": cfg["model"], "training": {"speakers": ["grid_s1"],
            "clips_sha256": [real_clip.rec.sha256]}, "metrics": {"val_acc_pm1": 0.5},
            "calibration": {"coef": [1.0, 0.5, 0.2], "intercept": -2.0}}
    path = tmp_path / "rt.pt"
    digest = save_checkpoint(path, model.eval(), meta)
    assert digest == sha256_file(path)
    obj = read_checkpoint(path)  # weights_only=True
    assert obj["format"] == "avsync-model/1" and obj["metrics"] == {"val_acc_pm1": 0.5}
    est = estimator_from_file(path)
    assert est.name == "rt" and est.calibration.coef == (1.0, 0.5, 0.2) and est.training_summary["speakers"] == ["grid_s1"]
    for k, v in model.state_dict().items():
        w = est.model.state_dict()[k]
        assert torch.equal(w, v.half().float() if v.is_floating_point() else v), k
    # the reloaded estimator scores exactly as the fp16-rounded original
    fps = float(real_clip.arr["fps"])
    lags = lag_grid(4 / fps, fps)
    model.load_state_dict(est.model.state_dict())
    from avsync.models.estimator import LearnedEstimator

    a = est.file_curve(est.prepare_arrays(real_clip.arr), lags, fps)
    b = LearnedEstimator(model, meta).file_curve(LearnedEstimator(model, meta).prepare_arrays(real_clip.arr), lags, fps)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_foreign_file_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read model checkpoint"):
        read_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "y.pt")
    with pytest.raises(ModelError, match="not an avsync model checkpoint"):
        read_checkpoint(tmp_path / "y.pt")


def _tiny_config(tmp_path, **train):
    cfg = load_config(ROOT / "configs" / "landmark-small.toml")
    cfg["name"] = "tiny"
    cfg["train"].update({"steps": 60, "batch": 8, "lr": 3e-3, "augment": False, "max_clips": 4, "other_weight": 0.0,
                         "holdout_clips": 1,
                         "val_speakers": ["vrt_face5_woman_glasses_red"], "save_every": 20, "val_offsets": [-3, 0, 3],
                         **train})
    return cfg


def test_tiny_training_run_lowers_the_loss_and_resumes(tmp_path):
    from avsync.train.loop import train

    cfg = _tiny_config(tmp_path)
    cache = tmp_path / "cache"
    path = train(cfg, tmp_path / "run", data_dir=DATA, cache=cache, progress=False, steps=30)
    first = read_checkpoint(path)
    assert first["training"]["steps"] == 30
    path = train(cfg, tmp_path / "run", data_dir=DATA, cache=cache, progress=False, resume=True)
    obj = read_checkpoint(path)
    t = obj["training"]
    assert t["steps"] == 60
    assert t["train_seconds"] > first["training"]["train_seconds"]  # the resumed session adds to the first
    assert t["loss_last"] < 0.9 * t["loss_first"], t
    # self-describing: speakers and clips it saw, and none of the held-out speaker
    assert "grid_s1" in t["speakers"] and "vrt_face5_woman_glasses_red" not in t["speakers"]
    assert t["val_speakers"] == ["vrt_face5_woman_glasses_red"]
    assert len(t["clips_sha256"]) == t["clips"] and obj["metrics"]["val_trials"] > 0
    # the held-out clip of the training speaker calibrates the confidence but is never trained on
    assert len(t["holdout_clips_sha256"]) == 1 and not set(t["holdout_clips_sha256"]) & set(t["clips_sha256"])
    assert obj["metrics"]["holdout_trials"] > 0 and 0 <= obj["metrics"]["val_acc_consistent"] <= 1
    # confidence: calibrated on the held-out readings, unless they were too few or all alike (then said why)
    assert ("calibration" in obj) != ("calibration_error" in obj["metrics"])
    assert obj["model"] == cfg["model"] and obj["train"]["seed"] == 0 and obj["code_version"]
    # where the model puts zero needs at least train.zero.MIN_CLIPS GRID s1 clips; this run trained on 3
    assert "zero" not in obj


def test_training_on_dev_is_refused(tmp_path):
    from avsync.train.loop import train

    with pytest.raises(ValueError, match="never train on it"):
        train(_tiny_config(tmp_path, splits=["train", "dev"]), tmp_path / "r", data_dir=DATA, cache=tmp_path / "c")


def test_speaker_disjoint_split():
    from avsync.train.loop import split_speakers

    recs = manifest_clips(DATA, ("train",))
    tr, va = split_speakers(recs, ["lrw_man_glasses", "vrt_face4_woman_blue_bg"])
    assert {r.speaker for r in va} == {"lrw_man_glasses", "vrt_face4_woman_blue_bg"}
    assert not {r.speaker for r in tr} & {r.speaker for r in va}
    assert len(tr) + len(va) == len(recs)


def test_max_clips_keeps_the_first_clips_of_each_speaker():
    from avsync.train.loop import first_clips_per_speaker

    recs = manifest_clips(DATA, ("train",))
    kept = first_clips_per_speaker(recs, 2)
    speakers = {r.speaker for r in recs}
    assert {r.speaker for r in kept} == speakers
    assert all(sum(r.speaker == s for r in kept) == min(2, sum(r.speaker == s for r in recs)) for s in speakers)
    assert kept == [r for r in recs if r in kept]  # manifest order kept


def test_diag_avg_reads_a_shifted_diagonal():
    n, k = 12, 4
    for true in (-3, 0, 2):
        m = torch.full((1, n, n), -0.1)
        i = torch.arange(n)
        j = i + true
        ok = (j >= 0) & (j < n)
        m[0, i[ok], j[ok]] = 0.9
        assert int(nets.diag_avg(m, k).argmax()) - k == true


def test_sync_classifier_shape():
    c = nets.SyncClassifier(n=10, k=3, channels=8)
    assert c(torch.randn(2, 10, 10)).shape == (2, 7)


def test_speaker_balanced_sampling_weights():
    from avsync.train.loop import speaker_balanced_weights

    speakers = ["grid_s1"] * 10 + ["a", "b", "b"]
    lengths = [75] * 10 + [100, 30, 90]
    p = speaker_balanced_weights(speakers, lengths, {})
    assert p.sum() == pytest.approx(1.0)
    assert p[:10].sum() == pytest.approx(1 / 3) and p[10] == pytest.approx(1 / 3)  # each speaker a third
    assert p[12] == pytest.approx(3 * p[11])  # within a speaker, by length
    p = speaker_balanced_weights(speakers, lengths, {"grid_s1": 2.0})
    assert p[:10].sum() == pytest.approx(0.5)


def test_soft_target_and_window_loss():
    from avsync.train.loop import soft_target

    cand = np.arange(-8, 9)
    t = soft_target(cand, 1.0)
    assert float(t.sum()) == pytest.approx(1.0) and int(t.argmax()) == 8 and torch.allclose(t, t.flip(0))
    m = nets.TwoStream(visual="landmark", dim=8, width=8, audio_width=4)
    b, n = 2, 7
    right = torch.full((b, n, len(cand)), -0.5)
    right[:, :, 8] = 1.0  # every frame's best candidate is the true lag
    wrong = right.roll(4, dims=2)  # the best candidate is one frame off
    valid = torch.ones(b, n)
    for window in (0, 5):
        assert m.loss(right, t, valid, window=window) < m.loss(wrong, t, valid, window=window)
    # the window term adds a loss of the same kind over 5-frame means
    assert m.loss(wrong, t, valid, window=5) > m.loss(wrong, t, valid, window=0)
    # frames marked invalid do not count
    valid[:, :3] = 0
    mixed = right.clone()
    mixed[:, :3] = wrong[:, :3]
    assert m.loss(mixed, t, valid) == pytest.approx(float(m.loss(right, t, valid)), rel=1e-5)


def test_quarter_frame_batches_with_strong_augmentation(real_clip):
    cfg = load_config(ROOT / "configs" / "pm-small.toml")
    mcfg = dict(cfg["model"])
    model = nets.build_model(mcfg)
    tcfg = {**TRAIN_DEFAULTS, **cfg["train"], "batch": 3, "candidates": "quarter", "augment": "strong", "window_loss": 5}
    batch = Batcher("twostream", model.visual_kind, tcfg, mcfg, Sampler([real_clip], 0.0, seed=0), seed=0)(torch.device("cpu"))
    k = tcfg["max_lag"]
    assert batch["index"].shape == (3, tcfg["frames"], 8 * k + 1)
    assert batch["target"].shape == (8 * k + 1,) and float(batch["target"].sum()) == pytest.approx(1.0)
    assert torch.isfinite(batch["vis"]).all() and 0 <= float(batch["vis"].min()) and float(batch["vis"].max()) <= 255
    assert torch.isfinite(batch["audio"]).all()
    loss = Objective(model, window=5)(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_degrade_shrinks_and_compresses_some_crops(real_clip):
    from avsync.train.augment import degrade

    crops = np.stack([real_clip.arr["crops"][10:15]] * 8)
    out = degrade(crops, np.random.default_rng(0), p=0.5)
    assert out.shape == crops.shape and out.dtype == np.uint8
    changed = [not np.array_equal(a, b) for a, b in zip(out, crops)]
    assert 0 < sum(changed) < 8
    assert np.array_equal(degrade(crops, np.random.default_rng(0), p=0.0), crops)


def test_shift_arrays_trims_like_the_protocol(real_clip):
    a = real_clip.arr
    for k in (3, -3):
        s = shift_arrays(a, k)
        n = len(a["times"])
        assert len(s["times"]) == len(s["found"]) == len(s["lips"]) == n - abs(k)
        assert len(s["mel40"]) < len(a["mel40"])
    np.testing.assert_array_equal(shift_arrays(a, 3)["lips"], a["lips"][3:])


def test_read_bank_encodes_each_clip_once_and_reads_as_trial_by_trial(real_clip, monkeypatch):
    """Calibration, zero and validation readings slice one encoding of each clip: the visual encoder sees the
    clip's frames once (not once per trial and stretch), the slices are the trials' own embeddings away from the
    two frames at each trimmed edge (which see the clip's neighbouring frames), and the whole-trial readings match encoding every trial afresh."""
    from avsync.api import load_model
    from avsync.train.calibrate import clip_inputs, read_bank

    est = load_model("pm-wild")
    n = len(real_clip.arr["times"])
    for k in (4, -4):
        sliced = shift_arrays(clip_inputs(est, real_clip.arr), k)["v"]
        own = est.embed_arrays(shift_arrays(real_clip.arr, k))
        assert sliced.shape == own.shape == (n - 4, own.shape[1])
        np.testing.assert_allclose(sliced[2:-2], own[2:-2], atol=1e-5)

    frames = []
    embed = est._embed_visual
    # (load_model's instance is shared: monkeypatch puts it back)
    monkeypatch.setattr(est, "_embed_visual", lambda x, *a: frames.append(x.shape[1]) or embed(x, *a))
    offsets = (-5, -2, 0, 2, 5)
    once = read_bank(est, [real_clip], offsets=offsets, lengths_s=(1.0,))
    assert n <= sum(frames) <= n + 4 * (n // 64 + 1)  # one pass, chunk overlaps aside
    monkeypatch.setattr(est, "embed_arrays", lambda arr: None)  # each trial and stretch encoded afresh, as before
    fresh = read_bank(est, [real_clip], offsets=offsets, lengths_s=(1.0,))
    assert sum(frames) > 8 * n  # 5 trials and 10 stretches
    w = once.whole
    np.testing.assert_array_equal(once.k, fresh.k)
    np.testing.assert_allclose(once.error[w], fresh.error[w], atol=0.25)
    np.testing.assert_allclose(once.features[w], fresh.features[w], rtol=0.15, atol=0.1)


def test_import_avsync_does_not_import_torch():
    code = "import sys, avsync; import avsync.api; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- shipped weights
SHIPPED = sorted(registry())


def test_registry_entries_are_small_and_verified():
    from avsync.models.checkpoint import registered_path

    for name in SHIPPED:
        p = registered_path(name)  # raises on a sha256 mismatch
        assert p.stat().st_size <= 20 * 1024 * 1024
        obj = read_checkpoint(p)
        assert obj["name"] == name and obj["training"]["speakers"] and obj["training"]["clips_sha256"]


def test_tampered_weights_are_refused(monkeypatch, tmp_path):
    from avsync.models import checkpoint

    if not SHIPPED:
        pytest.skip("no shipped weights")
    name = SHIPPED[0]
    entry = dict(registry()[name], sha256="0" * 64)
    monkeypatch.setattr(checkpoint, "registry", lambda: {name: entry})
    with pytest.raises(ModelError, match="sha256"):
        checkpoint.registered_path(name)


@pytest.fixture(scope="module")
def dev_grid_extraction():
    from avsync.extract import extract

    clip = next(r for r in manifest_clips(DATA, ("dev",)) if r.speaker.startswith("grid_spkA"))
    return extract(clip.path, keep_crops=True)


def _all_models() -> list[str]:
    from avsync.api import available_models

    return [n for n in available_models() if n != "modelfree"]


def _read_shifted(name, ext, k):
    import avsync
    from avsync.api import DetectOptions, estimate
    from avsync.eval.slide import shift_extraction

    return estimate(shift_extraction(ext, k), avsync.load_model(name), DetectOptions())


def test_default_model_gets_the_sign_right_on_a_shifted_dev_clip(dev_grid_extraction):
    for k in (6, -6):
        r = _read_shifted(None, dev_grid_extraction, k)
        assert np.sign(r.offset_frames) == np.sign(k), (r.model, k, r.offset_frames)


@pytest.mark.parametrize("name", _all_models())
def test_every_shipped_model_reads_a_shifted_dev_clip(name, dev_grid_extraction):
    """Every shipped model loads (sha256 checked) and reads a trial; how well is in docs/BENCHMARKS.md."""
    r = _read_shifted(name, dev_grid_extraction, 6)
    assert r.model == name and np.isfinite(r.offset_frames) and abs(r.offset_frames) <= 15.5
    assert r.confidence >= 0


def test_leak_guard_refuses_training_clips():
    from avsync.eval.runner import Clip as EvalClip
    from avsync.eval.runner import split_leaks

    class Est:
        name = "x"
        training_summary = {"speakers": ["grid_s1"], "clips_sha256": []}

    recs: list[ClipRecord] = manifest_clips(DATA, ("train",))[:2]
    kept, refused = split_leaks([EvalClip(r.path, r.speaker, r.split) for r in recs], Est())
    assert not kept and len(refused) == 2


def test_lr_schedule():
    from avsync.train.loop import lr_at

    lrs = [lr_at(s, 100, 1.0) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(1.0) and lrs[-1] < 0.05 and all(x > 0 for x in lrs)


def test_fusion_standardises_and_falls_back():
    from avsync.sync.fusion import fuse, standardise

    a = np.array([[0.0, 1.0, 2.0, 1.0, 0.0]])
    z = standardise(a)
    assert abs(np.nanmean(z)) < 1e-12 and abs(np.nanstd(z) - 1) < 1e-12
    b = np.array([[10.0, 10.0, 10.0, 10.0, 30.0]])  # disagrees: peak at the last lag
    f = fuse([a, b], [0.5, 0.5])
    assert f.shape == a.shape and np.isfinite(f).all()
    nan = np.full_like(a, np.nan)
    np.testing.assert_allclose(fuse([a, nan], [0.5, 0.5]), standardise(a))  # one missing: the other alone
    np.testing.assert_allclose(fuse([nan, b], [0.5, 0.5]), standardise(b))
    assert np.isnan(fuse([nan, nan], [0.5, 0.5])).all()
    assert np.argmax(fuse([a, standardise(a) * 3], [0.5, 0.5])) == 2
    # weights: the heavier member decides where the two disagree; three members work the same way
    assert np.argmax(fuse([a, b], [0.9, 0.1])) == 2 and np.argmax(fuse([a, b], [0.1, 0.9])) == 4
    assert np.argmax(fuse([a, b, b], [0.4, 0.3, 0.3])) == 4


def test_cli_models_and_train_errors(tmp_path):
    import json as _json

    run = lambda *a: subprocess.run([sys.executable, "-m", "avsync", *a], capture_output=True, text=True)  # noqa: E731
    r = run("models", "--json")
    assert r.returncode == 0
    listed = _json.loads(r.stdout)
    assert "modelfree" in listed["models"] and (listed["default"] in listed["models"] or listed["default"] in listed["fusions"])
    assert all(m in listed["models"] for f in listed["fusions"].values() for m in f["members"])
    r = run("train", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and r.stderr.strip().startswith("avsync: no such config")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n")
    r = run("train", str(bad), "--data", str(DATA))
    assert r.returncode == 2 and "missing 'model'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("detect", str(tmp_path / "x.mp4"), "--model", str(bad))
    assert r.returncode == 12 and r.stderr.startswith("avsync: unknown model")


def test_source_offsets_need_agreeing_trials():
    """A clip whose trials agree on a shift of a frame or more is re-aligned; a noisy one or an in-sync one is not."""
    from types import SimpleNamespace

    from avsync.train.align import source_offsets
    from avsync.train.calibrate import Readings

    def clip(i):
        return SimpleNamespace(arr={"fps": np.float64(25.0)},
                               rec=SimpleNamespace(sha256=f"h{i}", path=f"/x/c{i}.mp4", speaker=f"s{i}"))

    k = np.array([-8, -3, 0, 3, 8])
    errors = np.concatenate([
        np.full(5, 2.0) + [0.1, -0.2, 0.0, 0.3, -0.1],  # agrees on +2 frames: re-aligned by +80 ms
        np.array([2.0, -6.0, 5.0, 1.5, -3.0]),  # no agreement: left alone
        np.array([0.2, -0.3, 0.0, 0.1, 0.4]),  # in sync: left alone
    ])
    r = Readings(np.repeat([0, 1, 2], 5), np.tile(k, 3), np.full(15, 3.0), np.ones(15, bool), errors,
                 np.zeros((15, 3)), ["s0", "s1", "s2"])
    got = source_offsets(r, [clip(0), clip(1), clip(2)])
    assert list(got) == ["h0"]
    assert got["h0"]["offset_frames"] == pytest.approx(2.0) and got["h0"]["offset_ms"] == pytest.approx(80.0)


def test_source_offsets_realign_the_audio(real_clip, tmp_path):
    """load_bank moves a clip's audio clock by its source offset: +40 ms (audio late) reads 40 ms earlier."""
    from avsync.train.cache import build_cache
    from avsync.train.loop import load_bank

    rec = real_clip.rec
    build_cache([rec], tmp_path)
    plain = load_bank([rec], tmp_path)[0]
    moved = load_bank([rec], tmp_path, {rec.sha256: 40.0})[0]
    assert float(moved.arr["audio_t0"]) == pytest.approx(float(plain.arr["audio_t0"]) - 0.040)


def test_cache_holds_one_landmark_rate_per_folder(real_clip, tmp_path):
    """A clip cached with the landmarks on every 2nd frame lives in its own folder, and its crops are the
    ones that setting places (not the every-frame ones)."""
    from avsync.train.cache import DEFAULT_CACHE, build_cache, cache_dir, load_clip

    assert cache_dir(1) == DEFAULT_CACHE and cache_dir(2) == DEFAULT_CACHE.with_name(DEFAULT_CACHE.name + "-mesh2")
    rec = real_clip.rec
    every, second = cache_dir(1, tmp_path / "f"), cache_dir(2, tmp_path / "f")
    assert build_cache([rec], every) == [rec] and build_cache([rec], second, mesh_every=2) == [rec]
    a, b = load_clip(every, rec), load_clip(second, rec)
    assert a["crops"].shape == b["crops"].shape and np.isfinite(b["lips"]).all(axis=(1, 2)).mean() > 0.9
    assert not np.array_equal(a["crops"], b["crops"])


def test_estimator_device_for_training_readings():
    """Training's own readings (zero, validation, calibration) run a two-stream model's encoders on the
    training device; other families score with the whole model, and stay on the CPU whatever is asked."""
    from avsync.models.checkpoint import registered_path

    other = estimator_from_file(registered_path("vocalist-small"), device="cuda")
    assert other.device.type == "cpu" and next(other.model.parameters()).device.type == "cpu"
    a = estimator_from_file(registered_path("pm-small"))
    b = estimator_from_file(registered_path("pm-small"), device="cpu")
    crops = np.random.default_rng(0).integers(0, 256, (1, 12, 48, 96), dtype=np.uint8)
    np.testing.assert_array_equal(a._embed_visual(crops), b._embed_visual(crops))
