"""Stripformer (Tsai et al., ECCV 2022) with optional prior fusion.

A convolutional encoder (two stride-2 stages with residual units) feeds a bottleneck of alternating
intra-strip and inter-strip attention blocks at 1/4 resolution; the decoder upsamples, merges the
1/2-scale skip, runs more alternating strip-attention blocks, upsamples again, merges the full-scale
skip and predicts a residual that is added to the input.

* Intra-strip attention: half the channels attend along each row (tokens = pixels of the row), the
  other half along each column; multi-head over channels.
* Inter-strip attention: half the channels treat every row as one token (its features flattened
  with the row's pixels), the other half every column; multi-head over channel groups.
  Every block: LayerNorm -> 1x1 conv -> the two strip attentions -> 1x1 conv -> residual; then
  LayerNorm -> MLP (x4, GELU) -> residual; then a depthwise 3x3 positional conv with residual.

Written from the paper and the layer structure of the public reference implementation. BlurDM adds a
prior fusion layer (``x * k + v``) in every attention block (bottleneck and decoder), applied to the
attention branch just before its LayerNorm; the block's residual keeps the unmodulated input.
See ``shared/spec/blurdm-method.md``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.fusion import PriorFusion, check_prior, fuse, make_fusion

STRIPFORMER_SCALES: dict[str, dict] = {
    # channels at full, 1/2 and 1/4 resolution; decoder attention width; residual units per encoder
    # stage; (intra, inter) block pairs and heads in the bottleneck and the decoder.
    "paper": {
        "channels": (64, 128, 320),
        "decoder_channels": 192,
        "encoder_res_units": 3,
        "bottleneck_pairs": 6,
        "bottleneck_heads": 5,
        "decoder_pairs": 3,
        "decoder_heads": 3,
    },
    "tiny": {
        "channels": (12, 24, 48),
        "decoder_channels": 36,
        "encoder_res_units": 1,
        "bottleneck_pairs": 1,
        "bottleneck_heads": 2,
        "decoder_pairs": 1,
        "decoder_heads": 2,
    },
}
LEAKY_SLOPE = 0.2


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


class ConvResidualUnit(nn.Module):
    """``lrelu(x + conv3x3(lrelu(conv(x))))``; the first conv is 1x1 from ``c_in`` when it differs."""

    def __init__(self, channels: int, c_in: int | None = None):
        super().__init__()
        c_in = channels if c_in is None else c_in
        first = nn.Conv2d(c_in, channels, 3, padding=1) if c_in == channels else nn.Conv2d(c_in, channels, 1)
        self.body = nn.Sequential(first, _act(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        inp = x if skip is None else torch.cat([x, skip], dim=1)
        return _lrelu(x + self.body(inp))


class FeedForward(nn.Module):
    """Token MLP: Linear(C, 4C) - GELU - Linear(4C, C) on channels-last features."""

    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _channels_last_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class StripAttentionBlock(nn.Module):
    """Shared skeleton of the intra- and inter-strip blocks; subclasses implement ``attend``."""

    def __init__(self, dim: int, heads: int, prior_dim: int | None):
        super().__init__()
        if (dim // 2) % heads:
            raise ValueError(f"half the channels ({dim // 2}) must be divisible by the number of heads ({heads})")
        self.dim, self.heads = dim, heads
        self.fusion: PriorFusion | None = make_fusion(dim, prior_dim)
        self.attention_norm = nn.LayerNorm(dim)
        self.conv_in = nn.Conv2d(dim, dim, 1)
        self.conv_out = nn.Conv2d(dim, dim, 1)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim)
        self.pos_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def attend(self, x_rows: torch.Tensor, x_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        y = _channels_last_norm(self.attention_norm, fuse(self.fusion, x, prior))
        x_rows, x_cols = self.conv_in(y).chunk(2, dim=1)
        out_rows, out_cols = self.attend(x_rows, x_cols)
        x = x + self.conv_out(torch.cat([out_rows, out_cols], dim=1))
        t = x.permute(0, 2, 3, 1)
        t = t + self.ffn(self.ffn_norm(t))
        x = t.permute(0, 3, 1, 2)
        return x + self.pos_conv(x)


def _heads_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention on (N, L, D) tokens, heads split over contiguous chunks of D."""
    n, length, d = q.shape
    q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, d)


