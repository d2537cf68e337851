"""Log-mel / MFCC features (avsync.audio.features)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.audio.features import (
    E2E_MEL,
    LOGMEL,
    FeatureSpec,
    StreamingFeatures,
    compute_features,
    mel_filterbank,
    mfcc,
)
from conftest import grid_clip


@pytest.fixture(scope="module")
def speech():
    """Two seconds of a real GRID speaker at 16 kHz."""
    from avsync.media import read_audio

    _, x = read_audio(grid_clip("pwij3p"))
    assert x.dtype == np.float32 and x.ndim == 1
    return x[: 2 * 16000]


@pytest.mark.parametrize("spec", [LOGMEL, E2E_MEL], ids=["logmel80", "mel40"])
def test_streaming_in_chunks_equals_whole_computation(speech, spec):
    whole = compute_features(speech, spec)
    rng = np.random.default_rng(0)
    # Chunk sizes around the hop and window, including 1-sample and empty pushes.
    sizes = [1, 0, spec.hop - 1, spec.hop, spec.hop + 1, spec.win, 3, 5000]
    sizes += list(rng.integers(1, 3 * spec.win, size=40))
    sf = StreamingFeatures(spec)
    pos = 0
    for n in sizes:
        sf.push(speech[pos : pos + n])
        pos += n
        if pos >= len(speech):
            break
    sf.push(speech[pos:])
    streamed = sf.finish()
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n", [0, 1, 199, 200, 201, 800, 16000, 16001, 32159])
@pytest.mark.parametrize("spec", [LOGMEL, E2E_MEL], ids=["logmel80", "mel40"])
def test_frame_count_is_len_over_hop_plus_one(n, spec):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32) * 0.1
    out = compute_features(x, spec)
    assert out.shape == (n // spec.hop + 1, spec.n_mels)
    assert np.isfinite(out).all()


def test_frames_are_centred_on_hop_multiples():
    # A click at sample 16 * 160 shows up loudest in frame 16 (frame j centred on j * hop).
    x = np.zeros(8000, np.float32)
    x[16 * E2E_MEL.hop] = 1.0
    out = compute_features(x, E2E_MEL)
    energy = out.max(axis=1)
    assert int(np.argmax(energy)) == 16


def test_loud_sound_gives_higher_log_mel_than_quiet():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    loud = compute_features(tone, E2E_MEL)
    quiet = compute_features(0.01 * tone, E2E_MEL)
    # Power scales with amplitude squared: 0.01 -> -9.21 in natural log.
    np.testing.assert_allclose((loud - quiet)[5:-5].max(axis=1), 2 * np.log(100), rtol=1e-3)


@pytest.mark.parametrize("spec", [LOGMEL, E2E_MEL], ids=["logmel80", "mel40"])
def test_mel_filterbank_shape_and_non_negative(spec):
    fb = mel_filterbank(spec.n_mels, spec.n_fft, spec.sr)
    assert fb.shape == (spec.n_mels, spec.n_fft // 2 + 1)
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all(), "every mel band has some weight"
    # Slaney area normalisation: each triangle integrates to ~1 over Hz.
    area = fb.sum(axis=1) * spec.sr / spec.n_fft
    assert np.all(np.abs(area - 1.0) < 0.15)
    assert np.all(np.abs(area[5:] - 1.0) < 0.05)
    # Centres rise with the band index.
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > peaks[0]


def test_fft_size_is_next_power_of_two():
    assert LOGMEL.n_fft == 1024 and E2E_MEL.n_fft == 512
    assert FeatureSpec(win=400, hop=160, n_mels=40).fps == 100.0


def test_mfcc_shape_and_orthonormal_dct(speech):
    logmel = compute_features(speech, E2E_MEL)
    m = mfcc(logmel)
    assert m.shape == (len(logmel), 13)
    assert np.isfinite(m).all()
    # The full DCT (as many coefficients as bands) is orthonormal: it keeps energy.
    full = mfcc(logmel, n_mfcc=logmel.shape[1])
    np.testing.assert_allclose(
        np.linalg.norm(full, axis=1), np.linalg.norm(logmel, axis=1), rtol=1e-4
    )
    # Coefficient 0 is the band mean times sqrt(n_bands).
    np.testing.assert_allclose(m[:, 0], logmel.mean(axis=1) * np.sqrt(logmel.shape[1]), rtol=1e-4)
