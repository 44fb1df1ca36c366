"""Build a diffusion prior by name: ``build_prior("blurdm" | "rddm" | "ddpm", T, scale)``.

Every prior is a :class:`models.diffusion.DiffusionPrior` (Blur Encoder + estimators + process) with
``forward(blur, generator=None, noise=None) -> (B, 256)``. ``none`` (no prior) and ``oracle`` (the
stage-1 Sharp Encoder ``SE(blur, sharp)`` at test time) are not diffusion priors: the trainer handles them.
"""
from __future__ import annotations

from models.diffusion import PROCESSES, DiffusionPrior
from models.diffusion.base import ESTIMATOR_DEPTH, check_T

def build_prior(name: str, T: int = 5, scale: str = "tiny") -> DiffusionPrior:
    if name not in PROCESSES:
        raise ValueError(f"unknown diffusion prior {name!r}; allowed: {', '.join(PROCESSES)}")
    if scale not in ESTIMATOR_DEPTH:
        raise ValueError(f"unknown prior scale {scale!r}; allowed: {', '.join(ESTIMATOR_DEPTH)}")
    return DiffusionPrior(PROCESSES[name](check_T(T)), scale=scale)
