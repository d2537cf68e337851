"""``avsync train CONFIG``: the training loop of every model family.

A config (TOML) has ``name``, ``description``, a ``[model]`` table (``family``
plus the constructor arguments of ``models.nets``) and a ``[train]`` table
(steps, batch, lr, window, offsets, seed, validation speakers, ...). Training:

1. fills the feature cache (``train.cache``) for the ``train`` split;
2. holds out whole speakers for validation (speaker-disjoint);
3. samples windows, makes in-sync and shifted pairs on the audio grid,
   augments them, and optimises the family's loss;
4. saves ``last.pt`` (model, optimiser, step, RNG) every ``save_every`` steps,
   so ``--resume`` continues where it stopped;
5. fits the model's zero on its GRID s1 clips (``train.zero``), validates with
   the real estimator on held-out speakers, calibrates the confidence there,
   and writes the self-describing checkpoint.

It uses CUDA when present and DDP when launched by ``torchrun`` (one process
per GPU; only rank 0 writes).
"""
from __future__ import annotations

import datetime as _dt
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from avsync.models.inputs import AUDIO_STEPS, audio_grid, mel_stats, normalise_mel
from avsync.models.nets import VISUAL_INPUT, build_model, n_params
from avsync.train import augment
from avsync.train.cache import DEFAULT_CACHE, ClipRecord, build_cache, load_clip, manifest_clips

#: Audio steps of encoder context fetched on each side of a training window.
PAD = 16

TRAIN_DEFAULTS = {
    "steps": 2000, "batch": 32, "lr": 1e-3, "weight_decay": 1e-4, "frames": 15, "max_lag": 15,
    "seed": 0, "augment": True, "other_weight": 0.3, "val_speakers": [], "save_every": 200,
    "val_offsets": [-12, -8, -5, -3, -1, 0, 1, 3, 5, 8, 12], "init_from": "", "splits": ["train"],
    "max_clips": 0, "threads": 0, "holdout_clips": 0, "sampling": "main", "speaker_weights": {},
    "candidates": "frames", "target_sigma_steps": 1.0, "window_loss": 0, "window_weight": 1.0,
    "source_offsets": "",
    # A wall-clock budget for the steps (0: none): after BUDGET_PROBE_STEPS steps the run's length is cut to
    # what fits at the speed measured, so the learning-rate schedule still ends at its last step (a lent
    # GPU machine's command has a time limit; ``avsync train --minutes``).
    "minutes": 0.0,
}
#: Steps timed before a ``minutes`` budget sets the run's length.
BUDGET_PROBE_STEPS = 20


# --------------------------------------------------------------------------- data
@dataclass
class Clip:
    rec: ClipRecord
    arr: dict
    stats: tuple

    @property
    def n(self) -> int:
        return len(self.arr["times"])


def load_bank(recs: list[ClipRecord], cache: Path, source_offsets: dict | None = None) -> list[Clip]:
    """Cached clips, ready to sample. ``source_offsets`` (sha256 -> ms, ``train.align``) re-aligns clips whose
    source carries an offset of its own, so that they teach the model true sync (audio moved earlier by
    ``offset_ms`` when it is positive: late)."""
    out = []
    for r in recs:
        a = load_clip(cache, r)
        a["mel40"] = a["mel40"].astype(np.float32)
        if source_offsets and r.sha256 in source_offsets:
            a["audio_t0"] = np.float64(float(a["audio_t0"]) - float(source_offsets[r.sha256]) / 1000.0)
        out.append(Clip(r, a, mel_stats(a["mel40"])))
    return out


def read_source_offsets(path: str) -> dict:
    """``{sha256: offset_ms}`` from a ``train.align`` file (relative paths: to the repository's configs/)."""
    import json

    if not path:
        return {}
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = Path(__file__).resolve().parents[3] / "configs" / path
    return {k: float(v["offset_ms"]) for k, v in json.loads(p.read_text())["clips"].items()}


def raw_audio(clip: Clip, first: int, count: int) -> np.ndarray:
    a = clip.arr
    return audio_grid(a["mel40"], float(a["audio_t0"]), float(a["times"][0]), float(a["fps"]), first, count)


