"""Latent encoder: two images -> one 256-d prior vector (spec: shared/spec/blurdm-method.md, "Shapes").

Used twice with the same architecture:

* Sharp Encoder ``SE(blur, sharp)`` (stage 1, and the ``oracle`` prior): residual blocks WITH BatchNorm.
* Blur Encoder ``BE(blur, blur)`` (inside every diffusion prior, gives the condition ``c``): no BatchNorm.

Layout: pixel-unshuffle by 4 of each 3-channel input (48 channels each), concatenate (96),
conv3x3 -> ``width`` + LeakyReLU(0.1), ``blocks`` residual blocks (conv-[BN]-act-conv-[BN] + skip),
a chain of conv3x3 + LeakyReLU(0.1) (``head`` channels), global average pool, then Linear -> 256 and
Linear(256, 256), each + LeakyReLU(0.1). At ``paper`` scale SE has 1,148,224 parameters and BE
1,146,688 (spec: ~1.148 M / ~1.147 M).

The latent (prior) dimension is per scale (:data:`PRIOR_DIMS`): 256 at ``paper`` scale (spec), 32 at
``tiny`` scale. A 256-d latent with its 513-input estimators would make the tiny prior ~9x larger than
the tiny backbones it feeds; at 32-d, with a narrow encoder and estimators, the prior's share of the
whole model (params) is within 1.5x of its paper-scale share for every backbone (``profile`` reports
both shares at both scales).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# latent (prior vector) dimension per scale: the ONE home of this number (fusion layers, estimators and
# the deblurring model read it from here)
PRIOR_DIMS: dict[str, int] = {"paper": 256, "tiny": 32}
PRIOR_DIM = PRIOR_DIMS["paper"]
UNSHUFFLE = 4
NEGATIVE_SLOPE = 0.1

# width: channels of the stem and residual blocks; blocks: number of residual blocks;
# head: output channels of the conv3x3 chain after the blocks (the last feeds the Linear layers).
ENCODER_SCALES: dict[str, dict] = {
    "paper": {"width": 64, "blocks": 6, "head": (128, 128, 256)},
    "tiny": {"width": 8, "blocks": 1, "head": (16, 32)},
}


def prior_dim(scale: str) -> int:
    """The latent (prior) dimension at ``scale``."""
    if scale not in PRIOR_DIMS:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(PRIOR_DIMS)}")
    return PRIOR_DIMS[scale]


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(NEGATIVE_SLOPE)


class ResidualBlock(nn.Module):
    """conv3x3-[BN]-LeakyReLU-conv3x3-[BN] + skip (no activation after the sum)."""

    def __init__(self, channels: int, batchnorm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        layers += [_act(), nn.Conv2d(channels, channels, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LatentEncoder(nn.Module):
    """``forward(a, b) -> (B, prior_dim(scale))`` for two (B, 3, H, W) images, H and W multiples of 4."""

    def __init__(self, scale: str = "paper", batchnorm: bool = False):
        super().__init__()
        if scale not in ENCODER_SCALES:
            raise ValueError(f"unknown encoder scale {scale!r}; allowed: {', '.join(ENCODER_SCALES)}")
        cfg = ENCODER_SCALES[scale]
        self.scale = scale
        self.batchnorm = batchnorm
        self.out_dim = dim = PRIOR_DIMS[scale]
        in_ch = 2 * 3 * UNSHUFFLE**2
        width = cfg["width"]
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, padding=1), _act())
        self.blocks = nn.Sequential(*(ResidualBlock(width, batchnorm) for _ in range(cfg["blocks"])))
        head: list[nn.Module] = []
        prev = width
        for ch in cfg["head"]:
            head += [nn.Conv2d(prev, ch, 3, padding=1), _act()]
            prev = ch
        self.head = nn.Sequential(*head)
        self.mlp = nn.Sequential(
            nn.Linear(prev, dim), _act(),
            nn.Linear(dim, dim), _act(),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        for name, x in (("a", a), ("b", b)):
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"LatentEncoder input {name} must be (B, 3, H, W), got {tuple(x.shape)}")
        if a.shape != b.shape:
            raise ValueError(f"LatentEncoder inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        h, w = a.shape[-2:]
        if h % UNSHUFFLE or w % UNSHUFFLE:
            raise ValueError(
                f"LatentEncoder needs H and W to be multiples of {UNSHUFFLE} (pixel-unshuffle), got H={h}, W={w}; "
                "pad or crop the images first"
            )
        x = torch.cat([F.pixel_unshuffle(a, UNSHUFFLE), F.pixel_unshuffle(b, UNSHUFFLE)], dim=1)
        x = self.head(self.blocks(self.stem(x)))
        return self.mlp(x.mean(dim=(-2, -1)))


def sharp_encoder(scale: str = "paper") -> LatentEncoder:
    """SE: called as ``SE(blur, sharp)``; residual blocks with BatchNorm."""
    return LatentEncoder(scale=scale, batchnorm=True)


def blur_encoder(scale: str = "paper") -> LatentEncoder:
    """BE: called as ``BE(blur, blur)``; no BatchNorm."""
    return LatentEncoder(scale=scale, batchnorm=False)
