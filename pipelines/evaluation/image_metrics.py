"""Image-quality metrics: the ONE home for PSNR, SSIM, 3-D SSIM and LPIPS in this project.

Every function takes a pair of HxWx3 ``uint8`` RGB arrays ``(restored, sharp)``: evaluation clamps
and rounds network outputs to 8 bit before scoring, as the authors do.

- :func:`psnr`: BasicSR formula, RGB, no border crop, peak 255 (optionally BasicSR's Y channel), capped at
  :data:`MAX_PSNR_DB` = 100 dB (identical images).
- :func:`ssim`: BasicSR per-channel Gaussian SSIM ('valid' 11x11 window), mean over channels.
- :func:`ssim3d`: the authors' 3-D Gaussian SSIM (one 11x11x11 window over H, W and channels, replicate padding
  on all three axes), matching their official values (tests/test_metrics.py).
- :class:`LPIPSScorer`: LPIPS-AlexNet (v0.1) through pyiqa, offline only, reports why when unavailable.
- :func:`score_pair`: all of the above in one dict.
"""
from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate1d

from models.names import METRIC_NAMES
from pipelines.core.environment import import_torchvision, set_offline_env
from pipelines.core.errors import InvalidInputError

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
PEAK = 255.0
# PSNR of identical images is infinite; scores are capped at this value (the convention of many deblurring
# and super-resolution codes: `if mse == 0: return 100`), so score files, summary.json and MLflow hold finite
# numbers. For 8-bit images only a near-perfect restoration comes close: one grey level off in one value of
# a 1280x720 RGB image is 112 dB, one level off everywhere 48 dB.
MAX_PSNR_DB = 100.0

# BasicSR's bgr2ycbcr(y_only=True) weights (ITU-R BT.601, MATLAB rgb2ycbcr), written in RGB order.
_Y_WEIGHTS_RGB = np.array([65.481, 128.553, 24.966], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def check_image_pair(restored: np.ndarray, sharp: np.ndarray) -> None:
    """Raise ValueError unless both are HxWx3 uint8 arrays of the same shape."""
    for name, img in (("restored", restored), ("sharp", sharp)):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"{name} image must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise ValueError(
                f"{name} image must be uint8 (clamp and round to 8 bit before scoring), "
                f"got dtype {img.dtype} with shape {img.shape}"
            )
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} image must have shape HxWx3, got {img.shape}")
    if restored.shape != sharp.shape:
        raise ValueError(
            f"image shapes differ: restored {restored.shape} vs sharp {sharp.shape}"
        )


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------
def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BasicSR's Y of YCbCr on the [0, 255] scale (float64): 16 + (65.481 R + 128.553 G + 24.966 B)/255.

    BasicSR's ``to_y_channel`` expects BGR (cv2) input and uses the same weights in BGR order; we
    take RGB. BasicSR computes this in float32; we use float64 (differences are below 1e-4 dB).
    """
    return img.astype(np.float64) @ _Y_WEIGHTS_RGB / 255.0 + 16.0


def psnr(restored: np.ndarray, sharp: np.ndarray, y_channel: bool = False) -> float:
    """PSNR in dB, BasicSR formula: 20*log10(255/sqrt(MSE)) in float64, no border crop.

    ``y_channel=True`` scores BasicSR's Y channel (:func:`rgb_to_y`) instead of RGB.
    Capped at :data:`MAX_PSNR_DB` (identical images: 100 dB, not ``inf``).
    """
    check_image_pair(restored, sharp)
    if y_channel:
        a, b = rgb_to_y(restored), rgb_to_y(sharp)
    else:
        a, b = restored.astype(np.float64), sharp.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return capped_psnr(mse, PEAK)


def capped_psnr(mse: float, peak: float) -> float:
    """``10 log10(peak^2 / mse)`` in dB, at most :data:`MAX_PSNR_DB` (also for ``mse == 0``)."""
    if mse <= 0.0:
        return MAX_PSNR_DB
    return min(20.0 * math.log10(peak / math.sqrt(mse)), MAX_PSNR_DB)


# --------------------------------------------------------------------------------------------
# SSIM (per channel, BasicSR)
# --------------------------------------------------------------------------------------------
def _gaussian_1d() -> np.ndarray:
    """The normalised 11-tap Gaussian (sigma 1.5), float64, same as cv2.getGaussianKernel(11, 1.5)."""
    return cv2.getGaussianKernel(WINDOW_SIZE, WINDOW_SIGMA, ktype=cv2.CV_64F).ravel()


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float = PEAK) -> np.ndarray:
    """Per-pixel, per-channel Gaussian SSIM map (float64, same HxWxC shape as the inputs).

    11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, population (not sample) statistics.
    Border pixels (within 5 of an edge) use reflected borders and are NOT part of the 'valid'
    SSIM: callers average ``[5:-5, 5:-5]`` only (see :func:`ssim`).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"SSIM inputs differ in shape: {x.shape} vs {y.shape}")
    g = _gaussian_1d()
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        out = cv2.sepFilter2D(img, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
        return out.reshape(img.shape)  # cv2 drops a trailing channel axis of size 1

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov_xy = blur(x * y) - mu_xy
    return ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


def _check_min_size(img: np.ndarray) -> None:
    if img.shape[0] < WINDOW_SIZE or img.shape[1] < WINDOW_SIZE:
        raise InvalidInputError(
            f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE} pixels, got {img.shape}"
        )


