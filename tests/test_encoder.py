"""Latent encoder (SE / BE): parameter counts against the spec, shapes, input checks."""
from __future__ import annotations

import pytest
import torch

from models.costs import count_params
from models.encoder import LatentEncoder, blur_encoder, sharp_encoder


@pytest.mark.parametrize(("build", "expected"), [(sharp_encoder, 1.148e6), (blur_encoder, 1.147e6)])
def test_paper_param_counts_match_spec(build, expected):
    n = count_params(build("paper"))
    assert abs(n - expected) / expected < 0.01, n


def test_sharp_encoder_has_batchnorm_blur_encoder_not():
    def has_bn(m):
        return any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())

    assert has_bn(sharp_encoder("tiny")) and not has_bn(blur_encoder("tiny"))
    # the only parameter difference between SE and BE is BatchNorm (2 per block x 6 blocks x 64 x 2)
    assert count_params(sharp_encoder("paper")) - count_params(blur_encoder("paper")) == 2 * 6 * 64 * 2


@pytest.mark.parametrize("scale, dim", [("paper", 256), ("tiny", 32)])
def test_output_is_one_latent_per_image_of_the_scale_dimension(scale, dim):
    enc = LatentEncoder(scale=scale, batchnorm=scale == "tiny").eval()
    a, b = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        out = enc(a, b)
    assert out.shape == (2, dim) and enc.out_dim == dim
    assert torch.isfinite(out).all()


def test_tiny_is_smaller_and_depends_on_both_inputs():
    enc = blur_encoder("tiny")
    assert count_params(enc) < count_params(blur_encoder("paper")) / 3
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(enc(a, b), enc(a, a))
        assert not torch.allclose(enc(a, b), enc(b, b))


@pytest.mark.parametrize("hw", [(15, 16), (16, 18), (6, 6)])
def test_size_not_multiple_of_4_raises(hw):
    x = torch.rand(1, 3, *hw)
    with pytest.raises(ValueError, match="multiples of 4"):
        blur_encoder("tiny")(x, x)


def test_bad_inputs_raise():
    enc = blur_encoder("tiny")
    with pytest.raises(ValueError, match="same shape"):
        enc(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="allowed: paper, tiny"):
        LatentEncoder(scale="huge")
