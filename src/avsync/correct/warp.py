"""Apply an offset that changes over time to an audio stream, in blocks (bounded memory).

Output sample ``n`` (at the stream's own rate, counted from its first sample)
plays the source at position ``p(n) = n + shift(n)``:

* **piecewise** offsets (edits): ``shift`` is constant on each piece; around
  each change point the two readings are crossfaded over ``CROSSFADE_MS``
  (equal-gain, linear), so the jump makes no click;
* **linear** drift: ``p(n) = ratio * n + c``. The source is first resampled by
  ``ratio`` with soxr (a high-quality band-limited resampler, streaming), then
  shifted by the constant ``c / ratio``. The sample rate stays the stream's own.

Positions before the source's start or after its end read silence, and the
output has exactly as many samples as the source: the length is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Length of the crossfade at a change point (ms).
CROSSFADE_MS = 20.0


@dataclass(frozen=True)
class WarpPlan:
    """``edges[j]`` is the first output sample of piece ``j`` (``edges[0] == 0``); piece ``j`` reads
    ``shifts[j]`` samples ahead (negative: behind). ``ratio`` != 1 resamples first (linear drift)."""

    edges: tuple[int, ...]
    shifts: tuple[int, ...]
    ratio: float = 1.0

    @staticmethod
    def from_timeline(timeline: dict, rate: int, audio_start_s: float, video_start_s: float) -> "WarpPlan":
        """The plan for one audio stream from ``SyncResult.timeline`` (times from the first video frame).

        ``audio_start_s``/``video_start_s``: the stream's first sample and the
        first video frame on the container's clock.
        """
        lead = audio_start_s - video_start_s  # timeline time of output sample 0
        kind = timeline["kind"]
        if kind == "linear":
            beta = timeline["drift_ms_per_min"] / 60_000.0  # ms of offset per ms of time
            icpt = timeline["offset_ms"] - timeline["drift_ms_per_min"] * sum(timeline["span_s"]) / 2 / 60.0
            c = (icpt + timeline["drift_ms_per_min"] * lead / 60.0) / 1000.0 * rate
            ratio = 1.0 + beta
            return WarpPlan((0,), (int(round(c / ratio)),), ratio)
        pieces = timeline.get("pieces") or [{"start_s": 0.0, "offset_ms": timeline["offset_ms"]}]
        shifts = tuple(int(round(p["offset_ms"] / 1000.0 * rate)) for p in pieces)
        edges = [0]
        for cp in timeline.get("change_points_s", [])[: len(pieces) - 1]:
            edges.append(max(edges[-1], int(round((cp - lead) * rate))))
        return WarpPlan(tuple(edges), shifts)


class AudioWarp:
    """Push source blocks (frames, channels) float32; get output blocks back; ``finish`` flushes."""

    def __init__(self, plan: WarpPlan, rate: int, channels: int, crossfade_ms: float = CROSSFADE_MS):
        self.plan = plan
        self.channels = channels
        self.half = max(1, int(round(crossfade_ms / 2000.0 * rate)))
        self.edges = np.asarray(plan.edges, dtype=np.int64)
        self.shifts = np.asarray(plan.shifts, dtype=np.int64)
        self._resampler = None
        if plan.ratio != 1.0:
            import soxr

            self._resampler = soxr.ResampleStream(rate * plan.ratio, rate, channels, dtype="float32")
        self.n_in = 0  # source samples pushed
        self.n_out = 0  # output samples given back
        self.buf = np.zeros((0, channels), np.float32)  # resampled source from index buf0
        self.buf0 = 0

    def _available(self) -> int:
        return self.buf0 + len(self.buf)

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32).reshape(-1, self.channels)
        self.n_in += len(block)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        self.buf = np.concatenate([self.buf, block])
        # Output n needs source up to n + max shift (+ the crossfade's reach).
        ready = self._available() - max(0, int(self.shifts.max())) - self.half - 1
        return self._emit(min(ready, self.n_in))

    def finish(self) -> np.ndarray:
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
            self.buf = np.concatenate([self.buf, tail])
        return self._emit(self.n_in)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), self.channels), np.float32)
        rel = idx - self.buf0
        ok = (rel >= 0) & (rel < len(self.buf))
        out[ok] = self.buf[rel[ok]]
        return out

    def _emit(self, stop: int) -> np.ndarray:
        if stop <= self.n_out:
            return np.zeros((0, self.channels), np.float32)
        n = np.arange(self.n_out, stop, dtype=np.int64)
        j = np.searchsorted(self.edges, n, side="right") - 1
        out = self._read(n + self.shifts[j])
        for k in range(1, len(self.edges)):  # crossfades around each change
            e = self.edges[k]
            m = (n >= e - self.half) & (n < e + self.half)
            if m.any():
                w = ((n[m] - (e - self.half)) / (2.0 * self.half)).astype(np.float32)[:, None]
                out[m] = (1 - w) * self._read(n[m] + self.shifts[k - 1]) + w * self._read(n[m] + self.shifts[k])
        self.n_out = stop
        # Drop source no later output can need.
        keep_from = self.n_out + min(0, int(self.shifts.min())) - self.half - 1
        if keep_from > self.buf0:
            cut = min(keep_from - self.buf0, len(self.buf))
            self.buf = self.buf[cut:]
            self.buf0 += cut
        return out
