"""BlurDM: the blur diffusion (spec: shared/spec/blurdm-method.md, "The blur diffusion").

Constants (T = 5 shown):

* ``betas = linspace(0, 0.02, T)`` used as variances -> [0, .005, .010, .015, .020]
* ``alphas = linspace(1, 2, T+1)`` (exposure lengths alpha_0..alpha_T) -> [1.0, 1.2, ..., 2.0]
* ``beta_bar_t = sqrt(sum_{i=1..t} (alpha_{i-1}/alpha_t)^2 betas[i-1])``, ``beta_bar_0 = 0``
  -> [0, .0606, .1023, .1419, .1803] for t = 1..5
* ``k_t = alpha_t beta_bar_t / alpha_{t-1} - beta_bar_{t-1}`` -> [0, .0707, .0563, .0573, .0585]

Forward (one noise draw shared by all steps): ``z_t = mu_t + beta_bar_t eps``, ``mu_0 = z_0`` and
``mu_t = (alpha_{t-1} mu_{t-1} + e_t) / alpha_t`` with ``e_t`` the blur residual accumulated over
``[alpha_{t-1}, alpha_t]``. Reverse (deterministic): ``z_T = c + beta_bar_T eps``,
``z_{t-1} = (alpha_t z_t - e_hat) / alpha_{t-1} - k_t eps_hat``. With the true ``e_t`` and ``eps`` it
returns exactly ``mu_{t-1} + beta_bar_{t-1} eps``. For T = 1, betas = [0]: no noise at all.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.diffusion.base import DiffusionProcess


class BlurDMProcess(DiffusionProcess):
    name = "blurdm"
    estimator_names = ("residual", "noise")

    def __init__(self, T: int = 5, beta_max: float = 0.02, alpha_max: float = 2.0):
        super().__init__(T)
        T = self.T
        betas = np.linspace(0.0, beta_max, T, dtype=np.float64)
        alphas = np.linspace(1.0, alpha_max, T + 1, dtype=np.float64)
        beta_bar = np.zeros(T + 1)
        for t in range(1, T + 1):
            i = np.arange(1, t + 1)
            beta_bar[t] = np.sqrt(np.sum((alphas[i - 1] / alphas[t]) ** 2 * betas[i - 1]))
        k = np.zeros(T + 1)  # k[0] unused
        k[1:] = alphas[1:] * beta_bar[1:] / alphas[:-1] - beta_bar[:-1]
        self.betas = betas.tolist()
        self.alphas = alphas.tolist()
        self.beta_bar = beta_bar.tolist()
        self.k = k.tolist()

    def start(self, c: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return c + self.beta_bar[self.T] * noise

    def reverse_step(self, t, z_t, predictions, c):
        self._check_t(t)
        a_t, a_prev = self.alphas[t], self.alphas[t - 1]
        return (a_t * z_t - predictions["residual"]) / a_prev - self.k[t] * predictions["noise"]

    # --- forward process (tests, training-free checks) ---------------------------------------------
    def residuals(self, z0: torch.Tensor, c: torch.Tensor, residuals: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """``[e_1, ..., e_T]``. Default: the exposure beyond ``alpha_0`` sees one constant latent ``b``
        chosen so that ``mu_T = c``, i.e. ``e_t = (alpha_t - alpha_{t-1}) b`` with
        ``b = (alpha_T c - alpha_0 z0) / (alpha_T - alpha_0)``."""
        if residuals is not None:
            if len(residuals) != self.T:
                raise ValueError(f"BlurDM with T={self.T} needs {self.T} residuals e_1..e_T, got {len(residuals)}")
            return list(residuals)
        a = self.alphas
        b = (a[self.T] * c - a[0] * z0) / (a[self.T] - a[0])
        return [(a[t] - a[t - 1]) * b for t in range(1, self.T + 1)]

    def mean(self, z0, c, t, residuals=None) -> torch.Tensor:
        """``mu_t`` (the partially blurred latent)."""
        self._check_t(t)
        e = self.residuals(z0, c, residuals)
        mu = z0
        for s in range(1, t + 1):
            mu = (self.alphas[s - 1] * mu + e[s - 1]) / self.alphas[s]
        return mu

    def forward_marginal(self, z0, c, t, noise, residuals=None):
        return self.mean(z0, c, t, residuals) + self.beta_bar[t] * noise

    def true_predictions(self, z0, c, t, noise, residuals=None):
        self._check_t(t)
        if t < 1:
            raise ValueError("true_predictions needs t >= 1 (there is no step into t = 0 from below)")
        return {"residual": self.residuals(z0, c, residuals)[t - 1], "noise": noise}

    def schedule(self):
        return {"betas": self.betas, "alphas": self.alphas, "beta_bar": self.beta_bar, "k": self.k}
