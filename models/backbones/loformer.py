"""LoFormer-S (Mao et al., ACM MM 2024, "LoFormer: Local Frequency Transformer for Image Deblurring")
with optional BlurDM prior fusion.

Structure (our own implementation, written from the paper and the LoFormer-S configuration of the
public code: dim 32, encoder [1, 2, 3], middle 7, decoder [3, 2, 2], heads [1, 2, 4] / 8, window 8,
FFN expansion 2.66, biases on, "channel_mlp" attention, no DCT windowing):

* 3x3 conv embedding (no bias); a 3-level U-shape with pixel-unshuffle downsampling (3x3 conv C -> C/2,
  unshuffle -> 2C) and pixel-shuffle upsampling (3x3 conv C -> 2C, shuffle -> C/2). Encoder skips are
  concatenated; a 1x1 conv halves the channels, except at full resolution, where the last decoder
  level runs at ``2 dim`` channels. Output: 3x3 conv (2 dim -> 3) + the input image.
* Every "block" is two sub-blocks (:class:`LocalFrequencyLayer`). A sub-block takes the orthonormal
  2-D DCT-II of the whole feature map, layer-normalises it, runs local channel attention on it
  (8x8 windows of DCT coefficients; per window and head a C_h x C_h attention, scaled by a learned
  temperature, its output multiplied by ``GELU(Linear(64, 64))`` of v over the window positions),
  adds the result to the DCT features and transforms back with the inverse DCT; then a gated
  depthwise FFN (GELU) in the spatial domain. Both parts are residual.

Prior fusion (BlurDM spec): one :class:`models.fusion.PriorFusion` WITH bias in the attention of each
of the 14 decoder sub-blocks, applied to the normalised DCT features just before q/k/v:
``6 x (512*128 + 256) + 8 x (512*64 + 128) = 657,920`` extra parameters at the paper scale.

Input size, as the official network handles it: the input is reflect-padded at the bottom and right
to a multiple of ``2**levels`` (``pad_multiple``: 8 at the paper scale, 4 at the tiny scale; the
resamplers need even sizes) and the output cropped back; each DCT covers the whole (unpadded) feature
map, and where a map is not a whole number of attention windows, the attention reflect-pads its q/k/v
at the bottom and right to whole windows and crops its output back (so any size works, e.g. 40x40
and 72x72, where the 1/8-scale map is 5x5 or 9x9). Full images are restored on tiles
(``tile = (384, 32)``: LoFormer's 384x384 training size, 32-pixel overlap, with the official
placement and blending; see :func:`models.inference.restore_full`); the tiny scale tiles at its
64x64 training crop. Images are in [0, 1] (``value_range = "unit"``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones.fftformer import ChannelLayerNorm
from models.fusion import PRIOR_DIM, PriorFusion, fuse, make_fusion

CONFIGS: dict[str, dict] = {
    "paper": {"dim": 32, "enc_blocks": (1, 2, 3), "middle_blocks": 7, "dec_blocks": (3, 2, 2),
              "enc_heads": (1, 2, 4), "middle_heads": 8, "window": 8, "ffn_factor": 2.66,
              "tile": (384, 32)},
    "tiny": {"dim": 8, "enc_blocks": (1, 1), "middle_blocks": 1, "dec_blocks": (1, 1),
             "enc_heads": (1, 2), "middle_heads": 2, "window": 8, "ffn_factor": 2.0,
             "tile": (64, 16)},
}

_DCT_CACHE: dict[tuple, torch.Tensor] = {}


def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): ``D @ x`` transforms the columns of x; ``D.T`` inverts it."""
    key = (n, str(device), dtype)
    if key not in _DCT_CACHE:
        # a normal tensor even when first built under inference_mode, so training can reuse it
        with torch.inference_mode(False), torch.no_grad():
            k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
            j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
            mat = torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
            mat[0] /= math.sqrt(2.0)
            _DCT_CACHE[key] = mat.to(device=device, dtype=dtype)
    return _DCT_CACHE[key]


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions (whole map)."""
    h, w = x.shape[-2:]
    return dct_matrix(h, x.device, x.dtype) @ x @ dct_matrix(w, x.device, x.dtype).T


def idct2(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2`."""
    h, w = x.shape[-2:]
    return dct_matrix(h, x.device, x.dtype).T @ x @ dct_matrix(w, x.device, x.dtype)