class Sampler:
    """Random training windows from the bank.

    ``sampling = "speaker"``: every speaker is equally likely (a speaker named
    in ``speaker_weights`` counts as that many; an unlabelled pool such as
    ``lrcar_unlabelled`` stands for many people), and within a speaker a clip
    is drawn by its length. So one long speaker (GRID s1: 50 minutes) cannot
    dominate what the model learns. ``sampling = "main"`` is the earlier
    scheme: the main speaker (GRID s1), or any other with probability
    ``other_weight``.
    """

    def __init__(self, bank: list[Clip], other_weight: float, seed: int, sampling: str = "main",
                 speaker_weights: dict | None = None):
        self.rng = np.random.default_rng(seed)
        self.bank = bank
        if sampling == "speaker":
            self.p = speaker_balanced_weights([c.rec.speaker for c in bank], [c.n for c in bank],
                                              speaker_weights or {})
        elif sampling == "main":
            main = np.array([c.rec.speaker == "grid_s1" for c in bank])
            n = np.array([c.n for c in bank], float)
            w = other_weight if main.any() and (~main).any() else (0.0 if main.any() else 1.0)
            p = np.where(main, (1 - w) / max(1, main.sum()), w * n / max(1.0, n[~main].sum()))
            self.p = p / p.sum()
        else:
            raise ValueError(f"unknown sampling {sampling!r}; choose 'speaker' or 'main'")

    def window(self, frames: int) -> tuple[Clip, int]:
        for _ in range(200):
            c = self.bank[self.rng.choice(len(self.bank), p=self.p)]
            if c.n >= frames:
                s = int(self.rng.integers(0, c.n - frames + 1))
                if c.arr["found"][s : s + frames].mean() > 0.8:
                    return c, s
        raise RuntimeError(f"no clip holds {frames} frames with a face")


def speaker_balanced_weights(speakers: list[str], lengths: list[float], speaker_weights: dict) -> np.ndarray:
    """Probability of each clip: speakers share the mass by weight (default 1), clips within one by length."""
    speakers = list(speakers)
    lengths = np.asarray(lengths, float)
    total = {}
    for s, n in zip(speakers, lengths):
        total[s] = total.get(s, 0.0) + n
    w = np.array([float(speaker_weights.get(s, 1.0)) * n / total[s] if total[s] > 0 else 0.0
                  for s, n in zip(speakers, lengths)])
    if w.sum() <= 0:
        raise ValueError("no training clip has any weight")
    return w / w.sum()


def soft_target(cand_steps: np.ndarray, sigma: float) -> torch.Tensor:
    """A target distribution over candidate lags (audio steps): a Gaussian of ``sigma`` steps at lag 0."""
    w = np.exp(-0.5 * (np.asarray(cand_steps, float) / max(sigma, 1e-6)) ** 2)
    return torch.from_numpy((w / w.sum()).astype(np.float32))


def _vis(clip: Clip, key: str, s: int, n: int) -> np.ndarray:
    x = clip.arr[key][s : s + n]
    if key == "lips":
        x = np.where(clip.arr["found"][s : s + n, None, None], x, np.nan)
    return x


