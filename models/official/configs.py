"""The official configurations of the conformance kit and the errors of an official import.

Each kit configuration names our network that computes the official function (a backbone of
:data:`models.names.BACKBONES` at the ``paper`` scale, with or without the BlurDM prior) and the input
range the official test code feeds it (kit README, "Inputs and value ranges").
"""
from __future__ import annotations

from dataclasses import dataclass

from models.names import BACKBONES

SCALE = "paper"
OFFICIAL_T = 5  # the released BlurDM models run a 5-step chain
SHOWN = 5  # how many keys an error lists per kind of mismatch


class OfficialCheckpointError(ValueError):
    """An official checkpoint cannot be read, or its keys or shapes do not fit the network."""


@dataclass(frozen=True)
class OfficialConfig:
    name: str  # the kit's configuration name
    backbone: str  # ours (models.names.BACKBONES)
    prior: str | None  # None or "blurdm"
    value_range: str  # the official input range: "unit" [0, 1] or "half" [-0.5, 0.5]
    official: str  # the official class


OFFICIAL_CONFIGS: dict[str, OfficialConfig] = {c.name: c for c in (
    OfficialConfig("mimo_unet", "mimo_unet", None, "unit", "chosj95/MIMO-UNet MIMOUNet()"),
    OfficialConfig("mimo_unet_plus", "mimo_unet_plus", None, "unit", "chosj95/MIMO-UNet MIMOUNetPlus()"),
    OfficialConfig("mimo_unet_blurdm", "mimo_unet", "blurdm", "half",
                   "BlurDM MIMOUNetPlusPrior(num_res=8) + LatentExposureDiffusion()"),
    OfficialConfig("mimo_unet_plus_blurdm", "mimo_unet_plus", "blurdm", "half",
                   "BlurDM MIMOUNetPlusPrior() + LatentExposureDiffusion()"),
    OfficialConfig("stripformer", "stripformer", None, "half", "pp00704831/Stripformer Stripformer()"),
    OfficialConfig("stripformer_blurdm", "stripformer", "blurdm", "half",
                   "BlurDM StripformerPrior() + LatentExposureDiffusion(total_timestamps=5)"),
    OfficialConfig("fftformer", "fftformer", None, "unit", "kkkls/FFTformer fftformer()"),
    OfficialConfig("fftformer_blurdm", "fftformer", "blurdm", "unit",
                   "BlurDM fftformer_prior() + LatentExposureDiffusion(total_timestamps=5)"),
    OfficialConfig("loformer_s", "loformer", None, "unit", "INVOKERer/LoFormer LoFormer (LoFormer-S network_g)"),
    OfficialConfig("loformer_s_blurdm", "loformer", "blurdm", "unit",
                   "BlurDM LoFormerPrior() + LatentExposureDiffusion(total_timestamps=5)"),
)}


def official_config(backbone: str, prior: str | None = None) -> OfficialConfig:
    """The official configuration of our ``backbone`` with ``prior`` (``None``/``"none"`` or ``"blurdm"``)."""
    prior = None if prior in (None, "none") else prior
    for config in OFFICIAL_CONFIGS.values():
        if config.backbone == backbone and config.prior == prior:
            return config
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    raise ValueError(f"no official {backbone} model with prior {prior!r}: the official priors are none and 'blurdm'")


def resolve_config(config_or_backbone: str, with_blurdm: bool) -> OfficialConfig:
    """A kit configuration name (``loformer_s_blurdm``), or our backbone name plus whether the BlurDM
    module comes along."""
    if config_or_backbone in OFFICIAL_CONFIGS:
        config = OFFICIAL_CONFIGS[config_or_backbone]
        if with_blurdm != (config.prior == "blurdm"):
            raise ValueError(f"configuration {config.name} {'needs' if config.prior else 'takes no'} BlurDM module weights")
        return config
    return official_config(config_or_backbone, "blurdm" if with_blurdm else None)


def official_spec(config: OfficialConfig) -> dict:
    """The model spec (:mod:`models.deblur_model`) of an imported official model."""
    prior = config.prior is not None
    return {"backbone": config.backbone, "scale": SCALE, "prior_mode": "diffusion" if prior else "none",
            "prior": config.prior, "T": OFFICIAL_T if prior else None, "fusion": prior, "sharp_encoder": False,
            "value_range": config.value_range}
