"""The loss a training stage minimises, as a module (what DDP wraps), in float32 or under bf16 autocast.

:class:`StageObjective` runs the model and the stage's loss (:mod:`pipelines.training.losses`) on one batch.
``train.precision: bf16``: the model's forward runs under ``torch.autocast`` (:func:`autocast`, bfloat16 on
CUDA and on the CPU); weights, gradients and optimiser state stay float32 (the master copy), and every loss is
computed in float32 from outputs cast back to float32. bf16 has float32's exponent range: no loss scaling.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from pipelines.training.losses import image_loss, latent_loss

PRECISIONS = ("fp32", "bf16")


def autocast_dtype(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op context for float32 (``dtype=None``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class StageObjective(nn.Module):
    """The training loss of a stage as a module (what DDP wraps): ``forward(blur, sharp, generator)``.

    ``kind="image"`` (stage1/stage3/baseline): :func:`pipelines.training.losses.image_loss` of the model's
    outputs. ``kind="latent"`` (stage2): Charbonnier between the diffusion prior's ``z_0`` and the
    frozen ``SE(blur, sharp)``. ``frozen`` submodules stay in eval mode whatever ``train()`` says.
    :attr:`draws_noise` / :meth:`start_noise`: the diffusion's start noise, which
    :func:`pipelines.training.step.accumulate` draws once for all micro-batches of a step.
    """

    def __init__(self, model: nn.Module, kind: str, eps: float = 1e-3, fft_weight: float = 0.1,
                 frozen: list[nn.Module] | None = None, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        if kind not in ("image", "latent"):
            raise ValueError(f"unknown objective kind {kind!r}")
        self.model, self.kind, self.eps, self.fft_weight = model, kind, eps, fft_weight
        self._frozen = list(frozen or [])
        self.autocast_dtype = autocast_dtype  # bf16: the forward under autocast, the loss in float32

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, blur: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None):
        if self.autocast_dtype is not None:  # mixed precision: forward in bf16, loss in float32
            if self.kind == "latent":
                with torch.no_grad():  # the frozen target in float32
                    target = self.model.sharp_encoder(blur, sharp)
            with autocast(blur.device, self.autocast_dtype):
                if self.kind == "latent":
                    z0 = self.model.prior(blur, generator=generator, noise=noise)
                else:
                    outputs = self.model(blur, sharp, generator, noise)
            if self.kind == "latent":
                return latent_loss(z0.float(), target, self.eps)
            return image_loss([o.float() for o in outputs], sharp.float(), self.eps, self.fft_weight)
        if self.kind == "latent":
            with torch.no_grad():
                target = self.model.sharp_encoder(blur, sharp)
            return latent_loss(self.model.prior(blur, generator=generator, noise=noise), target, self.eps)
        return image_loss(self.model(blur, sharp, generator, noise), sharp, self.eps, self.fft_weight)

    @property
    def draws_noise(self) -> bool:
        """Whether the forward draws the diffusion's start noise (stage 2 and stage 3)."""
        return self.kind == "latent" or self.model.prior_mode == "diffusion"

    def start_noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """The start noise :meth:`models.diffusion.DiffusionPrior.sample_noise` would draw for ``batch`` items
        (float32 on the generator's device)."""
        return self.model.prior.sample_noise(batch, generator)
