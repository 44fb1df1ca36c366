"""MIMO-UNet and MIMO-UNet+ (Cho et al., ICCV 2021) with optional prior fusion.

Multi-input multi-output U-Net: the blurred image is fed at full, 1/2 and 1/4 resolution (shallow
convolutional modules, SCM, merged into the encoder by feature attention, FAM), encoder features of
all scales are fused for the skip connections (asymmetric feature fusion, AFF), and the decoder emits
a restored image at every scale (each a residual on the correspondingly downscaled input).

Written from the paper and the layer structure of the public reference implementation. BlurDM adds
one prior fusion layer (``x * k + v``) at the input of each of the three decoder blocks (C = 4b, 2b, b
for base width b); see ``shared/spec/blurdm-method.md``.

``paper`` scale is the published configuration (base 32; 8 residual blocks per stage for MIMO-UNet,
20 and Dropout2d(0.1) on the AFF outputs for MIMO-UNet+); ``tiny`` keeps the topology with fewer
channels and blocks for CPU tests.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.fusion import PriorFusion, check_prior, fuse, make_fusion

MIMO_UNET_SCALES: dict[str, dict] = {
    "paper": {"base_channels": 32, "num_res": 8, "dropout": 0.0},
    "tiny": {"base_channels": 8, "num_res": 1, "dropout": 0.0},
}
MIMO_UNET_PLUS_SCALES: dict[str, dict] = {
    "paper": {"base_channels": 32, "num_res": 20, "dropout": 0.1},
    "tiny": {"base_channels": 8, "num_res": 2, "dropout": 0.1},
}


def conv_layer(c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv2d (bias, 'same' padding for odd kernels) optionally followed by ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def upconv_layer(c_in: int, c_out: int) -> nn.Sequential:
    """ConvTranspose2d 4x4 stride 2 (exact x2 upsampling) followed by ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 plus identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_layer(channels, channels, 3), conv_layer(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def residual_stage(channels: int, num_res: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels) for _ in range(num_res)))


class DecoderStage(nn.Module):
    """Residual blocks, preceded by prior fusion on the stage input when the model has a prior."""

    def __init__(self, channels: int, num_res: int, prior_dim: int | None):
        super().__init__()
        self.fusion: PriorFusion | None = make_fusion(channels, prior_dim)
        self.blocks = residual_stage(channels, num_res)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        return self.blocks(fuse(self.fusion, x, prior))


class ShallowConvModule(nn.Module):
    """SCM: features of a downscaled input image, concatenated with the image itself."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_layer(3, channels // 4, 3),
            conv_layer(channels // 4, channels // 2, 1),
            conv_layer(channels // 2, channels // 2, 3),
            conv_layer(channels // 2, channels - 3, 1),
        )
        self.merge = conv_layer(channels, channels, 1, relu=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([image, self.body(image)], dim=1))


class FeatureAttentionModule(nn.Module):
    """FAM: ``enc + conv(enc * scm)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = conv_layer(channels, channels, 3, relu=False)

    def forward(self, encoder_feat: torch.Tensor, scm_feat: torch.Tensor) -> torch.Tensor:
        return encoder_feat + self.merge(encoder_feat * scm_feat)


class AsymmetricFeatureFusion(nn.Module):
    """AFF: concatenate encoder features of all three scales (resized), 1x1 conv + ReLU, 3x3 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(conv_layer(c_in, c_out, 1), conv_layer(c_out, c_out, 3, relu=False))

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat(feats, dim=1))


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5)  # nearest, as in the reference model


def _double(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0)


class MIMOUNet(nn.Module):
    """MIMO-UNet; ``forward(x, prior=None)`` returns ``[out_1/4, out_1/2, out_full]``."""

    SCALES = MIMO_UNET_SCALES
    pad_multiple = 8
    value_range = "half"
    tile = None
    residual_outputs = ("out_quarter", "out_half", "out_full")  # the convs whose output is added to the input
    checkpoint_blocks = (ResidualBlock,)  # what activation checkpointing wraps (models.activation_checkpointing)

    def __init__(self, scale: str = "tiny", prior_dim: int | None = 256):
        super().__init__()
        if scale not in self.SCALES:
            raise ValueError(f"unknown scale {scale!r} for {type(self).__name__}; allowed: {', '.join(self.SCALES)}")
        self.scale = scale
        self.prior_dim = prior_dim
        self.config = dict(self.SCALES[scale])
        b, n = self.config["base_channels"], self.config["num_res"]
        if b % 4:
            raise ValueError(f"base_channels must be a multiple of 4, got {b}")

        self.head = conv_layer(3, b, 3)
        self.down1 = conv_layer(b, 2 * b, 3, stride=2)
        self.down2 = conv_layer(2 * b, 4 * b, 3, stride=2)
        self.encoders = nn.ModuleList([residual_stage(b, n), residual_stage(2 * b, n), residual_stage(4 * b, n)])
        self.scm_half = ShallowConvModule(2 * b)
        self.scm_quarter = ShallowConvModule(4 * b)
        self.fam_half = FeatureAttentionModule(2 * b)
        self.fam_quarter = FeatureAttentionModule(4 * b)
        self.aff_full = AsymmetricFeatureFusion(7 * b, b)
        self.aff_half = AsymmetricFeatureFusion(7 * b, 2 * b)
        p = self.config["dropout"]
        self.skip_dropout = nn.ModuleList([nn.Dropout2d(p), nn.Dropout2d(p)]) if p > 0 else None

        self.decoders = nn.ModuleList(
            [DecoderStage(4 * b, n, prior_dim), DecoderStage(2 * b, n, prior_dim), DecoderStage(b, n, prior_dim)]
        )
        self.up1 = upconv_layer(4 * b, 2 * b)
        self.up2 = upconv_layer(2 * b, b)
        self.reduce_half = conv_layer(4 * b, 2 * b, 1)
        self.reduce_full = conv_layer(2 * b, b, 1)
        self.out_quarter = conv_layer(4 * b, 3, 3, relu=False)
        self.out_half = conv_layer(2 * b, 3, 3, relu=False)
        self.out_full = conv_layer(b, 3, 3, relu=False)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        check_prior(self, x, prior)
        x_half = _half(x)
        x_quarter = _half(x_half)

        enc_full = self.encoders[0](self.head(x))
        enc_half = self.encoders[1](self.fam_half(self.down1(enc_full), self.scm_half(x_half)))
        z = self.encoders[2](self.fam_quarter(self.down2(enc_half), self.scm_quarter(x_quarter)))

        z_to_half = _double(z)
        skip_half = self.aff_half(_half(enc_full), enc_half, z_to_half)
        skip_full = self.aff_full(enc_full, _double(enc_half), _double(z_to_half))
        if self.skip_dropout is not None:
            skip_half = self.skip_dropout[0](skip_half)
            skip_full = self.skip_dropout[1](skip_full)

        z = self.decoders[0](z, prior)
        out_quarter = self.out_quarter(z) + x_quarter
        z = self.reduce_half(torch.cat([self.up1(z), skip_half], dim=1))
        z = self.decoders[1](z, prior)
        out_half = self.out_half(z) + x_half
        z = self.reduce_full(torch.cat([self.up2(z), skip_full], dim=1))
        z = self.decoders[2](z, prior)
        out_full = self.out_full(z) + x
        return [out_quarter, out_half, out_full]


class MIMOUNetPlus(MIMOUNet):
    """MIMO-UNet+: 20 residual blocks per stage and Dropout2d(0.1) on the AFF skip features."""

    SCALES = MIMO_UNET_PLUS_SCALES

