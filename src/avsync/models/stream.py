"""Mouth-crop embeddings computed while a file is decoded, so a long file's crops are never all held.

A crop model's visual encoder turns each frame's 48x96 mouth crop into a
D-dimensional embedding (D = 128 for the shipped models: 512 bytes against the
crop's 4,608). Every visual encoder here reads ``VISUAL_CONTEXT`` frames either
side of a frame and nothing further (a 5-frame temporal kernel, then per-frame
layers), so a frame's embedding depends only on its own 5-frame neighbourhood:
crops where the face was lost, and frames before or after the track, are zero
crops; before the file's first frame and after its last, the encoder's own
padding. Embedding a track chunk by chunk, with that much overlap, therefore
gives the embeddings ``EstimatorBase.prepare`` would compute from all the
crops at once; only the float rounding of the encoder's sums may differ
(``tests/test_stream.py`` checks they agree).

``extract`` feeds a ``CropEmbedder`` as tracks grow; each chunk's crops are
copied out and dropped at once, and the encoder runs on them in a thread of
its own (``background``), so the tracker goes on with the next frames while
it runs (at most ``MAX_PENDING`` chunks wait, which bounds the memory). At the end every track holds ``embedding`` (per frame
from its ``first_frame``) and no crops, and the extraction records which model
made them (``Extraction.embedded_by``), so another model cannot use them.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from avsync.constants import MOUTH_CROP_HW
from avsync.models.scoring import VISUAL_CHUNK_FRAMES, VISUAL_CONTEXT


#: Chunks that may wait for the background encoder before ``feed`` waits for the oldest.
MAX_PENDING = 4


class _State:
    __slots__ = ("base", "done", "parts")

    def __init__(self):
        self.base = 0  # frames of the track (from first_frame) whose crops were dropped from ``track.crops``
        self.done = 0  # frames of the track already embedded
        self.parts: list = []  # embeddings of the chunks, in order (arrays, or Futures of them)


class CropEmbedder:
    """Embeds face tracks' mouth crops chunk by chunk as ``extract`` decodes the file.

    ``estimator`` is a crop model (``EstimatorBase`` with ``input_key == "crops"``). ``background``
    runs the encoder in one thread of the embedder's own (call ``finish``, or ``abort`` on an error,
    to end it); without it, in the caller's thread.
    """

    def __init__(self, estimator, chunk: int = VISUAL_CHUNK_FRAMES, background: bool = True):
        if getattr(estimator, "input_key", None) != "crops":
            raise ValueError("only a model that reads mouth crops can embed them while decoding")
        self.estimator = estimator
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="avsync-embed") if background else None
        self._pending: deque = deque()
        self.key = estimator.embedding_key
        self.chunk = int(chunk)
        self._state: dict[int, _State] = {}
        self._finished: set[int] = set()  # tracks embedded to their end (ids; the tracker keeps the tracks alive)

    def feed(self, tracks, frames: int | None = None, live=None) -> None:
        """Embed every chunk whose frames (and context) are all known; drop the crops no longer needed.

        With ``frames`` (the analysed frames decoded so far) and ``live`` (the tracks that may still
        grow), a track that has ended is embedded to its end at once, and its last crops released,
        as soon as the file has gone ``VISUAL_CONTEXT`` frames past it (a long file ends thousands of
        tracks).
        """
        live_ids = None if live is None else {id(t) for t in live}
        for tr in tracks:
            if id(tr) in self._finished:
                continue
            st = self._state.setdefault(id(tr), _State())
            while st.done + self.chunk + VISUAL_CONTEXT <= st.base + len(tr.crops):
                self._embed(tr, st, self.chunk, None)
            if live_ids is not None and frames is not None and id(tr) not in live_ids \
                    and frames >= tr.first_frame + len(tr.key) + VISUAL_CONTEXT:
                self._close(tr, None)

    def finish(self, tracks, n_frames: int) -> None:
        """Embed what is left of every track (the file has ``n_frames`` analysed frames) and set
        ``track.embedding``; the tracks' crops are released."""
        try:
            for tr in tracks:
                if id(tr) not in self._finished:
                    self._close(tr, n_frames)
        finally:
            self.abort()

    def abort(self) -> None:
        """End the background thread (chunks not yet started are dropped); safe to call more than once."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def _close(self, tr, n_frames: int | None) -> None:
        st = self._state.pop(id(tr), None) or _State()
        total = len(tr.key)
        while st.done < total:
            self._embed(tr, st, min(self.chunk, total - st.done), n_frames)
        parts = [p.result() if isinstance(p, Future) else p for p in st.parts]
        dim = parts[0].shape[1] if parts else 1
        tr.embedding = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        tr.crops = []
        self._finished.add(id(tr))

    def _embed(self, tr, st: _State, n: int, n_frames: int | None) -> None:
        """Embed the track's frames [done, done + n), reading ``VISUAL_CONTEXT`` frames either side."""
        first = tr.first_frame
        lo = max(st.done - VISUAL_CONTEXT, -first)  # (relative to first_frame) not before the file's frame 0
        hi = st.done + n + VISUAL_CONTEXT
        if n_frames is not None:
            hi = min(hi, n_frames - first)  # nor after its last frame
        x = np.zeros((hi - lo,) + MOUTH_CROP_HW, np.uint8)  # zero crops where the face is lost or absent
        known = st.base + len(tr.crops)
        for r in range(max(lo, st.base), min(hi, known)):
            c = tr.crops[r - st.base]
            if c is not None:
                x[r - lo] = c
        a = st.done - lo
        if self._pool is None:
            st.parts.append(self._run(x, a, a + n))
        else:
            fut = self._pool.submit(self._run, x, a, a + n)
            st.parts.append(fut)
            self._pending.append(fut)
            while self._pending and (self._pending[0].done() or len(self._pending) > MAX_PENDING):
                self._pending.popleft().result()  # (raises the encoder's error here, in the caller's thread)
        st.done += n
        drop = max(0, min(st.done - VISUAL_CONTEXT, known) - st.base)  # keep the context the next chunk reads
        if drop:
            del tr.crops[:drop]
            st.base += drop

    def _run(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        """The encoder on crops ``x`` (frames, H, W); embeddings of frames [a, b) of them."""
        with self.estimator._threads():
            e = self.estimator._embed_visual_stream(x[None])[0]  # (a runtime may run it on fewer threads)
        return np.asarray(e[a:b], np.float32)
