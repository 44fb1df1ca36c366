"""Full-resolution inference helpers: padding, cropping, tiling with one prior per tile, blending."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.backbones import build_backbone
from models.deblur_model import build_deblur_model
from models.inference import (
    crop_back,
    from_uint8_image,
    image_seed,
    pad_to_multiple,
    restore_full,
    restore_tensor,
    tile_starts,
    to_uint8_image,
)


class Identity(nn.Module):
    """Returns its input; records the shapes it saw and the priors it got."""

    def __init__(self, pad_multiple=1, tile=None):
        super().__init__()
        self.pad_multiple = pad_multiple
        self.tile = tile
        self.seen = []

    def forward(self, x, prior=None):
        assert x.shape[-2] % self.pad_multiple == 0 and x.shape[-1] % self.pad_multiple == 0
        self.seen.append((tuple(x.shape), prior))
        return [x[:, :, ::2, ::2], x.clone()]


class CountingPrior:
    def __init__(self):
        self.calls = []

    def __call__(self, window):
        self.calls.append(tuple(window.shape))
        return torch.full((window.shape[0], 256), float(len(self.calls)))


@pytest.mark.parametrize("size", [(37, 53), (1, 9), (64, 64), (31, 33)])
def test_pad_crop_round_trip_odd_sizes(size):
    x = torch.randn(2, 3, *size)
    padded, original = pad_to_multiple(x, 8)
    assert original == size
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - size[0] < 8 and padded.shape[-1] - size[1] < 8
    torch.testing.assert_close(crop_back(padded, original), x)


def test_pad_is_reflect_when_possible_and_replicate_otherwise():
    x = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7)
    padded, _ = pad_to_multiple(x, 8)
    torch.testing.assert_close(padded[..., 5, :7], x[..., 3, :])  # reflect: row 5 mirrors row 3
    small = torch.randn(1, 3, 3, 5)
    padded, _ = pad_to_multiple(small, 16)  # pad larger than the image: replicate
    assert padded.shape[-2:] == (16, 16)
    torch.testing.assert_close(padded[..., 15, 15], small[..., 2, 4])


def test_tile_starts_cover_axis_with_overlap():
    starts = tile_starts(1280, 384, 32)
    assert starts[0] == 0 and starts[-1] == 1280 - 384
    assert all(b - a <= 384 - 32 for a, b in zip(starts, starts[1:]))
    assert tile_starts(384, 384, 32) == [0]


def test_untiled_pads_to_multiple_and_crops_back():
    model = Identity(pad_multiple=8)
    x = torch.rand(2, 3, 37, 50)
    prior_fn = CountingPrior()
    out = restore_full(model, x, prior_fn)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)
    assert prior_fn.calls == [(2, 3, 40, 56)]  # one prior for the padded image
    assert model.seen[0][1].shape == (2, 256)


@pytest.mark.parametrize("shape, window", [((1, 3, 70, 45), (32, 32)), ((2, 3, 100, 100), (32, 32)),
                                           ((1, 3, 20, 30), (24, 32))])
def test_tiling_identity_reproduces_input(shape, window):
    """Windows are min(side, tile) (as the official LoFormer); a side shorter than the tile is padded
    only to the model's multiple (20 -> 24, 30 -> 32), never up to the tile."""
    model = Identity(pad_multiple=8, tile=(32, 8))
    x = torch.rand(*shape)
    out = restore_full(model, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    assert all(s[0][-2:] == window for s in model.seen)


def test_tiling_calls_prior_fn_once_per_tile():
    model = Identity(pad_multiple=8, tile=(32, 8))
    prior_fn = CountingPrior()
    x = torch.rand(2, 3, 70, 45)
    restore_full(model, x, prior_fn)
    # rows start at 0, 24, 38; columns at 0, 13 -> 6 tiles
    assert len(prior_fn.calls) == 6
    assert all(call == (2, 3, 32, 32) for call in prior_fn.calls)
    # each model call got the prior computed for its own tile
    assert [int(prior[0, 0]) for _, prior in model.seen] == list(range(1, 7))


class PriorOffset(nn.Module):
    """Adds the prior's first value to the image: shows which tile produced each pixel."""

    pad_multiple = 8
    tile = (32, 8)

    def forward(self, x, prior=None):
        return [x + prior[:, :1, None, None]]


def test_tiling_blends_residuals_over_the_overlaps():
    """Windows start at 0 and 24 along both axes (overlap 8); each adds its number to the image (its
    residual). Pixels covered by one window keep that window's residual; across an overlap the
    residuals cross-fade linearly (the official LoFormer blending)."""
    x = torch.zeros(1, 3, 56, 56)
    out = restore_full(PriorOffset(), x, CountingPrior())  # windows 1..4, row-major
    torch.testing.assert_close(out[..., :24, :24], torch.ones(1, 3, 24, 24))
    torch.testing.assert_close(out[..., 32:, 32:], torch.full((1, 3, 24, 24), 4.0))
    ramp = torch.linspace(0, 1, 8)
    torch.testing.assert_close(out[0, 0, 24:32, 0], 1 * (1 - ramp) + 3 * ramp)  # windows 1 and 3
    torch.testing.assert_close(out[0, 0, 0, 24:32], 1 * (1 - ramp) + 2 * ramp)  # windows 1 and 2


def test_tiling_fades_the_first_rows_of_a_single_window_side_as_the_official_code():
    """A side that is one window gets its first ``overlap`` residual rows / columns multiplied by
    linspace(0, 1, overlap): the official LoFormer rule, kept on purpose (kit README, "LoFormer tiling")."""
    x = torch.zeros(1, 3, 32, 56)  # one window along the rows, two along the columns
    out = restore_full(PriorOffset(), x, CountingPrior())
    ramp = torch.linspace(0, 1, 8)
    torch.testing.assert_close(out[0, 0, :8, 0], ramp)  # window 1, faded rows
    torch.testing.assert_close(out[0, 0, 8:, 0], torch.ones(24))
    torch.testing.assert_close(out[0, 0, 8:, 40], torch.full((24,), 2.0))


def test_tile_size_must_fit_pad_multiple():
    with pytest.raises(ValueError, match="pad_multiple"):
        restore_full(Identity(pad_multiple=16, tile=(40, 8)), torch.rand(1, 3, 50, 50))


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match="B, C, H, W"):
        restore_full(Identity(), torch.rand(3, 32, 32))


