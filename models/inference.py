"""Full-resolution inference as the authors run it (used by ``evaluate`` and ``deblur``).

* Backbones without ``tile``: reflect-pad the bottom/right edges to a multiple of
  ``model.pad_multiple``, run once, crop back.
* Backbones with ``tile = (size, overlap)`` (LoFormer): cut the image into ``size x size`` windows
  whose neighbours overlap by at least ``overlap`` pixels (the last window in each row/column is
  aligned with the image edge, so it may overlap more), restore each window with its OWN prior
  (``prior_fn`` is called once per window), and blend. Blending: each window's output is weighted by
  a separable linear ramp that rises over ``overlap`` pixels from every window edge
  (``min(1, (i + 0.5) / overlap, (size - i - 0.5) / overlap)`` along each axis) and the weighted sum
  is divided by the summed weights, so overlaps cross-fade and every pixel is a convex combination
  of the windows that cover it (an identity model reproduces its input). Images smaller than a
  window are padded up to it first.

The blur tensor must already be in the backbone's value range (``model.value_range``) and on the
model's device; put the model in eval mode first. A ``model`` with a ``restore_window(window)`` method
(:class:`models.fast_inference.FastPriorFedBackbone`, the CUDA-graph path) restores each padded image
or tile with it (prior included) instead of ``model(window, prior_fn(window))``. Works on batches (B, 3, H, W); each window of a
batch gets one prior per image.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PriorFn = Callable[[torch.Tensor], torch.Tensor]


def _pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    if pad_h == 0 and pad_w == 0:
        return x
    h, w = x.shape[-2:]
    # reflect needs the pad to be smaller than the image; fall back to edge replication otherwise
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom and right of (B, C, H, W) to multiples of ``multiple``; returns (padded, (H, W))."""
    if multiple < 1:
        raise ValueError(f"pad multiple must be >= 1, got {multiple}")
    h, w = x.shape[-2:]
    return _pad_bottom_right(x, -h % multiple, -w % multiple), (h, w)


def crop_back(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (H, W)``."""
    h, w = size
    return x[..., :h, :w]


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Window start offsets along one axis of ``length >= size``: stride ``size - overlap``, the last
    window aligned with the end."""
    if not 0 <= overlap < size:
        raise ValueError(f"tile overlap must be in [0, {size}), got {overlap}")
    if length < size:
        raise ValueError(f"axis of length {length} is shorter than the tile size {size}")
    stride = size - overlap
    return list(range(0, length - size, stride)) + [length - size]


def _ramp(size: int, overlap: int, device, dtype) -> torch.Tensor:
    i = torch.arange(size, device=device, dtype=dtype)
    if overlap == 0:
        return torch.ones(size, device=device, dtype=dtype)
    return torch.minimum((i + 0.5) / overlap, (size - i - 0.5) / overlap).clamp(max=1.0)


def _forward(model: nn.Module, x: torch.Tensor, prior_fn: PriorFn | None) -> torch.Tensor:
    restore_window = getattr(model, "restore_window", None)
    if restore_window is not None:  # a whole-window restorer (models.fast_inference: one CUDA graph replay)
        return restore_window(x)
    prior = prior_fn(x) if prior_fn is not None else None
    return model(x, prior)[-1]


def _restore_tiled(model: nn.Module, blur: torch.Tensor, prior_fn: PriorFn | None,
                   tile: tuple[int, int]) -> torch.Tensor:
    size, overlap = tile
    multiple = getattr(model, "pad_multiple", 1)
    if size % multiple:
        raise ValueError(f"tile size {size} is not a multiple of the model's pad_multiple {multiple}")
    h, w = blur.shape[-2:]
    x = _pad_bottom_right(blur, max(size - h, 0), max(size - w, 0))
    height, width = x.shape[-2:]
    ramp = _ramp(size, overlap, x.device, x.dtype)
    weight = ramp[:, None] * ramp[None, :]
    out = None
    weight_sum = torch.zeros(height, width, device=x.device, dtype=x.dtype)
    for top in tile_starts(height, size, overlap):
        for left in tile_starts(width, size, overlap):
            restored = _forward(model, x[..., top:top + size, left:left + size], prior_fn)
            if out is None:
                out = torch.zeros(*restored.shape[:-2], height, width, device=x.device, dtype=restored.dtype)
            out[..., top:top + size, left:left + size] += restored * weight
            weight_sum[top:top + size, left:left + size] += weight
    return crop_back(out / weight_sum, (h, w))


def restore_full(model: nn.Module, blur: torch.Tensor, prior_fn: PriorFn | None = None) -> torch.Tensor:
    """Restore a (B, 3, H, W) image of any size; returns the backbone's last (full-resolution) output,
    cropped to (H, W). ``prior_fn(blur_window) -> (B, prior_dim)`` supplies the prior (e.g. a BlurDM
    sampler), called on the padded image or on each tile."""
    if blur.dim() != 4:
        raise ValueError(f"restore_full expects a (B, C, H, W) tensor, got shape {tuple(blur.shape)}")
    tile = getattr(model, "tile", None)
    with torch.no_grad():
        if tile is not None:
            return _restore_tiled(model, blur, prior_fn, tile)
        padded, size = pad_to_multiple(blur, getattr(model, "pad_multiple", 1))
        return crop_back(_forward(model, padded, prior_fn), size)
