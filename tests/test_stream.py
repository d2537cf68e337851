"""Mouth-crop embeddings made while decoding (``models.stream``) equal those made from all the crops."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.constants import MOUTH_CROP_HW
from avsync.face.tracker import FaceTrack
from avsync.models.stream import CropEmbedder

from conftest import TWO_FACES_CLIP, clip_path


class _Neighbourhood:
    """A stand-in visual encoder with the property the streaming relies on, and nothing else: frame i's
    output is a function of input frames i-2 .. i+2 (zero padding outside the call's input)."""

    input_key = "crops"
    embedding_key = "neighbourhood"

    def __init__(self):
        self.calls = 0

    def _threads(self):
        from contextlib import nullcontext

        return nullcontext()

    def _embed_visual_stream(self, x):  # as EstimatorBase: the same encoder
        return self._embed_visual(x)

    def _embed_visual(self, x):
        self.calls += 1
        m = x[0].reshape(len(x[0]), -1).astype(np.float64).mean(1) + 1.0  # + 1: an absent frame is not a zero crop
        p = np.concatenate([[0.0, 0.0], m, [0.0, 0.0]])
        out = np.stack([p[i : i + 5] * np.array([1, 10, 100, 1000, 10000]) for i in range(len(m))])
        return out[None].astype(np.float32)


def _dense(tracks, n):
    """Each track embedded in one call over the whole file, as ``EstimatorBase.prepare`` did."""
    enc = _Neighbourhood()
    out = []
    for tr, crops in tracks:
        x = np.zeros((n,) + MOUTH_CROP_HW, np.uint8)
        for i, c in enumerate(crops):
            if c is not None:
                x[tr.first_frame + i] = c
        out.append(enc._embed_visual(x[None])[0][tr.first_frame : tr.first_frame + len(crops)])
    return out


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunked_embeddings_equal_one_call(chunk, background):
    rng = np.random.default_rng(chunk)
    n = 90
    specs = [(0, 90), (1, 40), (37, 53), (85, 5), (2, 1)]  # (first frame, length): from the start, short, to the end
    tracks = []
    for first, length in specs:
        crops = [None if rng.random() < 0.2 else rng.integers(0, 256, MOUTH_CROP_HW, dtype=np.uint8)
                 for _ in range(length)]
        tracks.append((FaceTrack(track_id=len(tracks), first_frame=first), crops))
    want = _dense(tracks, n)

    emb = CropEmbedder(_Neighbourhood(), chunk=chunk, background=background)
    for f in range(n):  # frames arrive one by one; each track gets its crop (or None) for frame f
        for tr, crops in tracks:
            i = f - tr.first_frame
            if 0 <= i < len(crops):
                tr.key.append(np.zeros((1, 3), np.float32))
                tr.crops.append(crops[i])
        if f % 5 == 0:
            live = [t for t, c in tracks if f + 1 < t.first_frame + len(c)]  # tracks that will still grow
            emb.feed([t for t, _ in tracks], f + 1, live)
            held = max(len(t.crops) for t, _ in tracks)
            assert held <= chunk + 2 * 2 + 5, "crops already embedded must be dropped"
            for t, c in tracks:  # an ended track is embedded and released once the file is 2 frames past it
                if f + 1 >= t.first_frame + len(c) + 2:
                    assert t.crops == [] and t.embedding is not None
    emb.finish([t for t, _ in tracks], n)
    for (tr, crops), w in zip(tracks, want):
        assert tr.crops == []
        assert tr.embedding.shape == (len(crops), 5)
        np.testing.assert_array_equal(tr.embedding, w)


class _Broken(_Neighbourhood):
    def _embed_visual(self, x):
        raise ValueError("encoder failed")


def test_an_encoder_error_in_the_background_reaches_the_caller():
    """The encoder runs in the embedder's own thread; its error is raised in the caller's, and the thread ends."""
    emb = CropEmbedder(_Broken(), chunk=1)
    tr = FaceTrack(track_id=0, first_frame=0)
    with pytest.raises(ValueError, match="encoder failed"):
        for _ in range(20):
            tr.key.append(np.zeros((1, 3), np.float32))
            tr.crops.append(np.zeros(MOUTH_CROP_HW, np.uint8))
            emb.feed([tr])
        emb.finish([tr], 20)
    emb.abort()
    assert emb._pool is None


@pytest.fixture(scope="module")
def two_extractions():
    from avsync.api import load_model
    from avsync.extract import extract

    path = clip_path(TWO_FACES_CLIP)
    est = load_model("pm-wild")
    plain = extract(path, keep_crops=True)
    streamed = extract(path, keep_crops=True, embedder=CropEmbedder(est, chunk=16))
    return est, plain, streamed


def test_streamed_extraction_reads_as_the_crops(two_extractions):
    """On a real two-face clip: the same embeddings, the same file curves, the same answer."""
    from avsync.api import DetectOptions, estimate

    est, plain, streamed = two_extractions
    assert streamed.embedded_by == est.embedding_key and plain.embedded_by is None
    assert len(plain.tracks) == len(streamed.tracks) >= 2
    for i, (a, b) in enumerate(zip(plain.tracks, streamed.tracks)):
        assert b.crops == [] and len(b.embedding) == len(b.key) == len(a.crops)
        pa, pb = est.prepare(plain, i), est.prepare(streamed, i)
        seen = pa["found"]
        np.testing.assert_allclose(pb["v"][seen], pa["v"][seen], atol=1e-5)
    opts = DetectOptions()
    ra, rb = estimate(plain, est, opts), estimate(streamed, est, opts)
    assert (rb.offset_ms, rb.confidence, rb.segments) == (ra.offset_ms, ra.confidence, ra.segments)


def test_another_model_refuses_streamed_embeddings(two_extractions):
    from avsync.api import load_model
    from avsync.errors import ModelError

    _, _, streamed = two_extractions
    with pytest.raises(ModelError, match="extract the file again"):
        load_model("pm-small").prepare(streamed, 0)


def test_track_inputs_are_computed_over_the_track_alone(two_extractions):
    """``track_arrays`` normalises a track's landmarks over its own frames: the same as over the whole file."""
    from avsync.face.landmarks import normalise_lips
    from avsync.models.inputs import track_arrays

    _, plain, _ = two_extractions
    for i, tr in enumerate(plain.tracks):
        got = track_arrays(plain, i, with_crops=False)
        key = tr.landmarks(plain.n_frames)
        found = np.isfinite(key).all(axis=(1, 2))
        lips = normalise_lips(key)[:, :, :2]
        lips = lips - np.nanmean(lips[found].reshape(-1, 2), axis=0)
        np.testing.assert_array_equal(got["found"], found)
        np.testing.assert_allclose(got["lips"], lips.astype(np.float32), equal_nan=True, rtol=1e-6)
        assert "lips" not in track_arrays(plain, i, with_crops=False, with_lips=False)
