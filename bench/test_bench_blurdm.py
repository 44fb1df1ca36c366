"""One full BlurDM reverse chain (Blur Encoder + T steps of both estimators) on a 1x3x256x256 image."""
from __future__ import annotations

import pytest
import torch

from models.priors import build_prior


@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_blurdm_reverse_chain(benchmark, params, scale):
    prior = build_prior("blurdm", params.prior.T, scale).eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))

    def chain():
        with torch.inference_mode():
            return prior(x, generator=torch.Generator().manual_seed(2023))

    z0 = benchmark(chain)
    benchmark.extra_info.update(scale=scale, T=params.prior.T, size=[256, 256])
    assert z0.shape == (1, 256) and torch.isfinite(z0).all()
