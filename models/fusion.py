"""Prior fusion (PFM): inject a 256-d prior vector into a feature map as ``x * k + v``.

Spec (shared/spec/blurdm-method.md): one ``Linear(256, 2C, bias=False)`` per modulated block maps
the prior to ``(k, v)``, each reshaped to ``(B, C, 1, 1)``; features become ``x * k + v`` (no
normalisation, no ``1 + k``). LoFormer uses the Linear *with* bias (``bias=True``).

Backbones built without a prior (the baseline) contain no fusion layers at all: use
:func:`make_fusion`, which returns ``None`` when ``prior_dim`` is ``None``, and :func:`fuse`, which
passes features through unchanged when the layer is absent.
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoder import PRIOR_DIM  # the paper-scale latent dimension (models.encoder.PRIOR_DIMS)


class PriorFusion(nn.Module):
    def __init__(self, channels: int, prior_dim: int = PRIOR_DIM, bias: bool = False):
        super().__init__()
        self.channels = channels
        self.proj = nn.Linear(prior_dim, 2 * channels, bias=bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        k, v = self.proj(prior).chunk(2, dim=1)
        shape = (prior.shape[0], self.channels) + (1,) * (x.dim() - 2)
        return x * k.reshape(shape) + v.reshape(shape)


def make_fusion(channels: int, prior_dim: int | None, bias: bool = False) -> PriorFusion | None:
    return None if prior_dim is None else PriorFusion(channels, prior_dim, bias=bias)


def fuse(layer: PriorFusion | None, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """Apply ``layer`` if the backbone has fusion layers; a prior is then required."""
    if layer is None:
        return x
    if prior is None:
        raise ValueError("this backbone was built with prior fusion layers: pass a prior of shape (B, 256)")
    return layer(x, prior)


def check_prior(model: nn.Module, x: torch.Tensor, prior: torch.Tensor | None) -> None:
    """Validate the ``prior`` argument of a backbone's forward against ``model.prior_dim``.

    A baseline (``prior_dim=None``) must get no prior; a fused model needs one of shape (B, prior_dim).
    """
    name = type(model).__name__
    if model.prior_dim is None:
        if prior is not None:
            raise ValueError(f"{name} was built without prior fusion (prior_dim=None) but was given a prior")
        return
    if prior is None:
        raise ValueError(f"{name} was built with prior fusion layers: pass a prior of shape (B, {model.prior_dim})")
    if tuple(prior.shape) != (x.shape[0], model.prior_dim):
        raise ValueError(f"{name}: prior must have shape ({x.shape[0]}, {model.prior_dim}), got {tuple(prior.shape)}")
