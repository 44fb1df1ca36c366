"""DDPM prior (ablation): Gaussian diffusion of the latent ``z_0`` conditioned on ``c``, as a latent
diffusion prior is done in DiffIR (Xia et al., "DiffIR: Efficient Diffusion Model for Image
Restoration", ICCV 2023), the published latent-DDPM prior for restoration that BlurDM's ablation follows.

* ``c`` enters only through the estimator input (``concat(c, t/T, z_t)``); the chain starts from PURE
  noise ``z_T = eps ~ N(0, I)``.
* Schedule: linear betas ``beta_t = linspace(0.1, 0.99, T)`` (DiffIR's ``linear_start`` /
  ``linear_end``), ``abar_t = prod_{i<=t} (1 - beta_i)``; forward ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``.
* ONE estimator, ``z0``: it predicts the clean latent (DiffIR's x0 parameterisation), not the noise.
* Reverse step = the posterior mean ``q(z_{t-1} | z_t, z0_hat)`` with no fresh noise (deterministic):
  ``z_{t-1} = c1_t z0_hat + c2_t z_t``, ``c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``,
  ``c2_t = (1 - abar_{t-1}) sqrt(1 - beta_t) / (1 - abar_t)``. At ``t = 1`` (``abar_0 = 1``) this is
  ``z0_hat`` itself, so the prior is the estimator's last z0 prediction.
* Trained through the whole chain (stage 2's latent loss on the final ``z_0``), like every prior here.

Why not noise prediction from pure noise: with so few steps, ``z0 = (z_t - sqrt(1 - abar) eps_hat) /
sqrt(abar)`` divides the noise estimator's error by ``sqrt(abar_T)`` (~1e-2), and the prior collapsed
(z0 error ~60 against ~0.3 for BlurDM, measured). Predicting z0 keeps every coefficient <= 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.diffusion.base import DiffusionProcess

BETA_START, BETA_END = 0.1, 0.99


def linear_betas(T: int, start: float = BETA_START, end: float = BETA_END) -> np.ndarray:
    """``beta_1..beta_T`` evenly spaced from ``start`` to ``end`` (T = 1: ``[start]``)."""
    return np.linspace(start, end, T, dtype=np.float64)


class DDPMProcess(DiffusionProcess):
    name = "ddpm"
    estimator_names = ("z0",)

    def __init__(self, T: int = 5, beta_start: float = BETA_START, beta_end: float = BETA_END):
        super().__init__(T)
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"DDPM betas must satisfy 0 < start <= end < 1, got {beta_start}, {beta_end}")
        betas = linear_betas(self.T, beta_start, beta_end)
        abar = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
        self.betas = [0.0] + betas.tolist()
        self.alpha_bar = abar.tolist()
        # z_{t-1} = coef_z0[t] * z0_hat + coef_z[t] * z_t  (posterior mean)
        self.coef_z0 = [0.0] + (betas * np.sqrt(abar[:-1]) / (1.0 - abar[1:])).tolist()
        self.coef_z = [0.0] + ((1.0 - abar[:-1]) * np.sqrt(1.0 - betas) / (1.0 - abar[1:])).tolist()

    def start(self, c: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def reverse_step(self, t, z_t, predictions, c):
        self._check_t(t)
        return self.coef_z0[t] * predictions["z0"] + self.coef_z[t] * z_t

    def forward_marginal(self, z0, c, t, noise):
        self._check_t(t)
        ab = self.alpha_bar[t]
        return math.sqrt(ab) * z0 + math.sqrt(1.0 - ab) * noise

    def true_predictions(self, z0, c, t, noise):
        """The ``z0`` input for which the posterior-mean step lands on the shared-noise marginal
        ``z_{t-1}``: ``z0`` itself at ``t = 1``; for ``t > 1`` it also carries the part of the noise
        that the posterior mean would otherwise shrink away."""
        self._check_t(t)
        target = self.forward_marginal(z0, c, t - 1, noise)
        z_t = self.forward_marginal(z0, c, t, noise)
        return {"z0": (target - self.coef_z[t] * z_t) / self.coef_z0[t]}

    def schedule(self):
        return {"betas": self.betas, "alpha_bar": self.alpha_bar, "coef_z0": self.coef_z0, "coef_z": self.coef_z}