class Batcher:
    """Makes one family's training batches (numpy -> torch), with augmentation."""

    def __init__(self, family: str, visual_kind: str, tcfg: dict, model_cfg: dict, sampler: Sampler, seed: int):
        self.family, self.key, self.t, self.m, self.s = family, VISUAL_INPUT[visual_kind], tcfg, model_cfg, sampler
        self.g = torch.Generator().manual_seed(seed)

    def _finish(self, clips, vis, audio, device):
        strong = self.t["augment"] == "strong"
        if self.t["augment"] and self.key == "crops" and strong:
            vis = list(augment.degrade(np.stack(vis), self.s.rng))
        v = torch.from_numpy(np.stack(vis))
        a = torch.from_numpy(np.stack(audio))
        if self.t["augment"]:
            other = None
            if strong:  # another recording of the bank, same length, as background sound
                other = []
                for x in audio:
                    c, s0 = self.s.window(1)
                    other.append(raw_audio(c, AUDIO_STEPS * s0 - len(x) // 2, len(x)))
                other = torch.from_numpy(np.stack(other))
            a = augment.audio(a, self.g, float(np.mean([c.arr["fps"] for c in clips])), other=other, strong=strong)
            if self.key == "crops":
                v = augment.pixels(v, self.g, strong=strong)
            else:
                v = {"lips": augment.landmarks, "flow": augment.flow}[self.key](v, self.g)
        a = torch.from_numpy(np.stack([normalise_mel(x.numpy(), c.stats) for x, c in zip(a, clips)]))
        return v.to(device), a.to(device)

    def __call__(self, device) -> dict:
        b, rng = self.t["batch"], self.s.rng
        clips, vis, audio, extra = [], [], [], {}
        if self.family == "twostream":
            n, k = self.t["frames"], self.t["max_lag"]
            valid = []
            for _ in range(b):
                c, s = self.s.window(n)
                clips.append(c), vis.append(_vis(c, self.key, s, n))
                audio.append(raw_audio(c, AUDIO_STEPS * (s - k) - PAD, AUDIO_STEPS * (n + 2 * k) + 2 * PAD))
                valid.append(c.arr["found"][s : s + n])
            i = np.arange(n)[:, None]
            if self.t["candidates"] == "quarter":  # every quarter-frame lag, soft labels around the truth
                cand = np.arange(-AUDIO_STEPS * k, AUDIO_STEPS * k + 1)[None, :]
                extra["index"] = torch.from_numpy(PAD + AUDIO_STEPS * (i + k) + cand).expand(b, -1, -1).to(device)
                extra["target"] = soft_target(cand[0], float(self.t["target_sigma_steps"])).to(device)
            else:
                cand = np.arange(-k, k + 1)[None, :]
                extra["index"] = torch.from_numpy(PAD + AUDIO_STEPS * (i + cand + k)).expand(b, -1, -1).to(device)
                extra["target"] = torch.full((b,), k, dtype=torch.long, device=device)
            extra["valid"] = torch.from_numpy(np.stack(valid)).float().to(device)
        elif self.family == "vocalist":
            n, k = 5, self.t["max_lag"]
            y = rng.random(b) < 0.5
            for j in range(b):
                c, s = self.s.window(n)
                lag = 0 if y[j] else int(rng.choice([o for o in range(-k, k + 1) if o != 0]))
                lag_steps = AUDIO_STEPS * lag + (0 if y[j] else int(rng.integers(-1, 2)))
                clips.append(c), vis.append(_vis(c, self.key, s, n))
                audio.append(raw_audio(c, AUDIO_STEPS * s + lag_steps - AUDIO_STEPS // 2 - PAD, AUDIO_STEPS * n + 2 * PAD))
            extra["label"] = torch.from_numpy(y.astype(np.float32)).to(device)
        elif self.family == "synccls":
            n_full, k = self.m.get("n", 25), self.m.get("k", 15)
            offs = rng.integers(-k, k + 1, size=b)
            used = np.where(rng.random(b) < 0.5, n_full, rng.integers(5, n_full + 1, size=b))
            for j in range(b):
                c, s = self.s.window(n_full)
                clips.append(c), vis.append(_vis(c, self.key, s, n_full))
                # the N frames' audio, heard k frames late: content of frames s-k .. s-k+N
                audio.append(raw_audio(c, AUDIO_STEPS * (s - int(offs[j])) - PAD, AUDIO_STEPS * n_full + 2 * PAD))
            extra["target"] = torch.from_numpy(offs + k).long().to(device)
            extra["used"] = torch.from_numpy(used).long().to(device)
        elif self.family == "regression":
            n, k = self.t["frames"], self.m.get("max_offset", 25.0)
            offs_steps = rng.integers(-int(k * AUDIO_STEPS), int(k * AUDIO_STEPS) + 1, size=b)
            for j in range(b):
                c, s = self.s.window(n)
                clips.append(c), vis.append(_vis(c, self.key, s, n).astype(np.float32))
                audio.append(raw_audio(c, AUDIO_STEPS * s - int(offs_steps[j]) - AUDIO_STEPS // 2, AUDIO_STEPS * n))
            extra["target"] = torch.from_numpy(offs_steps / AUDIO_STEPS).float().to(device)
        v, a = self._finish(clips, vis, audio, device)
        return {"vis": v, "audio": a, **extra}


class Objective(nn.Module):
    """The family's loss as one ``forward`` (what DDP wraps)."""

    def __init__(self, model: nn.Module, window: int = 0, window_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.window, self.window_weight = window, window_weight

    def forward(self, batch: dict) -> torch.Tensor:
        m = self.model
        if m.family == "twostream":
            v, a = m.embed_visual(batch["vis"]), m.embed_audio(batch["audio"])
            return m.loss(m.candidate_cos(v, a, batch["index"]), batch["target"], batch["valid"],
                          window=self.window, window_weight=self.window_weight)
        if m.family == "vocalist":
            v, a = m.encode(batch["vis"], batch["audio"])
            a = a[:, PAD:-PAD]
            return F.binary_cross_entropy_with_logits(m.sync_logit(v, a), batch["label"])
        if m.family == "synccls":
            s = m.streams
            if m.freeze_encoders:
                with torch.no_grad():
                    v, a = s.embed_visual(batch["vis"]), s.embed_audio(batch["audio"])
            else:
                v, a = s.embed_visual(batch["vis"]), s.embed_audio(batch["audio"])
            n = v.shape[1]
            a = a[:, PAD : PAD + AUDIO_STEPS * n : AUDIO_STEPS]
            used = batch["used"]
            keep = (torch.arange(n, device=v.device)[None, :] < used[:, None]).float().unsqueeze(-1)
            mat = m.matrix(v * keep, a * keep)
            return F.cross_entropy(m.offset_logits(mat), batch["target"])
        if m.family == "regression":
            return F.smooth_l1_loss(m(batch["vis"], batch["audio"]), batch["target"])
        raise ValueError(m.family)


# --------------------------------------------------------------------------- validation
def shift_arrays(arr: dict, k: int) -> dict:
    """A cached clip as the protocol's trial with audio lagging ``k`` frames: trimmed, never padded
    (the array form of ``eval.slide.shift_extraction``)."""
    from avsync.audio.features import E2E_MEL
    from avsync.models.inputs import PER_FRAME_KEYS as per_frame

    n, fps = len(arr["times"]), float(arr["fps"])
    d, hop = abs(k) / fps, 1.0 / E2E_MEL.fps
    mel, t0 = arr["mel40"], float(arr["audio_t0"])
    if k >= 0:
        out = {key: arr[key][k:] for key in per_frame if key in arr}
        keep = max(0, len(mel) - int(np.ceil(d / hop - 1e-9)))
        return {**arr, **out, "times": arr["times"][: n - k], "mel40": mel[:keep]}
    out = {key: arr[key][: n + k] for key in per_frame if key in arr}
    j0 = int(np.ceil(d / hop - 1e-9))
    return {**arr, **out, "times": arr["times"][: n + k], "mel40": mel[j0:], "audio_t0": t0 + j0 * hop - d}


def validate(estimator, bank: list[Clip], offsets: list[int], prefix: str = "val") -> tuple[dict, "Readings"]:
    """Readings of ``estimator`` on held-out clips (whole clips and shorter stretches, trimmed as the
    protocol's trials) and their metrics (``train.calibrate.readings_metrics``)."""
    from avsync.train.calibrate import read_bank, readings_metrics

    r = read_bank(estimator, bank, offsets=tuple(offsets))
    return readings_metrics(r, prefix), r


# --------------------------------------------------------------------------- loop
def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except Exception:
        return ""


def _dist() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def split_speakers(recs: list[ClipRecord], val_speakers: list[str]) -> tuple[list[ClipRecord], list[ClipRecord]]:
    val = [r for r in recs if r.speaker in val_speakers]
    train = [r for r in recs if r.speaker not in val_speakers]
    assert not {r.speaker for r in val} & {r.speaker for r in train}
    return train, val


def first_clips_per_speaker(recs: list[ClipRecord], n: int) -> list[ClipRecord]:
    """The first ``n`` clips of each speaker, in manifest order (``max_clips``: quick runs and tests)."""
    seen: dict[str, int] = {}
    out = []
    for r in recs:
        seen[r.speaker] = seen.get(r.speaker, 0) + 1
        if seen[r.speaker] <= n:
            out.append(r)
    return out


def train(config: dict, out_dir: str | os.PathLike, *, data_dir: str | os.PathLike, resume: bool = False,
          cache: Path = DEFAULT_CACHE, progress: bool = True, steps: int | None = None) -> Path:
    """Train one config; returns the path of the final checkpoint (``<out>/<name>.pt``)."""
    from avsync import __version__
    from avsync.models.checkpoint import estimator_from_file, save_checkpoint

    tcfg = {**TRAIN_DEFAULTS, **config.get("train", {})}
    if steps is not None:
        tcfg["steps"] = steps
    mcfg = dict(config["model"])
    if tcfg["candidates"] == "quarter" and mcfg.get("loss") == "contrastive":
        raise ValueError("candidates = 'quarter' (soft labels) needs a softmax loss (multiway or angular), not contrastive")
    name = config["name"]
    out = Path(out_dir)
    rank, world, device = _dist()
    seed = int(tcfg["seed"])
    random.seed(seed + rank), np.random.seed(seed + rank), torch.manual_seed(seed + rank)
    if tcfg["threads"]:
        torch.set_num_threads(int(tcfg["threads"]))

    recs = manifest_clips(Path(data_dir), tuple(tcfg["splits"]))
    if "dev" in tcfg["splits"]:
        raise ValueError("the dev split is for choosing and reporting; never train on it")
    if tcfg["max_clips"]:
        recs = first_clips_per_speaker(recs, int(tcfg["max_clips"]))
    recs = build_cache(recs, cache) if rank == 0 else recs
    if world > 1:
        torch.distributed.barrier()
        recs = build_cache(recs, cache)
    train_recs, val_recs = split_speakers(recs, list(tcfg["val_speakers"]))
    # Clips of the main training speaker kept out of training, for calibrating the confidence only.
    main = [r for r in train_recs if r.speaker == "grid_s1"]
    hold_recs = main[len(main) - int(tcfg["holdout_clips"]):] if tcfg["holdout_clips"] else []
    train_recs = [r for r in train_recs if r not in hold_recs]
    source_offsets = read_source_offsets(tcfg["source_offsets"])
    bank = load_bank(train_recs, cache, source_offsets)
    val_bank = load_bank(val_recs, cache)
    hold_bank = load_bank(hold_recs, cache)

    model = build_model(mcfg)
    if tcfg["init_from"]:
        from avsync.models.checkpoint import model_from_checkpoint, read_checkpoint

        src = model_from_checkpoint(read_checkpoint(tcfg["init_from"]))
        target = model.streams if mcfg["family"] == "synccls" else model
        target.load_state_dict(src.state_dict())
    model.to(device)
    if mcfg["family"] == "synccls" and mcfg.get("freeze_encoders"):
        for p in model.streams.parameters():
            p.requires_grad_(False)
    objective = Objective(model, int(tcfg["window_loss"]), float(tcfg["window_weight"]))
    if world > 1:
        # find_unused_parameters: some heads leave parameters out of some losses (w, b outside the angular loss)
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # parameter-free heads (Diag-avg) train nothing
        tcfg["steps"] = 0
        params = [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW(params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    sampler = Sampler(bank, tcfg["other_weight"], seed * 1000 + rank, tcfg["sampling"], tcfg["speaker_weights"])
    batcher = Batcher(mcfg["family"], model.visual_kind, tcfg, mcfg, sampler, seed * 1000 + rank)

    state_path = out / "last.pt"
    step, history, before_s = 0, [], 0.0  # before_s: training seconds of the sessions a resume continues
    if resume and state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(st["model"]), opt.load_state_dict(st["opt"])
        step, history = int(st["step"]), [float(x) for x in st["history"]]
        before_s = float(st.get("train_seconds", 0.0))  # states from before this was recorded: 0
        sampler.rng = np.random.default_rng(int(st["step"]) + seed * 7919 + rank)
        batcher.g.manual_seed(int(st["step"]) + seed + rank)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    bar = None
    # Without a terminal (a log file, a cluster job) a progress bar shows nothing until the end:
    # print a plain line at every save instead.
    log_lines = progress and rank == 0 and not sys.stderr.isatty()
    if progress and rank == 0 and not log_lines:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("train", total=tcfg["steps"], completed=step, loss=float("nan"))
    model.train()
    if mcfg["family"] == "synccls" and mcfg.get("freeze_encoders"):
        model.streams.eval()
    start = step
    try:
        while step < tcfg["steps"]:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, tcfg["steps"], tcfg["lr"])
            batch = batcher(device)
            loss = objective(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            history.append(float(loss.detach()))
            if tcfg["minutes"] and step - start == BUDGET_PROBE_STEPS and step < tcfg["steps"]:
                # (this session's budget: a resumed run counts the steps it adds)
                fit = start + fit_steps(step - start, time.time() - t0, float(tcfg["minutes"]) * 60.0,
                                        int(tcfg["steps"]) - start)
                if world > 1:  # every rank stops at the same step
                    t = torch.tensor([fit], device=device)
                    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
                    fit = int(t.item())
                if fit < tcfg["steps"]:
                    tcfg["steps_planned"], tcfg["steps"] = int(tcfg["steps"]), fit
                    if bar is not None:
                        bar.update(task, total=fit)
            if bar is not None:
                bar.update(task, completed=step, loss=float(np.mean(history[-50:])))
            if rank == 0 and (step % tcfg["save_every"] == 0 or step == tcfg["steps"]):
                _save_state(state_path, model, opt, step, history, before_s + time.time() - t0)
                if log_lines:
                    print(f"{name}: step {step}/{tcfg['steps']}, loss {np.mean(history[-tcfg['save_every']:]):.4f}, "
                          f"lr {lr_at(step - 1, tcfg['steps'], tcfg['lr']):.2e}, {time.time() - t0:.0f} s",
                          file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.stop()
    train_s = before_s + time.time() - t0
    if rank != 0:
        return out / f"{name}.pt"

    model.eval()
    win = min(50, max(1, len(history) // 4))  # loss averaged over the first and last steps
    meta = {
        "name": name,
        "description": config.get("description", name),
        "model": mcfg,
        "train": tcfg,
        "code_version": __version__,
        "git_commit": _git_commit(),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "training": {
            "speakers": sorted({r.speaker for r in train_recs}),
            "speakers_count": len({r.speaker for r in train_recs}),
            "clips_sha256": sorted(r.sha256 for r in train_recs),
            "clips": len(train_recs),
            "seconds": round(float(sum(c.n / float(c.arr["fps"]) for c in bank)), 1),
            "val_speakers": sorted({r.speaker for r in val_recs}),
            "holdout_clips_sha256": sorted(r.sha256 for r in hold_recs),
            "source_offsets_ms": {k: v for k, v in source_offsets.items() if k in {r.sha256 for r in train_recs}},
            "steps": step, "train_seconds": round(train_s, 1), "device": str(device), "world_size": world,
            "loss_first": float(np.mean(history[:win])) if history else None,
            "loss_last": float(np.mean(history[-win:])) if history else None,
        },
        "n_params": n_params(model),
        "window_frames": int(tcfg["frames"]),
        "metrics": {},
    }
    final = out / f"{name}.pt"
    model.cpu()
    save_checkpoint(final, model, meta)
    # zero: the model's reading of the training clips known to be in sync (``train.zero``), before validation
    from avsync.train.zero import MIN_CLIPS, ZERO_CLIPS, ZERO_SPEAKER, measure_zero

    in_sync = [c for c in bank if c.rec.speaker == ZERO_SPEAKER]
    if len(in_sync) >= MIN_CLIPS:
        pick = np.random.default_rng(0).choice(len(in_sync), min(ZERO_CLIPS, len(in_sync)), replace=False)
        try:
            meta["zero"] = measure_zero(estimator_from_file(final, device), [in_sync[i] for i in sorted(pick)])
        except ValueError as exc:
            meta["metrics"]["zero_error"] = str(exc)
        save_checkpoint(final, model, meta)
    if val_bank or hold_bank:
        from avsync.train.calibrate import calibrate, consensus_offsets

        est = estimator_from_file(final, device)  # (on a GPU, a two-stream model's readings run there)
        metrics, readings = validate(est, val_bank, list(tcfg["val_offsets"])) if val_bank else ({}, None)
        if hold_bank:
            hold, hold_readings = validate(est, hold_bank, list(tcfg["val_offsets"]), prefix="holdout")
            metrics.update(hold)
            readings = readings if val_bank else hold_readings
        # confidence: calibrated on held-out speakers (the main speaker's held-out clips only if there are none)
        try:
            own = consensus_offsets(readings, val_bank if val_bank else hold_bank)
            meta["calibration"] = calibrate(readings, own=own).to_dict()
        except ValueError as exc:
            metrics["calibration_error"] = str(exc)
        meta["metrics"] = {**meta["metrics"], **metrics}
        save_checkpoint(final, model, meta)
    return final


def fit_steps(done: int, seconds: float, budget_s: float, planned: int) -> int:
    """How many steps in all fit ``budget_s`` seconds of training when ``done`` steps took ``seconds``
    (never fewer than ``done``, never more than ``planned``)."""
    per = seconds / max(1, done)
    return int(min(planned, max(done, np.floor(budget_s / per)))) if per > 0 else planned


def lr_at(step: int, total: int, peak: float) -> float:
    """Learning rate: linear warm-up over the first 5% of steps, then a cosine down to 2% of the peak."""
    warm = max(1, total // 20)
    if step < warm:
        return float(peak * (step + 1) / warm)
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return float(peak * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * frac))))


def _save_state(path: Path, model, opt, step: int, history: list[float], train_s: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "history": torch.tensor(history), "train_seconds": float(train_s)}, tmp)
    os.replace(tmp, path)


def load_config(path: str | os.PathLike) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib

    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    for key in ("name", "model"):
        if key not in cfg:
            raise ValueError(f"{path}: missing '{key}'")
    return cfg
