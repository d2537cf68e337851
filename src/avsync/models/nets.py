"""Torch modules of the learned sync models (the seed papers, sized by config).

Conventions shared by every module:

- visual encoders take a clip's per-frame inputs (B, T, ...) and return one
  embedding per frame (B, T, D); their first layer sees 5 frames (0.2 s);
- audio encoders take the audio grid (B, S, 40) of ``models.inputs`` (4 steps
  per frame) and return one embedding per step (B, S, D), so every
  quarter-frame lag has its own audio embedding;
- frame ``i`` pairs with audio step ``4*i + lag_steps``.

The families (``FAMILIES``) wrap these encoders with the papers' heads and
losses; ``build_model(config)`` makes one from a plain dict, which is also
what a checkpoint stores.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from avsync.models.inputs import AUDIO_STEPS

N_LIP = 40


def _bn_relu(c: int, dims: int = 2) -> list[nn.Module]:
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    return [bn(c), nn.ReLU(inplace=True)]


# --------------------------------------------------------------------------- audio
class _ResBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: tuple[int, int], kernel=(3, 5)):
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if (cin != cout or stride != (1, 1)) else nn.Identity()
        )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class AudioCNN(nn.Module):
    """Audio stream: 2D convolutions over (mel bin, step); time kept at step resolution.

    ``residual=False`` is SyncNet's plain stack, ``residual=True`` VocaLiST's
    residual encoder. Frequency is strided down, time never is; kernels of 5
    steps give each output a receptive field of about 5 video frames.
    """

    def __init__(self, dim: int = 128, width: int = 32, n_mels: int = 40, residual: bool = False, blocks: int = 4):
        super().__init__()
        chans = [width * min(2**i, 2) for i in range(blocks)]
        layers: list[nn.Module] = [nn.Conv2d(1, chans[0], (3, 5), padding=(1, 2), bias=False), *_bn_relu(chans[0])]
        f = n_mels
        for i in range(1, blocks):
            if residual:
                layers.append(_ResBlock2d(chans[i - 1], chans[i], (2, 1)))
            else:
                layers += [nn.Conv2d(chans[i - 1], chans[i], (3, 5), stride=(2, 1), padding=(1, 2), bias=False),
                           *_bn_relu(chans[i])]
            f = (f + 1) // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(chans[-1] * f, dim, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, S, F) -> (B, S, D)
        x = self.body(mel.transpose(1, 2).unsqueeze(1))  # (B, C, F', S)
        b, c, f, s = x.shape
        return self.head(x.reshape(b, c * f, s)).transpose(1, 2)


class MFCCEncoder(nn.Module):
    """Seed 003's audio branch: MFCCs (a fixed DCT of the log-mel) through 2D convs, pooled to frames."""

    def __init__(self, dim: int = 64, n_mfcc: int = 13, n_mels: int = 40, width: int = 32):
        super().__init__()
        k = torch.arange(n_mels, dtype=torch.float32)
        dct = torch.cos(math.pi / n_mels * (k[None, :] + 0.5) * torch.arange(n_mfcc, dtype=torch.float32)[:, None])
        self.register_buffer("dct", dct * math.sqrt(2.0 / n_mels), persistent=False)
        self.body = nn.Sequential(
            nn.Conv2d(1, width, (3, 5), padding=(1, 2), bias=False), *_bn_relu(width),
            nn.Conv2d(width, width * 2, (3, 5), stride=(2, 1), padding=(1, 2), bias=False), *_bn_relu(width * 2),
        )
        self.head = nn.Conv1d(width * 2 * ((n_mfcc + 1) // 2), dim, AUDIO_STEPS, stride=AUDIO_STEPS)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, 4T, F) -> (B, T, D)
        x = self.body((mel @ self.dct.T).transpose(1, 2).unsqueeze(1))
        b, c, f, s = x.shape
        return self.head(x.reshape(b, c * f, s)).transpose(1, 2)


# --------------------------------------------------------------------------- visual
def _pixels(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W) -> float (B, 1, T, H, W), about zero-mean unit-range."""
    return ((crops.float() / 255.0) - 0.5).div(0.25).unsqueeze(1)


class Visual3D(nn.Module):
    """SyncNet / Perfect Match visual stream: a 3D first layer over 5 frames, then 2D per frame."""

    def __init__(self, dim: int = 128, width: int = 32, **_):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, width, (5, 5, 5), stride=(1, 2, 2), padding=(2, 2, 2), bias=False),
                                  *_bn_relu(width, 3))
        c = [width, width * 2, width * 4, width * 4]
        self.body = nn.Sequential(*[m for i in range(3) for m in (
            nn.Conv2d(c[i], c[i + 1], 3, stride=2, padding=1, bias=False), *_bn_relu(c[i + 1]))])
        self.head = nn.Linear(c[-1], dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:  # (B, T, H, W) uint8 -> (B, T, D)
        x = self.stem(_pixels(crops))  # (B, C, T, h, w)
        b, c, t, h, w = x.shape
        x = self.body(x.transpose(1, 2).reshape(b * t, c, h, w)).mean((2, 3))
        return self.head(x).reshape(b, t, -1)


class VTPVisual(nn.Module):
    """VTP-style encoder: per-frame CNN map, spatial position encodings, a
    transformer over the map's cells, learned-query attention pooling to one
    vector per frame, then a 5-frame temporal convolution.

    The last attention weights are kept in ``last_attention`` (B, T, h, w) so
    that where it looks can be measured.
    """

    def __init__(self, dim: int = 128, width: int = 32, layers: int = 1, heads: int = 4, **_):
        super().__init__()
        c = width * 2
        self.cnn = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False), *_bn_relu(width),
            nn.Conv2d(width, c, 3, stride=2, padding=1, bias=False), *_bn_relu(c),
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), *_bn_relu(c),
        )  # 48x96 -> 6x12
        self.grid = (6, 12)
        self.pos = nn.Parameter(torch.randn(1, self.grid[0] * self.grid[1], c) * 0.02)
        enc = nn.TransformerEncoderLayer(c, heads, dim_feedforward=2 * c, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, layers, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.randn(1, 1, c) * 0.02)
        self.pool = nn.MultiheadAttention(c, heads, batch_first=True)
        self.temporal = nn.Sequential(nn.Conv1d(c, dim, 5, padding=2), nn.ReLU(inplace=True), nn.Conv1d(dim, dim, 1))
        self.last_attention: torch.Tensor | None = None

    def forward(self, crops: torch.Tensor) -> torch.Tensor:  # (B, T, H, W) -> (B, T, D)
        b, t, hh, ww = crops.shape
        x = self.cnn(_pixels(crops.reshape(b * t, 1, hh, ww)).squeeze(1))  # (BT, C, h, w)
        h, w = x.shape[2:]
        tokens = self.encoder(x.flatten(2).transpose(1, 2) + self.pos[:, : h * w])
        pooled, attn = self.pool(self.query.expand(b * t, -1, -1), tokens, tokens, need_weights=True)
        self.last_attention = attn.detach().reshape(b, t, h, w)
        return self.temporal(pooled.reshape(b, t, -1).transpose(1, 2)).transpose(1, 2)


class LandmarkEncoder(nn.Module):
    """This project's addition: normalised lip landmarks (and their motion) through temporal convolutions."""

    def __init__(self, dim: int = 128, width: int = 128, **_):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(4 * N_LIP + 1, width), nn.ReLU(inplace=True))
        self.temporal = nn.Sequential(
            nn.Conv1d(width, width, 5, padding=2), *_bn_relu(width, 1),
            nn.Conv1d(width, width, 3, padding=1), *_bn_relu(width, 1),
            nn.Conv1d(width, dim, 1),
        )

    def forward(self, lips: torch.Tensor) -> torch.Tensor:  # (B, T, 40, 2), NaN where lost -> (B, T, D)
        ok = torch.isfinite(lips).all(-1).all(-1)
        x = torch.nan_to_num(lips * 10.0).flatten(2)  # inter-ocular units: lips move ~0.01-0.1
        vel = torch.zeros_like(x)
        vel[:, 1:] = (x[:, 1:] - x[:, :-1]) * (ok[:, 1:] & ok[:, :-1]).unsqueeze(-1)
        feats = torch.cat([x, vel * 5.0, ok.unsqueeze(-1).float()], -1) * ok.unsqueeze(-1)
        return self.temporal(self.frame(feats).transpose(1, 2)).transpose(1, 2)


class FlowEncoder(nn.Module):
    """Seed 003's visual branch: vertical optical flow of the lips through 3D convolutions."""

    def __init__(self, dim: int = 64, width: int = 16, **_):
        super().__init__()
        c = [1, width, width * 2, width * 4]
        self.body = nn.Sequential(*[m for i in range(3) for m in (
            nn.Conv3d(c[i], c[i + 1], (3, 3, 3), stride=(1, 2, 2), padding=1, bias=False), *_bn_relu(c[i + 1], 3))])
        self.head = nn.Linear(c[-1], dim)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:  # (B, T, 24, 48) -> (B, T, D)
        x = self.body(flow.float().unsqueeze(1)).mean((3, 4))  # (B, C, T)
        return self.head(x.transpose(1, 2))


VISUAL = {"conv3d": Visual3D, "vtp": VTPVisual, "landmark": LandmarkEncoder}
#: Which per-frame array each visual encoder reads.
VISUAL_INPUT = {"conv3d": "crops", "vtp": "crops", "landmark": "lips", "flow": "flow"}


def gather_audio(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """a (B, S, D), index (B, ...) of steps -> (B, ..., D)."""
    b, s, d = a.shape
    flat = index.reshape(b, -1).clamp(0, s - 1)
    return torch.gather(a, 1, flat.unsqueeze(-1).expand(-1, -1, d)).reshape(*index.shape, d)


# --------------------------------------------------------------------------- families
class TwoStream(nn.Module):
    """SyncNet / Perfect Match: a visual and an audio embedding per frame, compared by cosine.

    Losses (``loss``): ``contrastive`` (SyncNet: pairs, margin on distance),
    ``multiway`` (Perfect Match: softmax over the candidate offsets of negative
    distances) and ``angular`` (softmax over ``w * cos + b``, w and b learned).
    """

    family = "twostream"

    def __init__(self, visual: str = "conv3d", dim: int = 128, width: int = 32, audio_width: int = 32,
                 loss: str = "multiway", margin: float = 1.0, **vis_kw):
        super().__init__()
        self.visual_kind = visual
        self.visual = VISUAL[visual](dim=dim, width=width, **vis_kw)
        self.audio = AudioCNN(dim=dim, width=audio_width)
        self.loss_kind = loss
        self.margin = margin
        self.w = nn.Parameter(torch.tensor(10.0))
        self.b = nn.Parameter(torch.tensor(-5.0))

    def embed_visual(self, vis: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(vis), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(mel), dim=-1)

    def candidate_cos(self, v: torch.Tensor, a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Cosine of frame embeddings v (B, T, D) with audio steps ``index`` (B, T, C) -> (B, T, C)."""
        return (v.unsqueeze(2) * gather_audio(a, index)).sum(-1)

    def logits(self, cos: torch.Tensor) -> torch.Tensor:
        """Softmax logits of cosines: negative distances (multiway) or ``w * cos + b`` (angular)."""
        if self.loss_kind == "multiway":
            return -10.0 * torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-8))
        return self.w * cos + self.b

    def loss(self, cos: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, window: int = 0,
             window_weight: float = 1.0) -> torch.Tensor:
        """cos (B, T, C) over candidates; ``valid`` (B, T).

        ``target`` is (B,) the in-sync candidate's index, or (C,) a target
        distribution over candidates (soft labels on a quarter-frame grid).
        ``window`` > 0 adds the loss of ``window``-frame windows: the mean cosine
        over the window's frames, as the estimator scores short windows.
        """
        b, t, c = cos.shape
        if self.loss_kind == "contrastive":
            tgt = target.view(b, 1).expand(b, t)
            d = torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-8))
            pos = d.gather(2, tgt.unsqueeze(-1)).squeeze(-1) ** 2
            # one random negative per frame, as SyncNet's balanced pairs
            neg_idx = (tgt + torch.randint(1, c, tgt.shape, device=cos.device)) % c
            neg = torch.clamp(self.margin - d.gather(2, neg_idx.unsqueeze(-1)).squeeze(-1), min=0) ** 2
            per = 0.5 * (pos + neg)
            return (per * valid).sum() / valid.sum().clamp(min=1)
        dist = target.float() if target.is_floating_point() else F.one_hot(target, c).float()  # (C,) or (B, C)
        dist = dist.expand(b, c)

        def ce(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # x (B, T', C), w (B, T')
            per = -(F.log_softmax(self.logits(x), -1) * dist.unsqueeze(1)).sum(-1)
            return (per * w).sum() / w.sum().clamp(min=1)

        out = ce(cos, valid)
        if window and t >= window:
            vz = valid.unsqueeze(-1)
            cs = F.pad(torch.cumsum(cos * vz, 1), (0, 0, 1, 0))
            ns = F.pad(torch.cumsum(valid, 1), (1, 0))
            cnt = ns[:, window:] - ns[:, :-window]
            mean = (cs[:, window:] - cs[:, :-window]) / cnt.clamp(min=1).unsqueeze(-1)
            out = out + window_weight * ce(mean, (cnt >= window).float())
        return out


class CrossModal(nn.Module):
    """One cross-modal transformer (MulT style): queries from one stream, keys/values from the other."""

    def __init__(self, d: int, heads: int, layers: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, q, kv):
        for layer in self.layers:
            # a decoder layer without self-attention masking = self-attn + cross-attn + FFN
            q = layer(q, kv)
        return self.norm(q)


def _sinusoid(pos: torch.Tensor, d: int) -> torch.Tensor:
    i = torch.arange(d // 2, device=pos.device, dtype=torch.float32)
    ang = pos.float().unsqueeze(-1) / (100.0 ** (2 * i / d))
    return torch.cat([ang.sin(), ang.cos()], -1)


class VocaLiST(nn.Module):
    """VocaLiST: time-keeping encoders and a sync block of three cross-modal
    transformers (A->V, V->A, hybrid), max-pooled over time, tanh, linear -> a
    logit that the window is in sync (BCE, equal positives and negatives)."""

    family = "vocalist"

    def __init__(self, visual: str = "conv3d", dim: int = 128, width: int = 32, audio_width: int = 32,
                 heads: int = 4, layers: int = 2, **vis_kw):
        super().__init__()
        self.visual_kind = visual
        self.visual = VISUAL[visual](dim=dim, width=width, **vis_kw)
        self.audio = AudioCNN(dim=dim, width=audio_width, residual=True)
        self.a2v = CrossModal(dim, heads, layers)
        self.v2a = CrossModal(dim, heads, layers)
        self.hybrid = CrossModal(dim, heads, layers)
        self.out = nn.Linear(dim, 1)
        self.dim = dim

    def encode(self, vis, mel):
        return self.visual(vis), self.audio(mel)

    def sync_logit(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """v (N, n, D) frames and a (N, 4n, D) audio steps of one window each -> (N,) logits."""
        pv = _sinusoid(torch.arange(v.shape[1], device=v.device) * AUDIO_STEPS, self.dim)
        pa = _sinusoid(torch.arange(a.shape[1], device=a.device), self.dim)
        v, a = v + pv, a + pa
        av = self.a2v(v, a)  # visual queries attend to audio
        va = self.v2a(a, v)  # audio queries attend to visual
        h = self.hybrid(av, va)
        return self.out(torch.tanh(h.max(1).values)).squeeze(-1)


class SyncClassifier(nn.Module):
    """Sync-cls head: the N x N cosine matrix read as an image (3x3, NxN, 1x1, 1x1) -> 2K+1 offsets."""

    def __init__(self, n: int, k: int, channels: int = 32):
        super().__init__()
        self.n, self.k = n, k
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, n), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2 * k + 1, 1),
        )

    def forward(self, m: torch.Tensor) -> torch.Tensor:  # (B, N, N) -> (B, 2K+1) logits for offsets -K..K
        return self.net(m.unsqueeze(1)).flatten(1)


def diag_avg(m: torch.Tensor, k: int) -> torch.Tensor:
    """Sync-cls's parameter-free baseline: the mean of each diagonal j = i + o, o in -K..K -> (B, 2K+1)."""
    b, n, _ = m.shape
    out = []
    for o in range(-k, k + 1):
        d = torch.diagonal(m, offset=o, dim1=1, dim2=2)
        out.append(d.mean(-1) if d.shape[-1] else torch.full((b,), float("nan"), device=m.device))
    return torch.stack(out, 1)


class SyncCls(nn.Module):
    """Sync-cls / Sync-e2e: two-stream encoders, the N x N similarity matrix of
    one window (N frames, only N frames of audio) and its classifier.

    ``head="classifier"`` is Sync-cls (``freeze_encoders=True``: encoders taken
    from a trained two-stream model and frozen) or Sync-e2e
    (``freeze_encoders=False``: everything trained together on the
    classification loss). ``head="diagavg"`` is the parameter-free baseline.
    """

    family = "synccls"

    def __init__(self, visual: str = "conv3d", dim: int = 128, width: int = 32, audio_width: int = 32,
                 n: int = 25, k: int = 15, channels: int = 32, head: str = "classifier",
                 freeze_encoders: bool = False, **vis_kw):
        super().__init__()
        self.streams = TwoStream(visual=visual, dim=dim, width=width, audio_width=audio_width, **vis_kw)
        self.visual_kind = visual
        self.n, self.k, self.head_kind = n, k, head
        self.freeze_encoders = freeze_encoders
        self.classifier = SyncClassifier(n, k, channels) if head == "classifier" else None

    def matrix(self, v: torch.Tensor, a_frames: torch.Tensor) -> torch.Tensor:
        """v (B, n, D), a_frames (B, n, D) (unit vectors) -> (B, N, N), zero-padded when n < N."""
        m = v @ a_frames.transpose(1, 2)
        pad = self.n - m.shape[1]
        return F.pad(m, (0, pad, 0, pad)) if pad > 0 else m[:, : self.n, : self.n]

    def offset_logits(self, m: torch.Tensor, n_used: int | None = None) -> torch.Tensor:
        if self.classifier is None:
            n = n_used or self.n
            return diag_avg(m[:, :n, :n], self.k)
        return self.classifier(m)


class Regression(nn.Module):
    """Seed 003 (audio-visual resynchronisation): vertical lip flow (3D CNN) and
    MFCCs (2D CNN), fused over time, regress the offset in frames (up to +-1 s)."""

    family = "regression"

    def __init__(self, dim: int = 64, width: int = 16, audio_width: int = 32, max_offset: float = 25.0, **_):
        super().__init__()
        self.visual_kind = "flow"
        self.visual = FlowEncoder(dim=dim, width=width)
        self.audio = MFCCEncoder(dim=dim, width=audio_width)
        self.fuse = nn.Sequential(
            nn.Conv1d(2 * dim, 2 * dim, 5, padding=2), *_bn_relu(2 * dim, 1),
            nn.Conv1d(2 * dim, 2 * dim, 5, padding=4, dilation=2), *_bn_relu(2 * dim, 1),
            nn.Conv1d(2 * dim, 2 * dim, 5, padding=8, dilation=4), *_bn_relu(2 * dim, 1),
        )
        self.out = nn.Linear(4 * dim, 1)
        self.max_offset = max_offset

    def forward(self, flow: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:  # -> (B,) offset in frames
        x = torch.cat([self.visual(flow), self.audio(mel)], -1).transpose(1, 2)
        h = self.fuse(x)
        pooled = torch.cat([h.mean(2), h.max(2).values], 1)
        return self.max_offset * torch.tanh(self.out(pooled).squeeze(-1) / 2.0) * 1.2


FAMILIES = {"twostream": TwoStream, "vocalist": VocaLiST, "synccls": SyncCls, "regression": Regression}


def build_model(model_cfg: dict) -> nn.Module:
    """A model from its config dict: ``{"family": ..., **constructor arguments}``."""
    cfg = dict(model_cfg)
    family = cfg.pop("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[family](**cfg)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
