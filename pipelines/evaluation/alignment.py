"""RealBlur scoring in two named modes.

- ``"authors"``: what the BlurDM authors report: no alignment, plain PSNR (BasicSR) and SSIM,
  with their 3-D SSIM alongside (see :mod:`pipelines.evaluation.image_metrics`).
- ``"official"``: the official RealBlur protocol (Rim et al., ECCV 2020): the restored image is
  intensity-matched to the sharp one (one least-squares gain), registered to it with an ECC
  homography (cv2.findTransformECC, MOTION_HOMOGRAPHY, 100 iterations, Gaussian pre-filter 5,
  on grey images), warped (cubic, reflected border), and scored with PSNR/SSIM restricted to the
  pixels that the warp fills from inside the restored image (the mask). Where ECC does not converge
  (a flat image, or a restoration so far from the sharp image that the correlation turns negative: an
  untrained or diverged model), the official script stops; :func:`score_realblur` with ``strict=False``
  (the evaluator's choice) scores that image unregistered instead (identity warp, full mask) and says so
  (``ecc: "failed"``), so that one image cannot end a whole evaluation.

Like the official script, the official mode works on float32 images in [0, 1] (data range 1).
"""
from __future__ import annotations

import cv2
import numpy as np

from models.names import SCORINGS
from pipelines.core.errors import InvalidInputError
from pipelines.evaluation import image_metrics

ALIGNMENT_MODES = tuple(SCORINGS)  # registered once (models/names.py)
ECC_ITERATIONS = 100
ECC_EPS = 0.0
ECC_GAUSS_FILTER = 5


class AlignmentError(InvalidInputError):
    """ECC registration failed (e.g. flat or unrelated images)."""


def _check_mode(mode: str) -> str:
    if mode not in ALIGNMENT_MODES:
        raise InvalidInputError(f"unknown RealBlur alignment mode {mode!r}; choose one of {ALIGNMENT_MODES}")
    return mode


def intensity_match(restored: np.ndarray, sharp: np.ndarray) -> np.ndarray:
    """Scale ``restored`` by the least-squares gain sum(sharp*restored)/sum(restored^2)."""
    denom = float(np.sum(restored.astype(np.float64) ** 2))
    if denom == 0.0:
        return restored.copy()
    gain = float(np.sum(sharp.astype(np.float64) * restored.astype(np.float64))) / denom
    return (gain * restored).astype(restored.dtype)


def ecc_homography(template: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """3x3 ECC homography mapping ``template`` (sharp) pixel coordinates into ``moving`` (restored).

    Both are HxWx3 float32 RGB images; ECC runs on their grey versions.
    """
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
    try:
        _, warp = cv2.findTransformECC(
            cv2.cvtColor(template, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(moving, cv2.COLOR_RGB2GRAY),
            warp,
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            ECC_GAUSS_FILTER,
        )
    except cv2.error as err:
        raise AlignmentError(f"ECC homography registration failed: {err}") from err
    return warp


def align_official(restored: np.ndarray, sharp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register ``restored`` to ``sharp`` as the official RealBlur evaluation does.

    Takes HxWx3 uint8 images. Returns ``(aligned_restored, sharp_masked, mask)``: the first two
    are HxWx3 float32 images on the [0, 1] scale with invalid pixels set to 0 (the aligned
    restored image is intensity-matched, so it may exceed 1), ``mask`` is an HxW bool array of
    the pixels the warp fills from inside the restored image.
    Raises :class:`AlignmentError` if ECC does not converge.
    """
    image_metrics.check_image_pair(restored, sharp)
    moving = restored.astype(np.float32) / 255.0
    target = sharp.astype(np.float32) / 255.0
    matched = intensity_match(moving, target)
    warp = ecc_homography(target, matched)
    height, width = target.shape[:2]
    aligned = cv2.warpPerspective(
        matched, warp, (width, height),
        flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT,
    )
    coverage = cv2.warpPerspective(
        np.ones((height, width), dtype=np.float32), warp, (width, height),
        flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    mask = coverage > 0.5
    return aligned * mask[..., None], target * mask[..., None], mask


def unregistered(restored: np.ndarray, sharp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`align_official` without the ECC warp (identity, every pixel valid): where ECC does not converge."""
    image_metrics.check_image_pair(restored, sharp)
    target = sharp.astype(np.float32) / 255.0
    matched = intensity_match(restored.astype(np.float32) / 255.0, target)
    return matched, target, np.ones(target.shape[:2], dtype=bool)


def _broadcast_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {shape}")
    if not mask.any():
        raise ValueError("mask has no valid pixels")
    return np.broadcast_to(mask[..., None], shape)


def masked_psnr(x: np.ndarray, y: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR over the valid pixels only: sum of squared errors on the mask / number of masked values; capped
    at :data:`pipelines.evaluation.image_metrics.MAX_PSNR_DB` like :func:`~pipelines.evaluation.image_metrics.psnr`."""
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    m = _broadcast_mask(mask, x.shape)
    diff = (x.astype(np.float64) - y.astype(np.float64))[m]
    return image_metrics.capped_psnr(float(np.mean(diff**2)), data_range)  # at most MAX_PSNR_DB, as psnr


def masked_ssim(x: np.ndarray, y: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """The official RealBlur masked SSIM.

    Both images are zeroed outside the mask, the per-channel Gaussian SSIM map (11x11, sigma 1.5)
    is computed, the 5-pixel image border is dropped, and each channel's map is averaged over
    the masked pixels only; the result is the mean over channels.
    """
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    m = _broadcast_mask(mask, x.shape).astype(np.float64)
    smap = image_metrics.ssim_map(x * m, y * m, data_range=data_range) * m
    half = image_metrics.WINDOW_SIZE // 2
    smap, m = smap[half:-half, half:-half], m[half:-half, half:-half]
    per_channel = smap.sum(axis=(0, 1)) / m.sum(axis=(0, 1))
    return float(per_channel.mean())


def score_realblur(restored: np.ndarray, sharp: np.ndarray, mode: str, strict: bool = True) -> dict:
    """Score one RealBlur pair under ``mode`` ("authors" or "official").

    Returns ``{"psnr", "ssim", "ssim3d", "mode"}`` (official: and ``"ecc"``, ``"converged"`` or ``"failed"``;
    ``strict`` raises :class:`AlignmentError` where ECC fails, otherwise the pair is scored unregistered).
    In "authors" mode these are the plain
    :func:`pipelines.evaluation.image_metrics.psnr`, :func:`~pipelines.evaluation.image_metrics.ssim` and
    :func:`~pipelines.evaluation.image_metrics.ssim3d`. In "official" mode psnr/ssim are the masked metrics after
    alignment and ``ssim3d`` is None (the official protocol defines no 3-D SSIM).
    """
    _check_mode(mode)
    image_metrics.check_image_pair(restored, sharp)
    if mode == "authors":
        return {
            "psnr": image_metrics.psnr(restored, sharp),
            "ssim": image_metrics.ssim(restored, sharp),
            "ssim3d": image_metrics.ssim3d(restored, sharp),
            "mode": mode,
        }
    try:
        aligned, target, mask = align_official(restored, sharp)
        ecc = "converged"
    except AlignmentError:
        if strict:
            raise
        aligned, target, mask = unregistered(restored, sharp)
        ecc = "failed"
    return {
        "psnr": masked_psnr(aligned, target, mask),
        "ssim": masked_ssim(aligned, target, mask),
        "ssim3d": None,
        "mode": mode,
        "ecc": ecc,
    }