class IntraStripAttention(StripAttentionBlock):
    """Pixels attend within their own row (first half of channels) or column (second half)."""

    def __init__(self, dim: int, heads: int, prior_dim: int | None):
        super().__init__(dim, heads, prior_dim)
        self.qkv_rows = nn.Linear(dim // 2, 3 * (dim // 2))
        self.qkv_cols = nn.Linear(dim // 2, 3 * (dim // 2))

    def attend(self, x_rows, x_cols):
        b, c, h, w = x_rows.shape
        rows = x_rows.permute(0, 2, 3, 1).reshape(b * h, w, c)  # one sequence per row
        cols = x_cols.permute(0, 3, 2, 1).reshape(b * w, h, c)  # one sequence per column
        rows = _heads_attention(*self.qkv_rows(rows).chunk(3, dim=-1), self.heads)
        cols = _heads_attention(*self.qkv_cols(cols).chunk(3, dim=-1), self.heads)
        return rows.reshape(b, h, w, c).permute(0, 3, 1, 2), cols.reshape(b, w, h, c).permute(0, 3, 2, 1)


class InterStripAttention(StripAttentionBlock):
    """Each row (first half of channels) or column (second half) is one token; heads = channel groups."""

    def __init__(self, dim: int, heads: int, prior_dim: int | None):
        super().__init__(dim, heads, prior_dim)
        self.qkv_rows = nn.Conv2d(dim // 2, 3 * (dim // 2), 1)
        self.qkv_cols = nn.Conv2d(dim // 2, 3 * (dim // 2), 1)

    def _strip_tokens(self, t: torch.Tensor, along_rows: bool) -> torch.Tensor:
        # (B, C, H, W) -> (B, heads, strips, C/heads * strip_length), channel-major within a head
        b, c, h, w = t.shape
        t = t.reshape(b, self.heads, c // self.heads, h, w)
        t = t.permute(0, 1, 3, 2, 4) if along_rows else t.permute(0, 1, 4, 2, 3)
        return t.reshape(b, self.heads, t.shape[2], -1)

    def _strip_untokens(self, t: torch.Tensor, shape: torch.Size, along_rows: bool) -> torch.Tensor:
        b, c, h, w = shape
        ch = c // self.heads
        if along_rows:
            return t.reshape(b, self.heads, h, ch, w).permute(0, 1, 3, 2, 4).reshape(b, c, h, w)
        return t.reshape(b, self.heads, w, ch, h).permute(0, 1, 3, 4, 2).reshape(b, c, h, w)

    def attend(self, x_rows, x_cols):
        outputs = []
        for feat, qkv, along_rows in ((x_rows, self.qkv_rows, True), (x_cols, self.qkv_cols, False)):
            q, k, v = (self._strip_tokens(t, along_rows) for t in qkv(feat).chunk(3, dim=1))
            outputs.append(self._strip_untokens(F.scaled_dot_product_attention(q, k, v), feat.shape, along_rows))
        return outputs[0], outputs[1]


def _strip_stack(pairs: int, dim: int, heads: int, prior_dim: int | None) -> nn.ModuleList:
    blocks: list[nn.Module] = []
    for _ in range(pairs):
        blocks += [IntraStripAttention(dim, heads, prior_dim), InterStripAttention(dim, heads, prior_dim)]
    return nn.ModuleList(blocks)


class Stripformer(nn.Module):
    """Stripformer; ``forward(x, prior=None)`` returns ``[restored]`` (full resolution)."""

    SCALES = STRIPFORMER_SCALES
    pad_multiple = 32
    value_range = "half"
    residual_outputs = ("tail",)  # the layers whose output is added to the input
    checkpoint_blocks = (StripAttentionBlock, ConvResidualUnit)  # what activation checkpointing wraps
    tile = None

    def __init__(self, scale: str = "tiny", prior_dim: int | None = 256):
        super().__init__()
        if scale not in self.SCALES:
            raise ValueError(f"unknown scale {scale!r} for Stripformer; allowed: {', '.join(self.SCALES)}")
        self.scale = scale
        self.prior_dim = prior_dim
        self.config = dict(self.SCALES[scale])
        cfg = self.config
        c1, c2, c3 = cfg["channels"]
        cd, n_res = cfg["decoder_channels"], cfg["encoder_res_units"]

        self.head = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), _act())
        self.enc_full = nn.ModuleList(ConvResidualUnit(c1) for _ in range(n_res))
        self.down1 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), _act())
        self.enc_half = nn.ModuleList(ConvResidualUnit(c2) for _ in range(n_res))
        self.down2 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), _act())
        self.bottleneck = _strip_stack(cfg["bottleneck_pairs"], c3, cfg["bottleneck_heads"], prior_dim)

        self.up1 = nn.Sequential(nn.ConvTranspose2d(c3, cd, 4, stride=2, padding=1), _act())
        self.merge_half = nn.Sequential(nn.Conv2d(cd + c2, cd, 1), _act())
        self.decoder = _strip_stack(cfg["decoder_pairs"], cd, cfg["decoder_heads"], prior_dim)
        self.up2 = nn.Sequential(nn.ConvTranspose2d(cd, c1, 4, stride=2, padding=1), _act())
        self.merge_full = ConvResidualUnit(c1, c_in=2 * c1)
        self.refine_full = ConvResidualUnit(c1)
        self.tail = nn.Sequential(nn.Conv2d(c1, 3, 3, padding=1), _act())

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        check_prior(self, x, prior)
        skip_full = self.head(x)
        for unit in self.enc_full:
            skip_full = unit(skip_full)
        skip_half = self.down1(skip_full)
        for unit in self.enc_half:
            skip_half = unit(skip_half)
        z = self.down2(skip_half)
        for block in self.bottleneck:
            z = block(z, prior)
        z = self.merge_half(torch.cat([self.up1(z), skip_half], dim=1))
        for block in self.decoder:
            z = block(z, prior)
        z = self.merge_full(self.up2(z), skip_full)
        z = self.refine_full(z)
        return [self.tail(z) + x]
