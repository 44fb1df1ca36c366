"""A :class:`models.deblur_model.DeblurModel` as the window restorer :func:`models.inference.restore_full` pads
and tiles: the blurred image (and, for a model whose prior is ``SE(blur, sharp)``, the sharp one stacked on it)
in, one prior per window. The eager path (:mod:`models.inference`) and the CUDA-graph path
(:mod:`models.fast_inference`) both build on it.
"""
from __future__ import annotations

import math

import torch


class PriorFedBackbone:
    """Adapter for :func:`models.inference.restore_full`, which pads / tiles one input tensor and calls
    ``model(window, prior_fn(window))``: here the input holds the blurred image (3 channels), or the
    blurred and sharp images stacked (6 channels) for a model whose prior is ``SE(blur, sharp)``, so
    both are padded and tiled identically and every window gets its own prior."""

    def __init__(self, model, generator: torch.Generator | None):
        self.model = model
        self.generator = generator
        self.tile = getattr(model, "tile", None)
        # the latent encoders pixel-unshuffle by 4: padded sizes must be multiples of 4 as well
        self.pad_multiple = math.lcm(int(getattr(model, "pad_multiple", 1)), 4)

    def __call__(self, window: torch.Tensor, prior: torch.Tensor | None) -> list[torch.Tensor]:
        return self.model.backbone(window[:, :3], prior)

    def prior(self, window: torch.Tensor) -> torch.Tensor | None:
        sharp = window[:, 3:] if window.shape[1] == 6 else None
        return self.model.prior_vector(window[:, :3], sharp, generator=self.generator)