def ssim(restored: np.ndarray, sharp: np.ndarray) -> float:
    """BasicSR SSIM: per-channel Gaussian SSIM over the 'valid' region, mean over the 3 channels.

    Window 11x11, sigma 1.5, K1=.01, K2=.03, L=255, float64; only windows lying fully inside the
    image count (BasicSR crops ``[5:-5, 5:-5]`` after filtering), so the border handling of the
    filter never matters.
    """
    check_image_pair(restored, sharp)
    _check_min_size(restored)
    half = WINDOW_SIZE // 2
    valid = ssim_map(restored, sharp)[half:-half, half:-half]
    return float(valid.mean())


# --------------------------------------------------------------------------------------------
# 3-D SSIM (the authors' headline SSIM)
# --------------------------------------------------------------------------------------------
def ssim3d(restored: np.ndarray, sharp: np.ndarray, dtype=np.float64) -> float:
    """The authors' 3-D Gaussian SSIM (their reported "SSIM"), as their evaluation computes it.

    - one 11x11x11 window over rows x columns x channels of the 0..255 image: the normalised 11-tap Gaussian
      (sigma 1.5) on each axis, g x g x g (sums to 1);
    - **replicate padding of 5 on all three axes**, the channel axis of 3 included (each border value repeated),
      so the map has the image's H x W x 3 size and every border window is full;
    - C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2: the peak the authors' code picks for 0..255 data (255; it would
      be 1 for images scaled to [0, 1], with the same result), population statistics, mean of the whole map.

    Computed separably (``scipy.ndimage.correlate1d`` with ``mode="nearest"`` on each axis is exactly the
    replicate-padded 3-D correlation). ``dtype``: float64 (default) matches the official values of
    ``shared/conformance/metrics_gopro_real_crops.csv`` to ~1e-13; the authors run float32 on a GPU, which moves
    the value by up to ~3e-4 (measured here: 4e-7 with float32 on the CPU). Symmetric in its arguments.
    """
    check_image_pair(restored, sharp)
    x = restored.astype(dtype)
    y = sharp.astype(dtype)
    g = _gaussian_1d().astype(dtype)
    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2

    def blur3d(vol: np.ndarray) -> np.ndarray:
        for axis in range(3):
            vol = correlate1d(vol, g, axis=axis, mode="nearest")
        return vol

    mu_x, mu_y = blur3d(x), blur3d(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur3d(x * x) - mu_xx
    var_y = blur3d(y * y) - mu_yy
    cov_xy = blur3d(x * y) - mu_xy
    smap = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    return float(smap.mean())


# --------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------
LPIPS_WEIGHT_FILE = "LPIPS_v0.1_alex-df73285e.pth"
LPIPS_WEIGHT_URL = (
    "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/" + LPIPS_WEIGHT_FILE
)
ALEXNET_WEIGHT_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_WEIGHT_URL = "https://download.pytorch.org/models/" + ALEXNET_WEIGHT_FILE
LPIPS_SIZE = 256

LPIPS_HOWTO = f"""\
LPIPS (AlexNet, v0.1) needs two weight files that this project never downloads itself
(evaluation runs offline). On a machine with internet, put them in the torch hub cache
(`python -c "import torch; print(torch.hub.get_dir())"`, by default ~/.cache/torch/hub,
or $TORCH_HOME/hub):

  <hub>/checkpoints/{ALEXNET_WEIGHT_FILE}
      from {ALEXNET_WEIGHT_URL}
      (torchvision's ImageNet AlexNet, the LPIPS trunk)
  <hub>/pyiqa/{LPIPS_WEIGHT_FILE}
      from {LPIPS_WEIGHT_URL}
      (pyiqa's LPIPS linear layers)

for example:

  HUB=$(python -c "import torch; print(torch.hub.get_dir())")
  mkdir -p "$HUB/checkpoints" "$HUB/pyiqa"
  curl -L -o "$HUB/checkpoints/{ALEXNET_WEIGHT_FILE}" {ALEXNET_WEIGHT_URL}
  curl -L -o "$HUB/pyiqa/{LPIPS_WEIGHT_FILE}" {LPIPS_WEIGHT_URL}

Copy the two files to the same places on an offline machine. Without them LPIPS is reported
as unavailable (null, with the reason), never as 0.
"""


def lpips_weight_paths(hub_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where the two LPIPS weight files must be (torch hub cache layout used by torchvision/pyiqa)."""
    if hub_dir is None:
        hub_dir = torch.hub.get_dir()
    hub = Path(hub_dir)
    return {
        "alexnet": hub / "checkpoints" / ALEXNET_WEIGHT_FILE,
        "lpips": hub / "pyiqa" / LPIPS_WEIGHT_FILE,
    }


class LPIPSScorer:
    """LPIPS-AlexNet (v0.1, pyiqa) on both images resized to 256x256, inputs mapped to [-1, 1].

    The weight files are looked for before anything is constructed (see :data:`LPIPS_HOWTO`);
    nothing is ever downloaded. When they are missing or fail to load, ``available`` is False,
    ``reason`` says why, and calling the scorer returns ``None``.

    Resizing: bilinear with antialiasing (``torch.nn.functional.interpolate``, close to PIL's
    bilinear resize); the spec fixes the size, not the filter.
    """

    def __init__(self, hub_dir: str | os.PathLike | None = None, device: str = "cpu"):
        self.device = device
        self.paths = lpips_weight_paths(hub_dir)
        self.available = False
        self.reason: str | None = None
        self._net = None
        missing = [str(p) for p in self.paths.values() if not p.is_file()]
        if missing:
            self.reason = "weights not available offline: " + ", ".join(missing)
            return
        try:
            self._net = self._build(hub_dir)
        except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as err:
            # a corrupt or wrong file must not crash a whole evaluation: report it instead
            self.reason = f"LPIPS weights failed to load from {self.paths}: {type(err).__name__}: {err}"
            return
        self.available = True

    def _build(self, hub_dir):
        set_offline_env()
        import_torchvision()
        from pyiqa.archs.lpips_arch import LPIPS  # lazy: pyiqa is heavy, and only after the torchvision fix

        previous_hub = torch.hub.get_dir()
        if hub_dir is not None:
            torch.hub.set_dir(str(hub_dir))  # torchvision finds the AlexNet file through it
        try:
            # pretrained=False: we load the linear layers ourselves (pyiqa would load them with
            # strict=False, silently accepting a wrong file); the AlexNet trunk comes from the hub.
            net = LPIPS(net="alex", version="0.1", pretrained=False)
        finally:
            torch.hub.set_dir(previous_hub)
        lpips_path = self.paths["lpips"]
        state = torch.load(lpips_path, map_location="cpu", weights_only=True)
        state = {key.removeprefix("module."): value for key, value in state.items()}
        # lin0..lin4 (``lins.N`` are the same modules registered a second time)
        lin_keys = [key for key in net.state_dict() if re.match(r"lin\d+\.", key)]
        missing = [key for key in lin_keys if key not in state]
        if missing:
            raise InvalidInputError(f"{lpips_path} is not an LPIPS-AlexNet file: it lacks {missing}")
        net.load_state_dict({key: state[key] for key in lin_keys}, strict=False)
        return net.to(self.device).eval()

    def __call__(self, restored: np.ndarray, sharp: np.ndarray) -> float | None:
        """LPIPS distance (lower is better), or None when the scorer is unavailable."""
        check_image_pair(restored, sharp)
        if not self.available:
            return None

        def prepare(img: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
            t = t.to(self.device, torch.float32) / 255.0
            return F.interpolate(
                t, size=(LPIPS_SIZE, LPIPS_SIZE), mode="bilinear", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)

        with torch.no_grad():
            # normalize=True maps [0, 1] -> [-1, 1] inside pyiqa's LPIPS
            value = self._net(prepare(restored), prepare(sharp), normalize=True)
        return float(value.reshape(-1)[0])


# --------------------------------------------------------------------------------------------
# every metric of the registry (models.names.METRICS) but LPIPS, which needs its network (LPIPSScorer)
PAIR_METRICS = {"psnr": psnr, "ssim": ssim, "ssim3d": ssim3d}


def score_pair(restored: np.ndarray, sharp: np.ndarray, lpips: LPIPSScorer | None = None) -> dict:
    """Every metric of the registry for one (restored, sharp) pair, in its order; LPIPS None if unavailable."""
    check_image_pair(restored, sharp)
    lpips_value = lpips(restored, sharp) if lpips is not None and lpips.available else None
    return {name: lpips_value if name == "lpips" else PAIR_METRICS[name](restored, sharp) for name in METRIC_NAMES}
