"""FFTformer (Kong et al., CVPR 2023, "Efficient Frequency Domain-based Transformers for High-Quality
Image Deblurring") with optional BlurDM prior fusion.

Structure (our own implementation, written from the paper and the layer layout of the public code):

* 3x3 conv embedding to ``dim`` channels; a 3-level U-shape (``dim``, ``2 dim``, ``4 dim`` channels at
  1, 1/2 and 1/4 resolution). Encoder blocks have the frequency-domain FFN (DFFN) only; decoder and
  refinement blocks also have frequency-domain self-attention (FSAS).
* FSAS: 1x1 conv to ``6C`` + depthwise 3x3 -> q, k, v (``2C`` each); q and k are split into 8x8 patches,
  their patch-wise spectra multiplied (``rfft2(q) * rfft2(k)``, i.e. a circular convolution), brought
  back with ``irfft2``, layer-normalised, used to gate v, then a 1x1 conv back to C.
* DFFN: 1x1 conv to ``2h`` (h = ``ffn_factor * C``), a learned per-channel 8x8 spectral filter
  (``rfft2`` -> multiply -> ``irfft2`` on 8x8 patches), depthwise 3x3, GELU gate, 1x1 conv back to C.
* Down: bilinear x0.5 + 3x3 conv (C -> 2C); up: bilinear x2 + 3x3 conv (C -> C/2). Skips are merged by
  a "Fuse" unit (1x1 conv on the concatenation, one attention-free block at 2C with FFN factor 2.66,
  1x1 conv, split and sum). Output: 3x3 conv + the input image (global residual).
* The upstream class also defines a 1x1 ``reduce_chan_level2`` conv that its forward never uses
  (18,432 parameters); it is left out here.

Prior fusion (BlurDM spec): one :class:`models.fusion.PriorFusion` (``Linear(256, 2C)``, no bias) at the
input of the FSAS (after the block's LayerNorm) of every block that has attention (decoder 12 at 4 dim, 6 at 2 dim, 6 at dim, and the
4 refinement blocks at dim): ``512 * 3360 = 1,720,320`` extra parameters at the paper scale.

Images are in [0, 1] (``value_range = "unit"``); H and W must be multiples of 32 (8x8 patches at 1/4
resolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.fusion import PRIOR_DIM, PriorFusion, fuse, make_fusion

CONFIGS: dict[str, dict] = {
    # Upstream defaults: dim 48, blocks [6, 6, 12], 4 refinement blocks, FFN expansion 3.
    "paper": {"dim": 48, "num_blocks": (6, 6, 12), "num_refinement": 4, "ffn_factor": 3.0,
              "fuse_ffn_factor": 2.66, "patch": 8},
    # Same code, small enough for CPU smoke training.
    "tiny": {"dim": 8, "num_blocks": (1, 1, 1), "num_refinement": 1, "ffn_factor": 2.0,
             "fuse_ffn_factor": 2.0, "patch": 8},
}


EVAL_CHANNEL_GROUP = 32  # channels per spectral transform in evaluation (filter_patches_by_channel_groups)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (B, C, H, W) map (weight and bias per channel).

    Runs the fused layer-norm kernel on a channels-last view (free when the model runs in
    ``channels_last`` memory format)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/p, W/p, p, p) non-overlapping patches."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 2, 4, 3, 5)


def from_patches(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_patches`."""
    b, c, nh, nw, p1, p2 = x.shape
    return x.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * p1, nw * p2)


def spectral_input(x: torch.Tensor) -> torch.Tensor:
    """The FFTs run in float32, as upstream (also under bf16 / fp16 autocast), except for float64
    inputs, which stay float64 (the float64 conformance checks against the official outputs)."""
    return x if x.dtype == torch.float64 else x.float()


def patch_spectral_product(q: torch.Tensor, k: torch.Tensor, patch: int) -> torch.Tensor:
    """``irfft2(rfft2(q) * rfft2(k))`` on each p x p patch: the circular convolution of q and k
    within every patch (FSAS's attention map), computed in float32 (float64 for float64 inputs)."""
    spectrum = torch.fft.rfft2(spectral_input(to_patches(q, patch)))
    spectrum = spectral_product(spectrum, torch.fft.rfft2(spectral_input(to_patches(k, patch))))
    return from_patches(torch.fft.irfft2(spectrum, s=(patch, patch))).to(q.dtype)


