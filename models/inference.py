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

On top of it, how a :class:`models.deblur_model.DeblurModel` runs on an image (used by ``evaluate``,
``deblur``, ``profile`` and the trainer's validation):

* :func:`restore_tensor`: a tensor in the model's value range -> its full-resolution output, the prior
  (diffusion, or ``SE(blur, sharp)`` for stage 1 / the oracle) fed per window by
  :class:`PriorFedBackbone`; ``fast`` replays each window from a CUDA graph (:mod:`models.fast_inference`).
* :func:`restore_image`: one 8-bit RGB image -> the 8-bit output (clamped, rounded) and its time;
  :func:`from_uint8_image` / :func:`to_uint8_image` convert between 8-bit images and the value ranges.
* :func:`image_seed`: the noise seed of an image under an evaluation seed (independent of the other
  images, their order and the device); :func:`is_stochastic`: whether a model draws noise at all.
* :func:`pick_device`: ``auto`` / ``cpu`` / ``cuda`` -> the device a model runs on.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.fast_inference import fast_adapter, fast_available
from models.prior_fed import PriorFedBackbone

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


# ---------------------------------------------------------------------------------------------
# value ranges: 8-bit images <-> tensors

VALUE_RANGES = {"half": 0.5, "unit": 0.0}  # name -> offset subtracted from x / 255


def value_range_offset(value_range: str) -> float:
    """What a named value range subtracts from ``x / 255``; an unknown name is a ValueError."""
    if value_range not in VALUE_RANGES:
        raise ValueError(f"unknown value_range {value_range!r}; allowed: {', '.join(VALUE_RANGES)}")
    return VALUE_RANGES[value_range]


def from_uint8_image(array: np.ndarray, value_range: str = "half") -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> float32 tensor ``[3, H, W]`` in the given value range."""
    offset = value_range_offset(value_range)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"from_uint8_image: expected an (H, W, 3) uint8 array, got {array.shape} {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(torch.float32).div_(255.0)
    return tensor.sub_(offset) if offset else tensor


def to_uint8_image(tensor: torch.Tensor, value_range: str = "half") -> np.ndarray:
    """Float tensor ``[3, H, W]`` (or ``[1, 3, H, W]``) -> ``(H, W, 3)`` uint8: clamp to the range, x 255, round."""
    offset = value_range_offset(value_range)
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"to_uint8_image: expected a [3, H, W] tensor, got shape {list(tensor.shape)}")
    unit = tensor.detach().to("cpu", torch.float32) + offset
    out = unit.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


# ---------------------------------------------------------------------------------------------
# device and noise

def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_seed(eval_seed: int, name: str) -> int:
    """The noise seed of image ``name`` under evaluation seed ``eval_seed`` (63-bit, stable)."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    state = np.random.SeedSequence([int(eval_seed), digest]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def is_stochastic(model) -> bool:
    """Whether the model's output depends on a random draw (a diffusion prior feeds the backbone; the
    ``encoder`` control draws nothing)."""
    if getattr(model, "prior_mode", "none") != "diffusion":
        return False
    return bool(getattr(getattr(model, "prior", None), "process", None) is None
                or model.prior.process.estimator_names)


# ---------------------------------------------------------------------------------------------
# a DeblurModel on an image

def restore_tensor(model, blur: torch.Tensor, sharp: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, fast: bool = False) -> torch.Tensor:
    """Full-resolution output of a :class:`models.deblur_model.DeblurModel` for a (B, 3, H, W) tensor in
    its value range (padding / LoFormer tiles by :func:`restore_full`, one prior per window). ``sharp``
    only for a model whose prior is ``SE(blur, sharp)`` (stage 1 / oracle). ``fast``: on CUDA, each
    window is one CUDA-graph replay of prior + backbone (:mod:`models.fast_inference`)."""
    if getattr(model, "prior_mode", "none") == "sharp_encoder":
        if sharp is None:
            raise ValueError("this model's prior is SE(blur, sharp) (stage 1 / oracle): the sharp image is needed")
        if sharp.shape != blur.shape:
            raise ValueError(f"blur and sharp differ in shape: {tuple(blur.shape)} vs {tuple(sharp.shape)}")
        blur = torch.cat([blur, sharp], dim=1)
    adapter = PriorFedBackbone(model, generator)
    prior_fn = adapter.prior if getattr(model, "prior_mode", "none") != "none" else None
    if fast and fast_available(blur.device):
        adapter, prior_fn = fast_adapter(model, generator), None
    with torch.no_grad():
        return restore_full(adapter, blur, prior_fn=prior_fn)


class NonFiniteOutputError(ValueError):
    """The model's output holds NaN or Inf: an error, never a black image or a bogus score."""


def check_finite_output(out: torch.Tensor) -> None:
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise NonFiniteOutputError(f"the model output holds {bad} non-finite value(s) (NaN or Inf) of {out.numel()}; "
                                   "nothing was written for it")


@torch.no_grad()
def restore_image(model, blur: np.ndarray, sharp: np.ndarray | None = None, generator: torch.Generator | None = None,
                  device: str | torch.device = "cpu", fast: bool = False) -> tuple[np.ndarray, float]:
    """Restore one ``(H, W, 3)`` uint8 image at full resolution; return ``(uint8 output, seconds)``.

    ``sharp`` is used only by a model whose prior is ``SE(blur, sharp)`` (stage 1 / oracle). The
    output is clamped to the model's value range and rounded to 8 bit (what is scored and saved).
    """
    device = torch.device(device)
    x = from_uint8_image(blur, model.value_range)[None].to(device)
    s = from_uint8_image(sharp, model.value_range)[None].to(device) if sharp is not None else None
    _sync(device)
    start = time.perf_counter()
    out = restore_tensor(model, x, s, generator, fast=fast)
    check_finite_output(out)
    restored = to_uint8_image(out[0], model.value_range)  # copies to the CPU
    _sync(device)
    return restored, time.perf_counter() - start
