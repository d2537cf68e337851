"""A trained model as an avsync estimator (the interface of ``sync/modelfree.py``).

``prepare`` runs the encoders once per face track; ``scores`` then reads any
window at any lag on the quarter-frame grid from the cached embeddings, so the
offset search and every ``avsync eval`` protocol cost little beyond one pass.
The family decides how a (window, lag) is scored:

- two-stream (SyncNet / PM, any visual encoder): mean over the window's frames
  of cos(visual_i, audio at step 4i + lag);
- VocaLiST: mean of the sync block's logit over the window's 5-frame sub-windows;
- Sync-cls / Sync-e2e / Diag-avg: the log-probability of the lag's class from
  the N x N matrix of the window (a quarter-frame phase picks the audio steps);
- regression: a Gaussian bump of 1 frame around the predicted offset; a file's
  curve is the mean bump over blocks, so agreeing blocks give a tall peak.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from avsync.models.inputs import AUDIO_STEPS, audio_grid, normalise_mel
from avsync.models.scoring import EstimatorBase


@contextmanager
def _one_thread():
    """Run torch on one thread: these models are small, their calls many and short, and with
    several threads (or other busy processes) thread hand-offs cost more than the maths
    (measured: a dev clip's strict protocol went from 13.8 s to 1.7 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _t(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


class LearnedEstimator(EstimatorBase):
    """Wraps a trained model (see ``models.checkpoint``) for ``api.estimate`` and ``avsync eval``."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device | None = None):
        # A two-stream model's encoders may run on a GPU (training's own readings, on a GPU machine: zero,
        # validation, calibration); the families whose scores run the model further stay on the CPU.
        self.device = torch.device(device or "cpu")
        if self.device.type != "cpu" and model.family != "twostream":
            self.device = torch.device("cpu")
        self.model = model.to(self.device).eval()
        super().__init__(meta, model.family, model.visual_kind)

    def _threads(self):
        return _one_thread() if self.device.type == "cpu" else nullcontext()

    def _encoders(self):
        """(visual, audio) per-frame / per-step encoders: unit embeddings for the cosine families."""
        m = self.model
        streams = m.streams if self.family == "synccls" else m
        if self.family in ("twostream", "synccls"):
            return streams.embed_visual, streams.embed_audio
        return m.visual, m.audio  # vocalist

    @torch.no_grad()
    def _embed_visual(self, x: np.ndarray) -> np.ndarray:
        return self._encoders()[0](_t(x).to(self.device)).cpu().numpy()

    @torch.no_grad()
    def _embed_audio(self, mel: np.ndarray) -> np.ndarray:
        return self._encoders()[1](_t(mel).to(self.device)).cpu().numpy()

    def _scores_family(self, prep, steps, starts, length, out):
        fn = {"vocalist": self._scores_vocalist, "synccls": self._scores_synccls,
              "regression": self._scores_regression}[self.family]
        return fn(prep, steps, starts, length, out)

    def _scores_vocalist(self, prep, steps, starts, length, out):
        # The sync block is the costly part: score whole-frame lags, interpolate the quarter lags.
        whole = np.unique(np.concatenate([np.floor_divide(steps, AUDIO_STEPS), -np.floor_divide(-steps, AUDIO_STEPS)]))
        if len(whole) < len(steps):
            coarse = self._scores_vocalist_at(prep, whole * AUDIO_STEPS, starts, length,
                                              np.full((len(starts), len(whole)), np.nan))
            x = steps / AUDIO_STEPS
            for w in range(len(starts)):
                ok = np.isfinite(coarse[w])
                if ok.sum() >= 2:
                    out[w] = np.interp(x, whole[ok], coarse[w, ok], left=np.nan, right=np.nan)
            return out
        return self._scores_vocalist_at(prep, steps, starts, length, out)

    @torch.no_grad()
    def _scores_vocalist_at(self, prep, steps, starts, length, out):
        m = self.model
        sub = 5
        t = len(prep["times"])
        pos = prep["pos"]
        lo, hi = int(starts.min()), int(min(t, starts.max() + length))  # audio only under these windows
        a, a0 = self._audio(prep, int(pos[lo] + steps.min() - 2), int(pos[hi - 1] + steps.max() + 2))
        a, pv = _t(a), _t(prep["v"])
        stride = 1 if length <= 15 else 3
        # every 5-frame sub-window any requested window needs
        subs = sorted({s for w in starts for s in range(int(w), max(int(w), int(w) + length - sub) + 1, stride)
                       if s + sub <= t or s == 0})
        subs = [s for s in subs if prep["found"][s : s + sub].sum() >= min(sub, t) - 1]
        if not subs:
            return out
        subs_a = np.asarray(subs)
        n = min(sub, t)
        logit = np.full((len(subs_a), len(steps)), np.nan)
        v_idx = subs_a[:, None] + np.arange(n)[None, :]
        for j, l in enumerate(steps):
            inside = self._heard(prep, pos[subs_a] + l - AUDIO_STEPS // 2) & self._heard(
                prep, pos[np.minimum(subs_a + n - 1, t - 1)] + l + AUDIO_STEPS // 2)
            first = pos[subs_a] + l - AUDIO_STEPS // 2 - a0
            a_idx = first[:, None] + np.arange(AUDIO_STEPS * n)[None, :]
            for b in range(0, len(subs_a), 2048):
                vv = pv[_t(v_idx[b : b + 2048])]
                aa = a[_t(a_idx[b : b + 2048])]
                logit[b : b + 2048, j] = m.sync_logit(vv, aa).numpy()
            logit[~inside, j] = np.nan
        where = {s: i for i, s in enumerate(subs)}
        for w, s0 in enumerate(starts):
            rows = [where[s] for s in range(int(s0), max(int(s0), int(s0) + length - sub) + 1, stride) if s in where]
            if rows:
                sel = logit[rows]
                cnt = np.isfinite(sel).sum(0)
                out[w] = np.where(cnt > 0, np.nansum(sel, 0) / np.maximum(cnt, 1), np.nan)
        return out

    @torch.no_grad()
    def _scores_synccls(self, prep, steps, starts, length, out):
        m = self.model
        n_model, k = m.n, m.k
        t = len(prep["times"])
        pos = prep["pos"]
        lo, hi = int(starts.min()), int(min(t, starts.max() + length))  # audio only under these windows
        a, a0 = self._audio(prep, int(pos[lo]), int(pos[hi - 1] + AUDIO_STEPS - 1))
        a, pv = _t(a), _t(prep["v"])
        n = min(length, n_model)
        kk, q = np.floor_divide(steps, AUDIO_STEPS), np.mod(steps, AUDIO_STEPS)
        # sub-windows of at most N frames
        hop = max(1, n // 2)
        for w, s0 in enumerate(starts):
            stop = min(int(s0) + length, t)
            subs = list(range(int(s0), max(int(s0), stop - n) + 1, hop))
            if subs[-1] + n < stop:
                subs.append(stop - n)
            subs = [s for s in subs if s >= 0 and prep["found"][s : s + n].sum() >= max(3, n // 2)]
            if not subs:
                continue
            vi = _t(np.asarray(subs)[:, None] + np.arange(n)[None, :])
            v = pv[vi] * _t(prep["found"][vi.numpy()], torch.float32).unsqueeze(-1)
            acc = np.zeros((AUDIO_STEPS, 2 * k + 1))
            for ph in range(AUDIO_STEPS):
                ai = pos[vi.numpy()] + ph - a0
                mat = m.matrix(v, a[_t(ai)])
                logits = m.offset_logits(mat, n_used=n)
                val = logits if m.classifier is None else F.log_softmax(logits, -1)
                acc[ph] = val.numpy().mean(0)
            okk = np.abs(kk) <= k
            out[w, okk] = acc[q[okk], kk[okk] + k]
        return out

    @torch.no_grad()
    def _predict_offsets(self, prep, starts, length) -> np.ndarray:
        """Regression: the predicted offset (frames) of each window; NaN where too little face."""
        m = self.model
        t = len(prep["times"])
        pos = prep["pos"]
        preds = np.full(len(starts), np.nan)
        groups: dict[int, list[int]] = {}  # windows of one length go through the model together
        for w, s0 in enumerate(starts):
            s1 = min(int(s0) + length, t)
            if prep["found"][s0:s1].sum() >= max(3, (s1 - s0) // 2):
                groups.setdefault(s1 - s0, []).append(w)
        for n, ws in groups.items():
            for b in range(0, len(ws), 256):
                chunk = ws[b : b + 256]
                flow = np.stack([prep["flow"][int(starts[w]) : int(starts[w]) + n] for w in chunk])
                mel = np.stack([normalise_mel(audio_grid(prep["mel40"], prep["audio_t0"], prep["times"][0], prep["fps"],
                                                         int(pos[starts[w]]) - AUDIO_STEPS // 2, AUDIO_STEPS * n),
                                              prep["stats"]) for w in chunk])
                preds[chunk] = m(_t(flow), _t(mel)).numpy()
        return preds

    def _scores_regression(self, prep, steps, starts, length, out):
        preds = self._predict_offsets(prep, starts, length)
        lag_f = steps / AUDIO_STEPS
        ok = np.isfinite(preds)
        out[ok] = np.exp(-0.5 * (lag_f[None, :] - preds[ok, None]) ** 2)
        return out