def spectral_product(spectrum: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``spectrum * factor``; without autograd (evaluation) in place in ``spectrum``, the same values with one
    full-resolution spectrum less alive: at paper scale a 720 x 1280 image's spectra are 2.4 GB each."""
    if torch.is_grad_enabled():
        return spectrum * factor
    return spectrum.mul_(factor)


class FrequencyFFN(nn.Module):
    """DFFN: gated depthwise FFN with a learned spectral filter on 8x8 patches."""

    def __init__(self, channels: int, ffn_factor: float, patch: int = 8, bias: bool = False):
        super().__init__()
        hidden = int(channels * ffn_factor)
        self.patch = patch
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        # stored 3-D (channels, p, p//2+1) so that model.to(memory_format=channels_last) works
        self.spectral_filter = nn.Parameter(torch.ones(2 * hidden, patch, patch // 2 + 1))
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        spectral_filter = self.spectral_filter.unsqueeze(1).unsqueeze(1)  # broadcast over patches
        if torch.is_grad_enabled():
            x = filter_patches(x, spectral_filter, self.patch).to(x.dtype)
        else:
            x = filter_patches_by_channel_groups(x, spectral_filter, self.patch)
        gate, value = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


def filter_patches(x: torch.Tensor, spectral_filter: torch.Tensor, patch: int) -> torch.Tensor:
    """DFFN's patch filter: ``irfft2(rfft2(x) * filter)`` on each p x p patch (float32 FFTs, float64 for float64
    inputs), back in the image layout."""
    spectrum = spectral_product(torch.fft.rfft2(spectral_input(to_patches(x, patch))), spectral_filter)
    return from_patches(torch.fft.irfft2(spectrum, s=(patch, patch)))


def filter_patches_by_channel_groups(x: torch.Tensor, spectral_filter: torch.Tensor, patch: int,
                                     group: int = EVAL_CHANNEL_GROUP) -> torch.Tensor:
    """:func:`filter_patches` for evaluation, ``group`` channels at a time: every channel's patches are transformed
    on their own, so the values are those of the whole-tensor expression, but only the input, the output and one
    group's spectra are alive at once instead of the input, its contiguous copy, two spectra and the patches (at paper scale on a 720 x 1280 image the DFFN of the
    level-1 skip fusion has 510 channels: 1.9 GB per real map, 2.4 GB per spectrum)."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for start in range(0, x.shape[1], group):
        part = slice(start, start + group)
        out[:, part] = filter_patches(x[:, part], spectral_filter[part], patch)
    return out


class FrequencySelfAttention(nn.Module):
    """FSAS: patch-wise spectral correlation of q and k gates v; optional prior fusion at its input."""

    def __init__(self, channels: int, prior_dim: int | None, patch: int = 8, bias: bool = False):
        super().__init__()
        self.patch = patch
        self.fusion = make_fusion(channels, prior_dim)
        self.to_hidden = nn.Conv2d(channels, 6 * channels, 1, bias=bias)
        self.to_hidden_dw = nn.Conv2d(6 * channels, 6 * channels, 3, padding=1, groups=6 * channels, bias=bias)
        self.norm = ChannelLayerNorm(2 * channels)
        self.project_out = nn.Conv2d(2 * channels, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        x = fuse(self.fusion, x, prior)
        q, k, v = self.to_hidden_dw(self.to_hidden(x)).chunk(3, dim=1)
        return self.project_out(v * self.norm(patch_spectral_product(q, k, self.patch)))


class FFTBlock(nn.Module):
    """Pre-norm block: optional FSAS (with its prior fusion), then DFFN, both residual."""

    def __init__(self, channels: int, ffn_factor: float, attention: bool, prior_dim: int | None,
                 patch: int = 8):
        super().__init__()
        self.attention = attention
        if attention:
            self.norm1 = ChannelLayerNorm(channels)
            self.attn = FrequencySelfAttention(channels, prior_dim, patch)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = FrequencyFFN(channels, ffn_factor, patch)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        if self.attention:
            x = x + self.attn(self.norm1(x), prior)
        return x + self.ffn(self.norm2(x))


class SkipFuse(nn.Module):
    """Merge decoder and encoder features: 1x1 conv, attention-free block at 2C, 1x1 conv, split, sum."""

    def __init__(self, channels: int, ffn_factor: float, patch: int = 8):
        super().__init__()
        self.conv_in = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.block = FFTBlock(2 * channels, ffn_factor, attention=False, prior_dim=None, patch=patch)
        self.conv_out = nn.Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, decoder: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        x = self.conv_out(self.block(self.conv_in(torch.cat([decoder, encoder], dim=1))))
        a, b = x.chunk(2, dim=1)
        return a + b


def _resample(channels_in: int, channels_out: int, factor: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False),
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
    )


def _stage(n: int, channels: int, ffn_factor: float, attention: bool, prior_dim: int | None,
           patch: int) -> nn.ModuleList:
    return nn.ModuleList(FFTBlock(channels, ffn_factor, attention, prior_dim, patch) for _ in range(n))


def _run(blocks: nn.ModuleList, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    for block in blocks:
        x = block(x, prior)
    return x


class FFTformer(nn.Module):
    """FFTformer backbone; ``forward(x, prior=None) -> [restored]`` (one full-resolution output)."""

    value_range = "unit"
    residual_outputs = ("output",)  # the layer whose output is added to the input
    tile = None
    checkpoint_blocks = (FFTBlock,)  # what activation checkpointing wraps (models.activation_checkpointing)

    def __init__(self, scale: str = "tiny", prior_dim: int | None = PRIOR_DIM):
        super().__init__()
        if scale not in CONFIGS:
            raise ValueError(f"unknown FFTformer scale {scale!r}; allowed: {', '.join(CONFIGS)}")
        cfg = CONFIGS[scale]
        self.scale = scale
        self.prior_dim = prior_dim
        dim, (n1, n2, n3), patch = cfg["dim"], cfg["num_blocks"], cfg["patch"]
        ffn, fuse_ffn = cfg["ffn_factor"], cfg["fuse_ffn_factor"]
        self.pad_multiple = 4 * patch  # two 2x downsamplings, then 8x8 patches

        self.embed = nn.Conv2d(3, dim, 3, padding=1, bias=False)
        self.encoder1 = _stage(n1, dim, ffn, False, None, patch)
        self.down1 = _resample(dim, 2 * dim, 0.5)
        self.encoder2 = _stage(n2, 2 * dim, ffn, False, None, patch)
        self.down2 = _resample(2 * dim, 4 * dim, 0.5)
        self.encoder3 = _stage(n3, 4 * dim, ffn, False, None, patch)

        self.decoder3 = _stage(n3, 4 * dim, ffn, True, prior_dim, patch)
        self.up2 = _resample(4 * dim, 2 * dim, 2.0)
        self.skip2 = SkipFuse(2 * dim, fuse_ffn, patch)
        self.decoder2 = _stage(n2, 2 * dim, ffn, True, prior_dim, patch)
        self.up1 = _resample(2 * dim, dim, 2.0)
        self.skip1 = SkipFuse(dim, fuse_ffn, patch)
        self.decoder1 = _stage(n1, dim, ffn, True, prior_dim, patch)
        self.refinement = _stage(cfg["num_refinement"], dim, ffn, True, prior_dim, patch)
        self.output = nn.Conv2d(dim, 3, 3, padding=1, bias=False)

    def fusion_layers(self) -> list[PriorFusion]:
        return [m for m in self.modules() if isinstance(m, PriorFusion)]

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        if h % self.pad_multiple or w % self.pad_multiple:
            raise ValueError(f"FFTformer needs H and W to be multiples of {self.pad_multiple}, got {h}x{w}: "
                             "pad the input (models.inference.pad_to_multiple)")
        enc1 = _run(self.encoder1, self.embed(x), None)
        enc2 = _run(self.encoder2, self.down1(enc1), None)
        enc3 = _run(self.encoder3, self.down2(enc2), None)
        dec = _run(self.decoder3, enc3, prior)
        dec = _run(self.decoder2, self.skip2(self.up2(dec), enc2), prior)
        dec = _run(self.decoder1, self.skip1(self.up1(dec), enc1), prior)
        dec = _run(self.refinement, dec, prior)
        return [self.output(dec) + x]
