"""pipelines.evaluation.alignment: RealBlur 'authors' vs 'official' (ECC-aligned, masked) scoring."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from pipelines.evaluation import alignment
from pipelines.evaluation import image_metrics as metrics

SIZE = 256
# a known homography: ~0.5 degree rotation, sub-pixel translation, a little perspective
TRUE_H = np.array([[1.0, 0.01, 4.3], [-0.008, 1.0, -2.6], [1e-5, -2e-5, 1.0]])


@pytest.fixture(scope="module")
def sharp():
    return cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _warp(img: np.ndarray, h: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(
        img, h, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


@pytest.fixture(scope="module")
def misaligned(sharp):
    """The sharp image seen through TRUE_H (restored(p) = sharp(TRUE_H^-1 p))."""
    return _warp(sharp, TRUE_H)


def _project(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.c_[points, np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:]


def test_ecc_recovers_the_known_homography(sharp, misaligned):
    warp = alignment.ecc_homography(
        sharp.astype(np.float32) / 255, misaligned.astype(np.float32) / 255
    )
    corners = np.array([[0, 0], [SIZE - 1, 0], [0, SIZE - 1], [SIZE - 1, SIZE - 1], [128, 128]], float)
    err = np.abs(_project(warp.astype(np.float64), corners) - _project(TRUE_H, corners))
    assert err.max() < 0.25  # pixels


def test_official_alignment_raises_psnr_by_10db(sharp, misaligned):
    before = alignment.score_realblur(misaligned, sharp, "authors")
    after = alignment.score_realblur(misaligned, sharp, "official")
    assert after["mode"] == "official" and before["mode"] == "authors"
    assert after["psnr"] > before["psnr"] + 10.0
    assert after["ssim"] > before["ssim"] + 0.5
    assert after["ssim3d"] is None

    aligned, target, mask = alignment.align_official(misaligned, sharp)
    assert aligned.shape == target.shape == sharp.shape and mask.shape == sharp.shape[:2]
    assert aligned.dtype == np.float32 and mask.dtype == bool
    # valid = pixels q whose source TRUE_H q lies inside the restored frame (right/top bands fail)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    src = _project(TRUE_H, np.c_[xs.ravel(), ys.ravel()].astype(float)).reshape(SIZE, SIZE, 2)
    expected = np.all((src > -0.5) & (src < SIZE - 0.5), axis=2)
    assert not mask[:, -1].any() and not mask[0].any() and mask[:, 0].mean() > 0.9
    assert 0.9 < mask.mean() < 1.0
    assert np.mean(mask == expected) > 0.995
    assert not aligned[~mask].any() and not target[~mask].any()


def test_authors_mode_is_plain_metrics(sharp, misaligned):
    res = alignment.score_realblur(misaligned, sharp, "authors")
    assert res == {
        "psnr": metrics.psnr(misaligned, sharp),
        "ssim": metrics.ssim(misaligned, sharp),
        "ssim3d": metrics.ssim3d(misaligned, sharp),
        "mode": "authors",
    }


def test_masked_metrics_ignore_invalid_pixels(sharp):
    x = sharp.astype(np.float32) / 255
    mask = np.ones(sharp.shape[:2], bool)
    mask[:, :20] = False
    mask[-7:, :] = False
    garbage = x.copy()
    garbage[~mask] = np.random.default_rng(0).random((int((~mask).sum()), 3))
    # equal on the mask, wildly different off it: masked metrics see a perfect match
    assert alignment.masked_psnr(garbage, x, mask) == 100.0  # the PSNR cap (identical on the mask)
    assert alignment.masked_ssim(garbage, x, mask) == pytest.approx(1.0, abs=1e-12)
    assert metrics.psnr((garbage * 255).round().astype(np.uint8), sharp) < 30

    blurred = cv2.GaussianBlur(x, (0, 0), 1.5)
    noisy_outside = blurred.copy()
    noisy_outside[~mask] = garbage[~mask]
    assert alignment.masked_psnr(noisy_outside, x, mask) == alignment.masked_psnr(blurred, x, mask)
    assert alignment.masked_ssim(noisy_outside, x, mask) == alignment.masked_ssim(blurred, x, mask)
    # masked PSNR is the MSE over the masked values only
    d = (blurred.astype(np.float64) - x)[mask]
    assert alignment.masked_psnr(blurred, x, mask) == pytest.approx(-10 * math.log10(np.mean(d**2)))


def test_masked_ssim_matches_official_skimage_recipe(sharp, misaligned):
    """The official script: skimage full SSIM map on the masked images, times the mask, 5-pixel
    border dropped, per-channel masked mean, mean over channels (float64 here)."""
    aligned, target, mask = alignment.align_official(misaligned, sharp)
    _, smap = structural_similarity(
        target.astype(np.float64), aligned.astype(np.float64), channel_axis=-1,
        gaussian_weights=True, use_sample_covariance=False, data_range=1.0, full=True,
    )
    cr = np.repeat(mask[..., None], 3, axis=2).astype(np.float64)
    smap = (smap * cr)[5:-5, 5:-5]
    expected = np.mean(smap.sum(axis=(0, 1)) / cr[5:-5, 5:-5].sum(axis=(0, 1)))
    assert alignment.masked_ssim(aligned, target, mask) == pytest.approx(expected, abs=1e-9)


def test_intensity_match_removes_a_global_gain(sharp):
    x = sharp.astype(np.float32) / 255
    matched = alignment.intensity_match(0.8 * x, x)
    assert np.allclose(matched, x, atol=1e-5)


def test_mode_names_are_validated(sharp):
    with pytest.raises(ValueError, match="unknown RealBlur alignment mode 'ecc'.*authors.*official"):
        alignment.score_realblur(sharp, sharp, "ecc")
    with pytest.raises(ValueError, match="mask has no valid pixels"):
        alignment.masked_psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"mask shape \(4, 5\)"):
        alignment.masked_ssim(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.ones((4, 5), bool))


def test_ecc_failure_is_a_clear_error():
    flat = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(alignment.AlignmentError, match="ECC homography registration failed"):
        alignment.score_realblur(flat, flat, "official")
