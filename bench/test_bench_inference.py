"""Full-image 720p (1x3x720x1280) inference of the tiny MIMO-UNet, as evaluation runs it
(models.inference.restore_tensor: padding to the backbone's multiple), without and with BlurDM."""
from __future__ import annotations

import pytest
import torch

from models.deblur_model import build_deblur_model
from models.inference import restore_tensor

SPECS = {
    "baseline": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "none"},
    "blurdm": {"backbone": "mimo_unet", "scale": "tiny", "prior_mode": "diffusion", "prior": "blurdm", "T": 5},
}


@pytest.mark.parametrize("variant", list(SPECS))
def test_inference_720p_mimo_unet_tiny(benchmark, variant):
    model = build_deblur_model(SPECS[variant]).eval()
    x = torch.rand(1, 3, 720, 1280, generator=torch.Generator().manual_seed(0)) - 0.5

    def infer():
        with torch.inference_mode():
            return restore_tensor(model, x, generator=torch.Generator().manual_seed(2023))

    out = benchmark.pedantic(infer, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(variant=variant, size=[720, 1280])
    assert out.shape[-2:] == (720, 1280)
