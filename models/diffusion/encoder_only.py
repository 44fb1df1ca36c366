"""The ``encoder`` control prior: the Blur Encoder feeds the fusion layers directly, no diffusion.

``z_0 = c = BE(blur, blur)``: no noise, no estimators, no steps (``T`` is carried but unused). It is
trained with exactly the stages and budget of the diffusion priors (stage 2 fits ``c`` to the frozen
``SE(blur, sharp)``; stage 3 trains it jointly with the backbone), so comparing it with BlurDM separates
"an extra encoder that looks at the blurred image" from "the diffusion process". No published ablation
has this control.
"""
from __future__ import annotations

import torch

from models.diffusion.base import DiffusionProcess


class EncoderOnlyProcess(DiffusionProcess):
    name = "encoder"
    estimator_names = ()

    def start(self, c: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return c

    def reverse_step(self, t, z_t, predictions, c):
        self._check_t(t)
        return z_t

    def forward_marginal(self, z0, c, t, noise):
        """Not a diffusion: ``z_0`` at t = 0, the condition at every t > 0 (so the reverse chain, which
        keeps ``c``, inverts nothing; there is nothing to invert)."""
        self._check_t(t)
        return z0 if t == 0 else c

    def true_predictions(self, z0, c, t, noise):
        self._check_t(t)
        return {}

    def schedule(self):
        return {}
