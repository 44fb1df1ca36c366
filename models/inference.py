"""Full-resolution inference as the authors run it (used by ``evaluate`` and ``deblur``).

* Backbones without ``tile``: reflect-pad the bottom/right edges to a multiple of
  ``model.pad_multiple``, run once, crop back.
* Backbones with ``tile = (size, overlap)`` (LoFormer) run as the official LoFormer test code and the
  BlurDM LoFormer predict script do (``train_size`` 384, overlap 32; facts read from the public code):
  windows of ``k = min(side, size)`` along each axis (an image side shorter than the window is one
  window; nothing is padded up to ``size``), starting at ``0, s, 2s, ...`` (``s = k - overlap``) while
  the window ends before the image edge, plus one last window aligned with the edge
  (:func:`tile_starts`), row-major; each window is restored with its OWN prior (``prior_fn`` is called
  once per window). Blending: each window's RESIDUAL (output - input) is multiplied by separable
  weights (:func:`official_blend_weights`: linear ramps ``linspace(0, 1, n)`` in float32 over the
  overlaps), summed in a float32 buffer (as the official code: float64 runs round the blended
  residual to float32) and added to the input, with no normalisation. The weights
  sum to 1 along an axis wherever windows overlap regularly (GoPro's 1280x720: everywhere), but as in
  the official code a side that is one window (<= 384, e.g. a 64x64 crop) has the residual of its
  first ``overlap`` rows / columns faded in from 0. A side shorter than the window that is not a
  multiple of ``model.pad_multiple`` is reflect-padded at the bottom / right to one (the official code
  would fail there) and the output cropped back.

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


def official_blend_weights(length: int, size: int, overlap: int, starts: list[int]) -> list[torch.Tensor]:
    """The official LoFormer blending weights along one axis of ``length``: one float64 vector of
    ``size`` per window start (``starts`` from :func:`tile_starts`), to multiply that window's residual.

    With ``s = size - overlap``, ``n = (length - overlap - 1) // s + 1`` windows and
    ``e = n * s + 2 * overlap - length`` (the overlap of the last two windows; ``overlap`` for a single
    window), ``up(m) = linspace(0, 1, m)`` and ``down(m) = linspace(1, 0, m)`` (float32), a window
    starting at ``a`` gets: ``up(overlap)`` on its first ``overlap`` entries if it is neither the first
    nor the last; ``down(overlap)`` on its last ``overlap`` entries if ``a + 2 size - e < length``;
    ``up(e)`` on its first ``e`` entries if it is the last (``a + size == length``, so also a single
    window); ``down(e)`` on its last ``e`` entries if ``a + 2 size - e == length`` (the one before the
    last). A window no longer than the overlap (a side of <= 32 pixels; the official code has no
    defined result there) gets weight 1.
    """
    if overlap < 1:
        raise ValueError(f"the official blending needs an overlap of at least 1 pixel, got {overlap}")
    if size <= overlap:
        return [torch.ones(size, dtype=torch.float64) for _ in starts]
    stride = size - overlap
    count = (length - overlap - 1) // stride + 1
    last = count * stride + 2 * overlap - length

    def ramp(first: float, end: float, n: int) -> torch.Tensor:
        return torch.linspace(first, end, n, dtype=torch.float32).to(torch.float64)

    weights = []
    for start in starts:
        weight = torch.ones(size, dtype=torch.float64)
        if start != 0 and start + size != length:
            weight[:overlap] *= ramp(0.0, 1.0, overlap)
        if start + 2 * size - last < length:
            weight[-overlap:] *= ramp(1.0, 0.0, overlap)
        if start + size == length:
            weight[:last] *= ramp(0.0, 1.0, last)
        if start + 2 * size - last == length:
            weight[-last:] *= ramp(1.0, 0.0, last)
        weights.append(weight)
    return weights


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
    x = _pad_bottom_right(blur, -h % multiple if h < size else 0, -w % multiple if w < size else 0)
    height, width = x.shape[-2:]
    rows_k, cols_k = min(height, size), min(width, size)
    rows = [0] if rows_k <= overlap else tile_starts(height, rows_k, overlap)
    cols = [0] if cols_k <= overlap else tile_starts(width, cols_k, overlap)
    row_weights = official_blend_weights(height, rows_k, overlap, rows)
    col_weights = official_blend_weights(width, cols_k, overlap, cols)
    residual_sum = None
    for top, row_weight in zip(rows, row_weights):
        for left, col_weight in zip(cols, col_weights):
            window = x[..., top:top + rows_k, left:left + cols_k]
            restored = _forward(model, window, prior_fn)
            if residual_sum is None:  # float32, as the official buffer (torch.zeros' default dtype)
                residual_sum = torch.zeros(*restored.shape[:-2], height, width, device=x.device, dtype=torch.float32)
            residual = restored - window[:, :restored.shape[1]]  # a 6-channel window: blur + sharp (oracle)
            row_weight_ = row_weight.to(device=x.device, dtype=restored.dtype)[:, None]
            col_weight_ = col_weight.to(device=x.device, dtype=restored.dtype)[None, :]
            residual_sum[..., top:top + rows_k, left:left + cols_k] += residual * row_weight_ * col_weight_
    restored_image = x[:, :residual_sum.shape[1]] + residual_sum
    return crop_back(restored_image.to(restored.dtype), (h, w))


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
