"""Validation during training: PSNR on the held-out split of the TRAINING pairs, never test data.

:func:`score_validation` runs the model exactly as the evaluation does (:func:`models.inference.restore_tensor`:
padding, LoFormer tiles, the per-image noise seed), so the validation PSNR of a run is comparable to its test
scores; stage 2 also reports its latent loss and :func:`latent_r2`. :func:`sample_image` is the ``sample.png``
of a run.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from models.inference import image_seed, pad_to_multiple, restore_tensor, to_uint8_image
from pipelines.evaluation.image_metrics import psnr
from pipelines.training.losses import latent_loss

SAMPLE_CROP = 128


@torch.no_grad()
def score_validation(model: nn.Module, dataset, device: torch.device, seed: int, latent: bool = False) -> dict:
    """Mean PSNR (8-bit RGB) over ``dataset`` with the evaluator's full-resolution inference
    (:func:`models.inference.restore_tensor`: padding, LoFormer tiles, per-image noise seed
    :func:`models.inference.image_seed`) and, with ``latent``, the stage-2 latent loss and
    :func:`latent_r2`, how much of the spread of the target ``SE(blur, sharp)`` the prior's ``z_0``
    explains (1 = exact, 0 = no better than the mean target, < 0 = worse)."""
    was_training = model.training
    model.eval()
    psnrs, latents, z0s, targets = [], [], [], []
    try:
        for i in range(len(dataset)):
            item = dataset[i]
            blur = item["blur"][None].to(device)
            sharp = item["sharp"][None].to(device)
            gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
            out = restore_tensor(model, blur, sharp if model.prior_mode == "sharp_encoder" else None, gen)
            psnrs.append(psnr(to_uint8_image(out[0], model.value_range),
                              to_uint8_image(item["sharp"], model.value_range)))
            if latent:
                multiple = math.lcm(int(model.pad_multiple), 4)
                b, s = pad_to_multiple(blur, multiple)[0], pad_to_multiple(sharp, multiple)[0]
                gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
                z0, target = model.prior(b, generator=gen), model.sharp_encoder(b, s)
                latents.append(float(latent_loss(z0, target)))
                z0s.append(z0)
                targets.append(target)
    finally:
        model.train(was_training)
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"psnr": float(np.mean(finite)) if finite else None,
            "latent_loss": float(np.mean(latents)) if latents else None,
            "latent_r2": latent_r2(torch.cat(z0s), torch.cat(targets)) if len(z0s) > 1 else None,
            "images": len(psnrs)}


def latent_r2(prediction: torch.Tensor, target: torch.Tensor) -> float | None:
    """Coefficient of determination of ``prediction`` for ``target`` (both (N, D)), pooled over the D
    latent dimensions: ``1 - sum((pred - target)^2) / sum((target - mean_over_N(target))^2)``. The
    trivial predictor (the mean target) scores 0. ``None`` when the targets do not vary."""
    target = target.double()
    spread = float(((target - target.mean(dim=0, keepdim=True)) ** 2).sum())
    if spread <= 0:
        return None
    return 1.0 - float(((prediction.double() - target) ** 2).sum()) / spread


@torch.no_grad()
def sample_image(model: nn.Module, item: dict, device: torch.device, seed: int) -> np.ndarray:
    """``blur | restored | sharp`` of a centre crop of one validation item, as HxWx3 uint8."""
    was_training = model.training
    model.eval()
    try:
        blur, sharp = item["blur"], item["sharp"]
        h, w = blur.shape[-2:]
        ch, cw = min(h, SAMPLE_CROP), min(w, SAMPLE_CROP)
        top, left = (h - ch) // 2, (w - cw) // 2
        blur, sharp = blur[:, top:top + ch, left:left + cw], sharp[:, top:top + ch, left:left + cw]
        gen = torch.Generator().manual_seed(image_seed(seed, item["name"]))
        out = restore_tensor(model, blur[None].to(device),
                             sharp[None].to(device) if model.prior_mode == "sharp_encoder" else None, gen)
        return np.concatenate([to_uint8_image(t, model.value_range) for t in (blur, out[0], sharp)], axis=1)
    finally:
        model.train(was_training)