def test_tiny_fftformer_end_to_end():
    torch.manual_seed(0)
    model = build_backbone("fftformer", "tiny", 256).eval()
    prior_fn = CountingPrior()
    x = torch.rand(1, 3, 50, 70)
    out = restore_full(model, x, prior_fn)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert prior_fn.calls == [(1, 3, 64, 96)]


def test_tiny_loformer_end_to_end_tiled():
    torch.manual_seed(0)
    model = build_backbone("loformer", "tiny", 256).eval()
    size, overlap = model.tile
    prior_fn = CountingPrior()
    x = torch.rand(1, 3, 90, 100)
    out = restore_full(model, x, prior_fn)
    assert out.shape == x.shape and torch.isfinite(out).all()
    expected = len(tile_starts(90, size, overlap)) * len(tile_starts(100, size, overlap))
    assert len(prior_fn.calls) == expected and all(c == (1, 3, size, size) for c in prior_fn.calls)


def test_value_ranges_and_uint8_round_trip():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    for name, lo, hi in (("half", -0.5, 0.5), ("unit", 0.0, 1.0)):
        tensor = from_uint8_image(ramp, name)
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 16, 16)
        assert float(tensor.min()) == lo and float(tensor.max()) == hi
        np.testing.assert_array_equal(to_uint8_image(tensor, name), ramp)
        np.testing.assert_array_equal(to_uint8_image(tensor[None], name), ramp)
    out = to_uint8_image(torch.tensor([-1.0, 1.7, 0.4 / 255, 0.6 / 255]).view(1, 1, 4).repeat(3, 1, 1), "unit")
    assert out[0, :, 0].tolist() == [0, 255, 0, 1]  # clamped and rounded
    with pytest.raises(ValueError, match="value_range"):
        to_uint8_image(torch.zeros(3, 2, 2), "minus_one_one")


def test_image_seed_is_stable_and_distinct():
    assert image_seed(2023, "a.png") == image_seed(2023, "a.png")
    assert len({image_seed(s, n) for s in (0, 1) for n in ("a.png", "b.png")}) == 4
    assert 0 <= image_seed(2023, "a.png") < 2**63


def test_tiled_backbone_gets_one_prior_per_window_from_the_matching_sharp_window():
    """LoFormer restores on tiles: the oracle's SE sees the blurred AND sharp window of each tile."""
    torch.manual_seed(0)
    model = build_deblur_model({"backbone": "loformer", "scale": "tiny", "prior_mode": "sharp_encoder",
                                "sharp_encoder": True}).eval()
    size, _ = model.tile
    h, w = size + 6, size + 26  # two windows along each axis
    blur, sharp = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
    seen = []
    model.sharp_encoder.register_forward_hook(lambda module, args, output: seen.append(args))
    out = restore_tensor(model, blur, sharp)
    assert out.shape == (1, 3, h, w) and len(seen) == 4
    starts = [(top, left) for top in (0, h - size) for left in (0, w - size)]
    for (enc_blur, enc_sharp), (top, left) in zip(seen, starts):
        assert torch.equal(enc_blur, blur[..., top:top + size, left:left + size])
        assert torch.equal(enc_sharp, sharp[..., top:top + size, left:left + size])
