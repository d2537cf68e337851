"""The estimator interface of a trained model, with the parts that need no torch.

``EstimatorBase`` holds what every runtime shares: the checkpoint's metadata,
``prepare`` (per-frame embeddings of one face track), the audio embeddings
of a range of grid steps, the two-stream score (mean cosine of frame and
audio embeddings over a window) and the file curve. A runtime supplies the
two encoders as numpy-in, numpy-out functions:

- ``models.estimator.LearnedEstimator``: torch (every family; training uses it);
- ``models.onnx.OnnxEstimator``: onnxruntime on the ONNX export shipped beside
  a two-stream model's ``.pt`` (``avsync detect`` with the default model loads
  no torch).
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from avsync.audio.features import E2E_MEL
from avsync.errors import ModelError
from avsync.models.inputs import AUDIO_STEPS, audio_grid, frame_positions, mel_stats, normalise_mel, track_arrays
from avsync.sync.confidence import Calibration

#: Which per-frame array each visual encoder reads (as ``models.nets.VISUAL_INPUT``, without torch).
VISUAL_INPUT = {"conv3d": "crops", "vtp": "crops", "landmark": "lips", "flow": "flow"}
#: Audio steps of context given to the audio encoder on each side of what is scored.
AUDIO_CONTEXT = 16
#: Frames per audio-encoder call and per scoring block on long files (bounded memory).
CHUNK_FRAMES = 512
#: Frames per visual-encoder call. The crop models' first layer (a 5x5x5 convolution over 48x96 crops)
#: makes onnxruntime hold a work buffer of about 1.2 MB a frame: 512 frames a call made it the process's
#: peak (660 of 890 MB on a 5-min input, memray). 64 frames a call hold about 75 MB and take the same time
#: (2,048 frames: 512, 128, 64 and 32 a call all within the run-to-run noise of 15%).
VISUAL_CHUNK_FRAMES = 64
#: Frames each visual encoder reads either side of a frame (its 5-frame temporal kernel; every later
#: layer is per frame), so chunks that overlap by this much give the embeddings of one call.
VISUAL_CONTEXT = 2
#: Block length (s) over which file curves are averaged, as the model-free method.
BLOCK_S = 8.0


class EstimatorBase:
    """A trained model behind the estimator interface (``api.estimate``, ``avsync eval``)."""

    family: str

    def __init__(self, meta: dict, family: str, visual_kind: str):
        self.meta = meta
        self.name = meta["name"]
        self.description = meta.get("description", self.name)
        self.family = family
        cal = meta.get("calibration")
        #: The fitted confidence (``sync.confidence``); None in checkpoints from before calibrations,
        #: whose confidence is ``confidence_scale`` x the curve's prominence.
        self.calibration = Calibration.from_dict(cal) if cal else None
        self.confidence_scale = float(meta.get("confidence_scale", 1.0))
        #: Where the model puts zero, in ms (``train.zero``: its reading of footage known to be in sync);
        #: the audio is read this much later, so that in-sync footage reads 0. 0 in checkpoints without one.
        self.zero_ms = float((meta.get("zero") or {}).get("ms", 0.0))
        self.training_summary = meta.get("training", {})
        self.input_key = VISUAL_INPUT[visual_kind]
        self.needs_crops = self.input_key in ("crops", "flow")

    # -- what a runtime supplies ----------------------------------------------------
    def _embed_visual(self, x: np.ndarray) -> np.ndarray:
        """(1, T, ...) visual input -> (1, T, D) float32 per-frame embeddings."""
        raise NotImplementedError

    def _embed_audio(self, mel: np.ndarray) -> np.ndarray:
        """(1, S, 40) normalised audio grid -> (1, S, D) float32 per-step embeddings."""
        raise NotImplementedError

    def _embed_visual_stream(self, x: np.ndarray) -> np.ndarray:
        """``_embed_visual`` as ``models.stream.CropEmbedder`` runs it, in a thread beside decoding (a runtime
        may run it on fewer threads there)."""
        return self._embed_visual(x)

    def _threads(self):
        """Context in which the encoders and scores run (torch: one thread)."""
        return nullcontext()

    def _scores_family(self, prep, steps, starts, length, out):
        """Scores of the families other than two-stream (torch only)."""
        raise NotImplementedError(f"{type(self).__name__} does not run the {self.family} family")

    @property
    def embedding_key(self) -> str:
        """Which encoder made a track's streamed embeddings (``models.stream``): the model and its weights."""
        return f"{self.name}:{getattr(self, 'sha256', '') or id(self)}"

    # ------------------------------------------------------------------ prepare
    def prepare(self, ext, track_index: int) -> dict:
        tr = ext.tracks[track_index]
        streamed = tr.embedding is not None
        if streamed and (self.input_key != "crops" or getattr(ext, "embedded_by", None) != self.embedding_key):
            raise ModelError(f"this extraction holds the mouth-crop embeddings of {ext.embedded_by!r}, not the crops "
                             f"{self.name!r} needs: extract the file again for it")
        arr = track_arrays(ext, track_index, with_crops=self.needs_crops and not streamed,
                           with_flow=self.input_key == "flow", with_lips=self.input_key == "lips")
        arr.update(times=ext.times, fps=ext.fps, audio_t0=ext.audio_t0, mel40=ext.mel40)
        if streamed:
            v = np.zeros((ext.n_frames, tr.embedding.shape[1]), np.float32)
            stop = min(ext.n_frames, tr.first_frame + len(tr.embedding))
            v[tr.first_frame : stop] = tr.embedding[: stop - tr.first_frame]
            arr["v"] = v
        return self.prepare_arrays(arr)

    def prepare_arrays(self, arr: dict) -> dict:
        """Encoder outputs for one track's arrays (``track_arrays`` + times, fps, audio_t0, mel40)."""
        with self._threads():
            return self._prepare_arrays(arr)

    def _prepare_arrays(self, arr: dict) -> dict:
        times = np.asarray(arr["times"], dtype=np.float64)
        fps = float(arr["fps"])
        prep = {
            "found": np.asarray(arr["found"], bool), "times": times, "fps": fps, "pos": frame_positions(times, fps),
            # the audio clock moved by the model's zero: at lag L the model hears what lies at L + zero
            "mel40": np.asarray(arr["mel40"], np.float32), "audio_t0": float(arr["audio_t0"]) - self.zero_ms / 1000.0,
            "stats": mel_stats(arr["mel40"]), "audio_cache": {},
        }
        if "v" in arr:  # embedded while the file was decoded (``models.stream``), or once per clip (``embed_arrays``)
            prep["v"] = np.asarray(arr["v"], np.float32)
            return prep
        if self.family == "regression":
            prep["flow"] = np.asarray(arr[self.input_key], np.float32)
            return prep
        prep["v"] = self._visual(arr[self.input_key], prep["found"])
        return prep

    def embed_arrays(self, arr: dict) -> np.ndarray | None:
        """The per-frame visual embeddings (T, D) of one track's arrays, as ``prepare_arrays`` would make them
        (None for the regression family, which reads flow directly): a caller that reads many stretches of one
        clip encodes it once and passes slices of it as ``v`` (``train.calibrate.read_bank``)."""
        if self.family == "regression":
            return None
        with self._threads():
            return self._visual(arr[self.input_key], np.asarray(arr["found"], bool))

    def _visual(self, x: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Visual embeddings (T, D) of per-frame inputs ``x``; zeros outside the span where the face was seen,
        which alone is encoded (in a long file most faces appear briefly)."""
        n = len(found)
        if n == 0:
            return np.zeros((0, 1), np.float32)
        seen = np.flatnonzero(found)
        first, last = (int(seen[0]), int(seen[-1]) + 1) if seen.size else (0, 0)
        v = None
        for a in range(first, last, VISUAL_CHUNK_FRAMES):  # the overlap keeps the 5-frame kernel exact
            lo, hi = max(0, a - VISUAL_CONTEXT), min(n, a + VISUAL_CHUNK_FRAMES + VISUAL_CONTEXT)
            e = self._embed_visual(np.ascontiguousarray(x[lo:hi])[None])[0]
            if v is None:
                v = np.zeros((n, e.shape[-1]), np.float32)
            m = min(VISUAL_CHUNK_FRAMES, last - a)
            v[a : a + m] = e[a - lo : a - lo + m]
        return v if v is not None else np.zeros((n, 1), np.float32)

    def _audio(self, prep: dict, first: int, last: int) -> tuple[np.ndarray, int]:
        """Audio embeddings for steps [first, last] (plus context), as (array, step of row 0)."""
        key = (first, last)
        if key not in prep["audio_cache"]:
            lo, hi = first - AUDIO_CONTEXT, last + 1 + AUDIO_CONTEXT
            grid = audio_grid(prep["mel40"], prep["audio_t0"], prep["times"][0], prep["fps"], lo, hi - lo)
            grid = normalise_mel(grid, prep["stats"])
            outs, step = [], CHUNK_FRAMES * AUDIO_STEPS
            for a in range(0, len(grid), step):
                b0, b1 = max(0, a - AUDIO_CONTEXT), min(len(grid), a + step + AUDIO_CONTEXT)
                e = self._embed_audio(np.ascontiguousarray(grid[b0:b1])[None])[0]
                outs.append(e[a - b0 : a - b0 + min(step, len(grid) - a)])
            prep["audio_cache"] = {key: (np.concatenate(outs), lo)}  # keep one range only
        return prep["audio_cache"][key]

    # ------------------------------------------------------------------ scores
    def scores(self, prep: dict, lags: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Score (W, L) of each window ``[start, start+length)`` at each lag (s); higher is better."""
        steps = np.round(np.asarray(lags) * AUDIO_STEPS * prep["fps"]).astype(np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        out = np.full((len(starts), len(steps)), np.nan)
        if len(prep["times"]) == 0 or len(starts) == 0:
            return out
        fn = self._scores_twostream if self.family == "twostream" else self._scores_family
        with self._threads():
            return fn(prep, steps, starts, int(length), out)

    def _frame_cos(self, prep: dict, steps: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """cos(visual_i, audio at pos_i + lag) for frames [lo, hi) and every lag, (hi - lo, L); NaN where the
        face is lost. (Only the span scored is held: in a long file most faces are short.)"""
        pos = prep["pos"]
        cos = np.full((hi - lo, len(steps)), np.nan)
        seen = np.flatnonzero(prep["found"][lo:hi])
        if seen.size == 0:
            return cos
        a0_, a1_ = lo + int(seen[0]), lo + int(seen[-1]) + 1  # only where this face was seen
        a, a0 = self._audio(prep, int(pos[a0_] + steps.min()), int(pos[a1_ - 1] + steps.max()))
        v = prep["v"]
        for c in range(a0_, a1_, CHUNK_FRAMES):  # (frames, lags, dim) at once would grow with the file
            e = min(c + CHUNK_FRAMES, a1_)
            idx = pos[c:e, None] + steps[None, :] - a0
            cos[c - lo : e - lo] = np.matmul(a[idx], v[c:e, :, None])[..., 0]
        cos[~prep["found"][lo:hi]] = np.nan
        # a frame whose audio at this lag lies outside the recording says nothing (trimmed trials)
        cos[a0_ - lo : a1_ - lo][~self._heard(prep, pos[a0_:a1_, None] + steps[None, :])] = np.nan
        return cos

    @staticmethod
    def _heard(prep: dict, step: np.ndarray) -> np.ndarray:
        """Whether audio grid steps lie inside the recording."""
        t = prep["times"][0] + step / (AUDIO_STEPS * prep["fps"])
        end = prep["audio_t0"] + len(prep["mel40"]) / E2E_MEL.fps
        return (t >= prep["audio_t0"] - 1e-6) & (t <= end + 1e-6)

    def _scores_twostream(self, prep, steps, starts, length, out):
        lo, hi = int(starts.min()), int(min(len(prep["pos"]), starts.max() + length))
        cos = self._frame_cos(prep, steps, lo, hi)
        ok = np.isfinite(cos)
        c = np.concatenate([np.zeros((1, cos.shape[1])), np.cumsum(np.where(ok, cos, 0.0), 0)])
        n = np.concatenate([np.zeros((1, cos.shape[1])), np.cumsum(ok, 0)])
        stop = np.minimum(starts + length, hi) - lo
        first = starts - lo
        cnt = n[stop] - n[first]
        need = min(length, max(3, length // 2))
        good = cnt >= need
        with np.errstate(all="ignore"):
            out[good] = ((c[stop] - c[first]) / cnt)[good]
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
