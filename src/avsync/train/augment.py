"""Training augmentations, on batches (torch), each a pure function of its inputs and a generator.

Audio works on raw log-mel (before per-recording normalisation): gain is a
constant shift, noise adds power at a random SNR, reverb smears power with an
exponential tail, another recording mixed in at a random SNR stands for
background voices and music, and a random upper band edge stands for
band-limited codecs and telephone lines. Pixels get crop jitter (shift, scale,
small rotations), brightness, contrast and gamma, blur, sensor noise and
mirror; ``degrade`` (numpy, before them) shrinks crops and JPEG-compresses them
at that size, as small faces in compressed video look; landmarks get jitter,
small rotations and scaling; flow gets scale and mirror.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from avsync.models.inputs import AUDIO_STEPS


def _u(g: torch.Generator, n: int, lo: float, hi: float, device=None) -> torch.Tensor:
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def audio(mel: torch.Tensor, g: torch.Generator, fps: float = 25.0, other: torch.Tensor | None = None,
          strong: bool = False) -> torch.Tensor:
    """Raw log-mel (B, S, F) -> augmented, same shape.

    ``other`` (B, S, F): raw log-mel of other recordings, mixed in (``strong``)
    on 30% of the batch at 5-25 dB below the voice. ``strong`` also
    band-limits 30% of the batch.
    """
    b = mel.shape[0]
    x = mel + _u(g, b, -1.4, 1.4, mel.device).view(b, 1, 1)  # gain, about +-6 dB
    p = x.exp()
    if strong and other is not None:
        mix = (torch.rand(b, generator=g) < 0.3).to(mel.device)
        snr_db = _u(g, b, 5.0, 25.0, mel.device)
        po = other.exp()
        k = (p.mean((1, 2)) / po.mean((1, 2)).clamp(min=1e-12)) / (10 ** (snr_db / 10))
        p = torch.where(mix.view(b, 1, 1), p + k.view(b, 1, 1) * po, p)
    # reverb on half the batch: p[t] += sum_d r^d p[t-d], r from an RT60 of 0.1-0.6 s
    rev = torch.rand(b, generator=g) < 0.5
    if rev.any():
        step_s = 1.0 / (AUDIO_STEPS * fps)
        rt60 = _u(g, b, 0.1, 0.6)
        r = torch.exp(-6.9 * step_s / rt60)  # -60 dB (ln 1000 = 6.9) after rt60
        taps = torch.arange(1, 40, dtype=torch.float32)
        for i in torch.nonzero(rev).flatten().tolist():
            k = (r[i] ** taps).to(p.device) * 0.6
            tail = F.conv1d(F.pad(p[i].T.unsqueeze(1), (len(taps), 0)), k.flip(0).view(1, 1, -1))[:, 0, :-1]
            p[i] = p[i] + tail.T[: p.shape[1]]
    # noise on 60% of the batch at 0-30 dB SNR, white-ish across mel bins
    noisy = (torch.rand(b, generator=g) < 0.6).to(mel.device)
    snr_db = _u(g, b, 0.0, 30.0, mel.device)
    level = p.mean((1, 2)) / (10 ** (snr_db / 10))
    noise = level.view(b, 1, 1) * torch.rand(p.shape, generator=g).to(p.device) * 2
    p = torch.where(noisy.view(b, 1, 1), p + noise, p)
    if strong:  # band limit: bins above a random edge (40-100% of the band) lose 20-40 dB
        f = p.shape[2]
        lim = (torch.rand(b, generator=g) < 0.3).to(mel.device)
        edge = (_u(g, b, 0.4, 1.0, mel.device) * f).view(b, 1, 1)
        drop = 10 ** (-_u(g, b, 2.0, 4.0, mel.device)).view(b, 1, 1)
        above = torch.arange(f, device=mel.device).view(1, 1, f) >= edge
        p = torch.where(lim.view(b, 1, 1) & above, p * drop, p)
    return torch.log(p + 1e-10)


def degrade(crops: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """uint8 (B, T, H, W) -> the same, with a share ``p`` of the clips shrunk to 25-100% of their size and
    JPEG-compressed there (quality 15-75), then brought back to size: small, compressed faces."""
    import cv2

    out = crops.copy()
    b, t, h, w = crops.shape
    for i in np.flatnonzero(rng.random(b) < p):
        s = float(rng.uniform(0.25, 1.0))
        q = int(rng.integers(15, 76))
        sw, sh = max(8, round(w * s)), max(4, round(h * s))
        for j in range(t):
            small = cv2.resize(crops[i, j], (sw, sh), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                small = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            out[i, j] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def pixels(crops: torch.Tensor, g: torch.Generator, strong: bool = False) -> torch.Tensor:
    """uint8 (B, T, H, W) -> float (B, T, H, W) in 0..255, augmented (same transform over a clip's frames).

    ``strong`` widens the geometry (scale 0.8-1.2, shift 12%, roll +-10 degrees)
    and adds gamma and sensor noise."""
    b, t, h, w = crops.shape
    x = crops.float()
    lo, hi, sh = (0.8, 1.2, 0.12) if strong else (0.9, 1.1, 0.08)
    scale = _u(g, b, lo, hi)
    tx, ty = _u(g, b, -sh, sh), _u(g, b, -sh, sh)
    ang = _u(g, b, -math.radians(10), math.radians(10)) if strong else torch.zeros(b)
    theta = torch.zeros(b, 2, 3)
    # crop pixels are not square in normalised units (W = 2H): rotate in pixel space
    theta[:, 0, 0] = scale * ang.cos()
    theta[:, 0, 1] = -scale * ang.sin() * h / w
    theta[:, 1, 0] = scale * ang.sin() * w / h
    theta[:, 1, 1] = scale * ang.cos()
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    flip = torch.rand(b, generator=g) < 0.5
    theta[flip, :, 0] *= -1  # mirror: the output x axis reversed
    grid = F.affine_grid(theta.to(x.device), (b, t, h, w), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # brightness / contrast
    c = _u(g, b, 0.7, 1.3, x.device).view(b, 1, 1, 1)
    br = _u(g, b, -30, 30, x.device).view(b, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean + br
    if strong:
        gamma = torch.exp(_u(g, b, -0.4, 0.4, x.device)).view(b, 1, 1, 1)
        x = 255.0 * (x.clamp(0, 255) / 255.0) ** gamma
        x = x + torch.randn(x.shape, generator=g).to(x.device) * _u(g, b, 0.0, 6.0, x.device).view(b, 1, 1, 1)
    # blur on a third of the batch
    blur = torch.nonzero(torch.rand(b, generator=g) < 0.33).flatten().tolist()
    if blur:
        sig = 1.0
        k1 = torch.exp(-0.5 * (torch.arange(-2, 3, dtype=torch.float32) / sig) ** 2)
        k2 = (k1[:, None] * k1[None, :]) / k1.sum() ** 2
        sel = x[blur].reshape(-1, 1, h, w)
        x[blur] = F.conv2d(F.pad(sel, (2, 2, 2, 2), mode="replicate"), k2.view(1, 1, 5, 5).to(x.device)).reshape(-1, t, h, w)
    return x.clamp(0, 255)


def landmarks(lips: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, T, 40, 2) normalised lips (NaN kept) -> jittered, rotated (+-10 deg) and scaled (+-10%)."""
    b = lips.shape[0]
    ang = _u(g, b, -math.radians(10), math.radians(10))
    s = _u(g, b, 0.9, 1.1)
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1), torch.stack([ang.sin(), ang.cos()], -1)], -2)
    rot = (rot * s.view(b, 1, 1)).to(lips.device)
    out = torch.einsum("bij,btpj->btpi", rot, lips)
    return out + torch.randn(out.shape, generator=g).to(lips.device) * 0.004


def flow(f: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, T, h, w) vertical flow -> scaled and mirrored."""
    b = f.shape[0]
    x = f.float() * _u(g, b, 0.8, 1.2, f.device).view(b, 1, 1, 1)
    flip = (torch.rand(b, generator=g) < 0.5).to(f.device)
    return torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
