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

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from avsync.audio.features import E2E_MEL
from avsync.models.inputs import AUDIO_STEPS, audio_grid, frame_positions, mel_stats, normalise_mel, track_arrays
from avsync.models.nets import VISUAL_INPUT
from avsync.sync.confidence import Calibration

#: Audio steps of context given to the audio encoder on each side of what is scored.
AUDIO_CONTEXT = 16
#: Frames per encoder call on long files (bounded memory).
CHUNK_FRAMES = 512
#: Block length (s) over which file curves are averaged, as the model-free method.
BLOCK_S = 8.0


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
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


class LearnedEstimator:
    """Wraps a trained model (see ``models.checkpoint``) for ``api.estimate`` and ``avsync eval``."""

    def __init__(self, model: torch.nn.Module, meta: dict):
        self.model = model.eval()
        self.meta = meta
        self.name = meta["name"]
        self.description = meta.get("description", self.name)
        self.family = model.family
        cal = meta.get("calibration")
        #: The fitted confidence (``sync.confidence``); None in checkpoints from before calibrations,
        #: whose confidence is ``confidence_scale`` x the curve's prominence.
        self.calibration = Calibration.from_dict(cal) if cal else None
        self.confidence_scale = float(meta.get("confidence_scale", 1.0))
        self.training_summary = meta.get("training", {})
        self.input_key = VISUAL_INPUT[model.visual_kind]
        self.needs_crops = self.input_key in ("crops", "flow")

    # ------------------------------------------------------------------ prepare
    def prepare(self, ext, track_index: int) -> dict:
        arr = track_arrays(ext, track_index, with_crops=self.needs_crops, with_flow=self.input_key == "flow")
        arr.update(times=ext.times, fps=ext.fps, audio_t0=ext.audio_t0, mel40=ext.mel40)
        return self.prepare_arrays(arr)

    def prepare_arrays(self, arr: dict) -> dict:
        with _one_thread():
            return self._prepare_arrays(arr)

    @torch.no_grad()
    def _prepare_arrays(self, arr: dict) -> dict:
        """Encoder outputs for one track's arrays (``track_arrays`` + times, fps, audio_t0, mel40)."""
        times = np.asarray(arr["times"], dtype=np.float64)
        fps = float(arr["fps"])
        prep = {
            "found": np.asarray(arr["found"], bool), "times": times, "fps": fps, "pos": frame_positions(times, fps),
            "mel40": np.asarray(arr["mel40"], np.float32), "audio_t0": float(arr["audio_t0"]),
            "stats": mel_stats(arr["mel40"]), "audio_cache": {},
        }
        x = arr[self.input_key]
        if self.family == "regression":
            prep["flow"] = np.asarray(x, np.float32)
            return prep
        enc = self._encoders()[0]
        if len(times) == 0:
            prep["v"] = torch.zeros(0, 1)
            return prep
        # Only the span where this face was seen is encoded (in a long file most faces appear briefly).
        seen = np.flatnonzero(prep["found"])
        first, last = (int(seen[0]), int(seen[-1]) + 1) if seen.size else (0, 0)
        v = None
        for a in range(first, last, CHUNK_FRAMES):  # 2-frame overlap keeps the 5-frame stem exact
            lo, hi = max(0, a - 2), min(len(times), a + CHUNK_FRAMES + 2)
            e = enc(_t(x[lo:hi]).unsqueeze(0))[0]
            if v is None:
                v = torch.zeros(len(times), e.shape[-1])
            n = min(CHUNK_FRAMES, last - a)
            v[a : a + n] = e[a - lo : a - lo + n]
        prep["v"] = v if v is not None else torch.zeros(len(times), 1)
        return prep

    def _encoders(self):
        """(visual, audio) per-frame / per-step encoders: unit embeddings for the cosine families."""
        m = self.model
        streams = m.streams if self.family == "synccls" else m
        if self.family in ("twostream", "synccls"):
            return streams.embed_visual, streams.embed_audio
        return m.visual, m.audio  # vocalist

    @torch.no_grad()
    def _audio(self, prep: dict, first: int, last: int) -> tuple[torch.Tensor, int]:
        """Audio embeddings for steps [first, last] (plus context), as (tensor, step of row 0)."""
        key = (first, last)
        if key not in prep["audio_cache"]:
            lo, hi = first - AUDIO_CONTEXT, last + 1 + AUDIO_CONTEXT
            grid = audio_grid(prep["mel40"], prep["audio_t0"], prep["times"][0], prep["fps"], lo, hi - lo)
            grid = normalise_mel(grid, prep["stats"])
            enc = self._encoders()[1]
            outs, step = [], CHUNK_FRAMES * AUDIO_STEPS
            for a in range(0, len(grid), step):
                b0, b1 = max(0, a - AUDIO_CONTEXT), min(len(grid), a + step + AUDIO_CONTEXT)
                e = enc(_t(grid[b0:b1]).unsqueeze(0))[0]
                outs.append(e[a - b0 : a - b0 + min(step, len(grid) - a)])
            prep["audio_cache"] = {key: (torch.cat(outs), lo)}  # keep one range only
        return prep["audio_cache"][key]

    # ------------------------------------------------------------------ scores
    def scores(self, prep: dict, lags: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Score (W, L) of each window ``[start, start+length)`` at each lag (s); higher is better."""
        steps = np.round(np.asarray(lags) * AUDIO_STEPS * prep["fps"]).astype(np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        out = np.full((len(starts), len(steps)), np.nan)
        if len(prep["times"]) == 0 or len(starts) == 0:
            return out
        fn = {"twostream": self._scores_twostream, "vocalist": self._scores_vocalist,
              "synccls": self._scores_synccls, "regression": self._scores_regression}[self.family]
        with _one_thread():
            return fn(prep, steps, starts, int(length), out)

    def _frame_cos(self, prep: dict, steps: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """cos(visual_i, audio at pos_i + lag) for frames [lo, hi) and every lag, (T, L); NaN where the
        face is lost and outside [lo, hi)."""
        pos = prep["pos"]
        cos = np.full((len(pos), len(steps)), np.nan)
        seen = np.flatnonzero(prep["found"][lo:hi])
        if seen.size == 0:
            return cos
        lo, hi = lo + int(seen[0]), lo + int(seen[-1]) + 1  # only where this face was seen
        a, a0 = self._audio(prep, int(pos[lo] + steps.min()), int(pos[hi - 1] + steps.max()))
        for c in range(lo, hi, CHUNK_FRAMES):  # (frames, lags, dim) at once would grow with the file
            e = min(c + CHUNK_FRAMES, hi)
            idx = _t(pos[c:e, None] + steps[None, :] - a0)
            cos[c:e] = torch.einsum("td,tld->tl", prep["v"][c:e], a[idx]).numpy()
        cos[~prep["found"]] = np.nan
        # a frame whose audio at this lag lies outside the recording says nothing (trimmed trials)
        cos[lo:hi][~self._heard(prep, pos[lo:hi, None] + steps[None, :])] = np.nan
        return cos

    @staticmethod
    def _heard(prep: dict, step: np.ndarray) -> np.ndarray:
        """Whether audio grid steps lie inside the recording."""
        t = prep["times"][0] + step / (AUDIO_STEPS * prep["fps"])
        end = prep["audio_t0"] + len(prep["mel40"]) / E2E_MEL.fps
        return (t >= prep["audio_t0"] - 1e-6) & (t <= end + 1e-6)

    def _scores_twostream(self, prep, steps, starts, length, out):
        cos = self._frame_cos(prep, steps, int(starts.min()), int(min(len(prep["pos"]), starts.max() + length)))
        ok = np.isfinite(cos)
        c = np.concatenate([np.zeros((1, cos.shape[1])), np.cumsum(np.where(ok, cos, 0.0), 0)])
        n = np.concatenate([np.zeros((1, cos.shape[1])), np.cumsum(ok, 0)])
        stop = np.minimum(starts + length, len(cos))
        cnt = n[stop] - n[starts]
        need = min(length, max(3, length // 2))
        good = cnt >= need
        with np.errstate(all="ignore"):
            out[good] = ((c[stop] - c[starts]) / cnt)[good]
        return out

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
                vv = prep["v"][_t(v_idx[b : b + 2048])]
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
            v = prep["v"][vi] * _t(prep["found"][vi.numpy()], torch.float32).unsqueeze(-1)
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

    # ------------------------------------------------------------------ file
    def file_curve(self, prep: dict, lags: np.ndarray, fps: float) -> np.ndarray:
        """One curve for the whole file: the mean of overlapping blocks over the span the face was seen."""
        seen = np.flatnonzero(prep["found"])
        if seen.size == 0:
            return np.full(len(lags), np.nan)
        lo, hi = int(seen[0]), int(seen[-1]) + 1
        block = int(round(BLOCK_S * fps))
        if self.family == "regression":
            block = min(block, int(self.meta.get("window_frames", 50)))
        if hi - lo <= block:
            starts, block = np.array([lo]), hi - lo
        else:
            hop = max(1, block // 2)
            starts = np.unique(np.minimum(np.arange(lo, hi - block + hop, hop), hi - block))
        per = self.scores(prep, lags, starts, block)
        ok = np.isfinite(per).all(1)
        if not ok.any():
            return np.full(len(lags), np.nan)
        return per[ok].mean(0)