class LocalChannelAttention(nn.Module):
    """Channel attention inside non-overlapping windows, gated by an MLP over the window positions."""

    # How q/k/v are padded to whole windows (the official code reflects; a class attribute so the
    # conformance tests can show that the padding mode is observable)
    window_pad_mode = "reflect"

    def __init__(self, channels: int, heads: int, window: int, prior_dim: int | None):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.window = window
        self.fusion = make_fusion(channels, prior_dim, bias=True)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels)
        self.temperature = nn.Parameter(torch.full((heads, 1, 1), 1.0 / math.sqrt(channels)))
        self.position_mlp = nn.Linear(window * window, window * window)
        self.project_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        x = fuse(self.fusion, x, prior)
        qkv = self.qkv_dw(self.qkv(x))
        b, c, height, width = x.shape
        pad_h, pad_w = -height % self.window, -width % self.window
        if pad_h or pad_w:  # whole windows: pad bottom/right, crop the output back below
            qkv = F.pad(qkv, (0, pad_w, 0, pad_h), mode=self.window_pad_mode)
        h, w = qkv.shape[-2:]
        ws, nh, nw = self.window, h // self.window, w // self.window
        # (B, 3*heads*c_h, H, W) -> (3, B*windows, heads, c_h, ws*ws)
        qkv = qkv.reshape(b, 3, self.heads, c // self.heads, nh, ws, nw, ws)
        qkv = qkv.permute(1, 0, 4, 6, 2, 3, 5, 7).reshape(3, b * nh * nw, self.heads, c // self.heads, ws * ws)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attn @ v) * F.gelu(self.position_mlp(v))
        out = out.reshape(b, nh, nw, self.heads, c // self.heads, ws, ws)
        out = out.permute(0, 3, 4, 1, 5, 2, 6).reshape(b, c, h, w)
        return self.project_out(out[..., :height, :width])


class GatedFFN(nn.Module):
    """1x1 conv to 2h, depthwise 3x3, GELU gate, 1x1 conv back (biases on)."""

    def __init__(self, channels: int, ffn_factor: float):
        super().__init__()
        hidden = int(channels * ffn_factor)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class LocalFrequencyLayer(nn.Module):
    """One LoFormer sub-block: DCT -> norm -> (prior fusion) -> local attention, residual in the DCT
    domain, inverse DCT; then a residual gated FFN."""

    def __init__(self, channels: int, heads: int, window: int, ffn_factor: float, prior_dim: int | None):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = LocalChannelAttention(channels, heads, window, prior_dim)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = GatedFFN(channels, ffn_factor)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        coeffs = dct2(x)
        x = idct2(coeffs + self.attn(self.norm1(coeffs), prior))
        return x + self.ffn(self.norm2(x))


def _stage(n_blocks: int, channels: int, heads: int, cfg: dict, prior_dim: int | None) -> nn.ModuleList:
    """``n_blocks`` LoFormer blocks = ``2 * n_blocks`` sub-blocks."""
    return nn.ModuleList(
        LocalFrequencyLayer(channels, heads, cfg["window"], cfg["ffn_factor"], prior_dim)
        for _ in range(2 * n_blocks)
    )


class LoFormerS(nn.Module):
    """LoFormer-S backbone; ``forward(x, prior=None) -> [restored]`` (one full-resolution output)."""

    value_range = "unit"
    residual_outputs = ("output",)  # the layer whose output is added to the input
    checkpoint_blocks = (LocalFrequencyLayer,)  # what activation checkpointing wraps

    def __init__(self, scale: str = "tiny", prior_dim: int | None = PRIOR_DIM):
        super().__init__()
        if scale not in CONFIGS:
            raise ValueError(f"unknown LoFormer scale {scale!r}; allowed: {', '.join(CONFIGS)}")
        cfg = CONFIGS[scale]
        self.scale = scale
        self.prior_dim = prior_dim
        self.tile = tuple(cfg["tile"])
        levels = len(cfg["enc_blocks"])
        self.pad_multiple = 2 ** levels  # the input is padded to it inside forward (official check_image_size)
        dim = cfg["dim"]

        self.embed = nn.Conv2d(3, dim, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = dim
        for n, heads in zip(cfg["enc_blocks"], cfg["enc_heads"]):
            self.encoders.append(_stage(n, chan, heads, cfg, None))
            self.downs.append(nn.Sequential(nn.Conv2d(chan, chan // 2, 3, padding=1, bias=False),
                                            nn.PixelUnshuffle(2)))
            chan *= 2
        self.middle = _stage(cfg["middle_blocks"], chan, cfg["middle_heads"], cfg, None)

        self.ups = nn.ModuleList()
        self.reduce = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level, (n, heads) in enumerate(zip(cfg["dec_blocks"], cfg["enc_heads"][::-1])):
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 3, padding=1, bias=False),
                                          nn.PixelShuffle(2)))
            if level < levels - 1:  # concat (chan/2 + chan/2) -> 1x1 conv to chan/2
                self.reduce.append(nn.Conv2d(chan, chan // 2, 1))
                chan //= 2
            else:  # full resolution: keep the concatenation (2 dim channels)
                self.reduce.append(nn.Identity())
            self.decoders.append(_stage(n, chan, heads, cfg, prior_dim))
        self.output = nn.Conv2d(chan, 3, 3, padding=1)

    def fusion_layers(self) -> list[PriorFusion]:
        return [m for m in self.modules() if isinstance(m, PriorFusion)]

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.pad_multiple, -w % self.pad_multiple
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        feat = self.embed(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            for layer in encoder:
                feat = layer(feat)
            skips.append(feat)
            feat = down(feat)
        for layer in self.middle:
            feat = layer(feat)
        for up, reduce, decoder, skip in zip(self.ups, self.reduce, self.decoders, skips[::-1]):
            feat = reduce(torch.cat([up(feat), skip], dim=1))
            for layer in decoder:
                feat = layer(feat, prior)
        return [self.output(feat)[..., :h, :w] + x]
