"""Deblurring backbones, each at two scales (``paper`` and ``tiny``), with optional prior fusion.

Uniform convention (the trainer and evaluator rely on it):

* ``build_backbone(name, scale="tiny", prior_dim=256 | None)``; ``prior_dim=None`` is the baseline
  (no fusion layers at all).
* ``model(x, prior=None) -> list[Tensor]``: restored images ordered coarse to fine; the LAST is the
  full-resolution output. Single-output backbones return a one-element list. Outputs are in the
  same value range as the input (residual connections are inside the backbone).
* attributes: ``pad_multiple`` (H and W must be multiples of it), ``value_range`` (``"half"`` =
  [-0.5, 0.5] or ``"unit"`` = [0, 1]), ``prior_dim``, ``scale``, ``tile`` (``None`` or
  ``(tile_size, overlap)`` for backbones that infer on tiles, i.e. LoFormer), ``residual_outputs``
  (names of the layers whose output is added to the input image: :func:`zero_init_residual_outputs`),
  ``checkpoint_blocks`` (the block classes :mod:`models.activation_checkpointing` wraps).
"""
from __future__ import annotations

import torch
from torch import nn

from models.names import BACKBONES, SCALES, load


def build_backbone(name: str, scale: str = "tiny", prior_dim: int | None = 256) -> nn.Module:
    """The backbone registered as ``name`` in :data:`models.names.BACKBONES`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; allowed: {', '.join(BACKBONES)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    return load(BACKBONES[name].impl)(scale=scale, prior_dim=prior_dim)


def zero_init_residual_outputs(backbone: nn.Module) -> nn.Module:
    """Zero the weights (and biases) of ``backbone.residual_outputs``: the untrained model then returns
    its input exactly (every output = 0 + input), and training starts from the identity."""
    with torch.no_grad():
        for name in backbone.residual_outputs:
            for param in getattr(backbone, name).parameters():
                param.zero_()
    return backbone
