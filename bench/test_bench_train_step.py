"""One optimisation step (forward, stage-3 image loss, backward, Adam) per tiny backbone + BlurDM prior,
at the training batch size and crop of the active params profile."""
from __future__ import annotations

import math

import pytest
import torch

from models.backbones import BACKBONES
from models.deblur_model import build_deblur_model
from pipelines.training.losses import image_loss


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_train_step_tiny(benchmark, params, backbone):
    spec = {"backbone": backbone, "scale": "tiny", "prior_mode": "diffusion", "prior": params.prior.name,
            "T": params.prior.T}
    model = build_deblur_model(spec).train()
    multiple = math.lcm(int(model.pad_multiple), 4)
    crop = math.ceil(params.data.crop_size / multiple) * multiple
    batch = params.train.batch_size
    generator = torch.Generator().manual_seed(0)
    blur = torch.rand(batch, 3, crop, crop, generator=generator)
    sharp = torch.rand(batch, 3, crop, crop, generator=generator)
    if model.value_range == "half":
        blur, sharp = blur - 0.5, sharp - 0.5
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=params.train.lr)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = image_loss(model(blur, generator=torch.Generator().manual_seed(1)), sharp,
                          eps=params.train.charbonnier_eps, fft_weight=params.train.fft_loss_weight)
        loss.backward()
        optimizer.step()
        return loss.item()

    loss = benchmark(step)
    benchmark.extra_info.update(backbone=backbone, batch=batch, crop=crop, prior=spec["prior"], T=spec["T"])
    assert math.isfinite(loss)
