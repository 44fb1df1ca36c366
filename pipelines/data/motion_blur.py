"""The embedded synthetic motion-blur dataset (GoPro layout): the work behind ``blurdm-bench synth``.

BlurDM's premise: a motion-blurred photo is the accumulation of sharp exposures over the shutter
time. Each sample is made from a crop of one of scikit-image's bundled photographs (loaded offline):

* ``trajectory`` family: a random smooth camera path (a cubic Bezier curve of arc length
  ``blur_length`` px plus a smooth rotation of up to ``max_rotation_deg``) sampled at ``subframes``
  instants; each sub-frame is a sub-pixel warp (bicubic) of the source photo, read from the whole
  photo so there are no border artefacts. The sub-frames are averaged in LINEAR light (inverse gamma
  2.2, mean, gamma 2.2: the GoPro recipe). The ground truth is the middle sub-frame, i.e. the
  unwarped crop itself. With ``save_exposures`` the cumulative partial exposures (mean of the first k
  sub-frames, k = 1..N, noise-free) are written too: BlurDM's intermediate blur states.
* ``kernel`` family (share ``kernel_fraction``): one of the 8 real camera-shake kernels of Levin et
  al. 2009 (``pipelines/data/levin09_kernels.npz``, in one of its 8 rotations/flips, centred on its
  centre of mass) convolved with the crop in linear light.

Both then get Poisson-Gaussian sensor noise in linear light (variance ``shot * x + read**2``) and are
quantised to 8 bits. Train and test use disjoint source photos. Every sample has its own RNG,
``np.random.default_rng([seed, split, 2, index])``, so files do not depend on generation order and the
same params + seed give byte-identical PNGs. The whole folder is built in a temporary sibling and
renamed into place at the end (nothing half-written).

Output::

    <out_dir>/{train,test}/<source>/blur/NNNNNN.png
    <out_dir>/{train,test}/<source>/sharp/NNNNNN.png
    <out_dir>/{train,test}/<source>/exposures/NNNNNN_kk.png   (save_exposures; trajectory samples, noise-free)
    <out_dir>/manifest.json
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipelines.core.config import PHOTO_SOURCES
from pipelines.core.errors import InvalidInputError
from pipelines.core.files import atomic_dir, write_json
from pipelines.data.image_files import encode_png, read_rgb_uint8

GAMMA = 2.2
SPLITS = ("train", "test")
_SPLIT_CODE = {"train": 0, "test": 1}
_RNG_FAMILY, _RNG_SAMPLE, _RNG_LEAVES, _RNG_LEAVES_MASK = 1, 2, 3, 4  # purpose tags in the RNG seeds
DEAD_LEAVES_PREFIX = "dead_leaves_"
SUPERSAMPLE = 2  # dead-leaves scenes are drawn at 2x and area-downsampled (anti-aliased, sub-pixel edges)
KERNELS_FILE = Path(__file__).resolve().parent / "levin09_kernels.npz"
MANIFEST_VERSION = 1
DATASET_NAME = "blurdm-bench synthetic motion blur"  # in manifest.json: what marks a folder as ours
INTERP_SUPPORT_PX = 2  # bicubic reads 2 px beyond the sampled point


def photo_path(name: str) -> Path:
    """Where the bundled photograph ``name`` lies inside its installed package (the package is located,
    not imported: loading a photo runs no package code)."""
    package, rel = PHOTO_SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(f"synth source {name!r}: package {package!r} is not installed (it ships the photo "
                         f"{rel}); run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / rel


# --------------------------------------------------------------------------------------------------
# colour and sources

def srgb_to_linear(image_uint8: np.ndarray) -> np.ndarray:
    """8-bit gamma-encoded values -> linear light in [0, 1] (float32), ``(x / 255) ** 2.2``."""
    lut = ((np.arange(256, dtype=np.float64) / 255.0) ** GAMMA).astype(np.float32)
    return lut[np.asarray(image_uint8, dtype=np.uint8)]


def linear_to_srgb_uint8(linear: np.ndarray) -> np.ndarray:
    """Linear light -> 8-bit gamma-encoded values, ``round(255 * clip(x, 0, 1) ** (1 / 2.2))``."""
    encoded = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0) ** (1.0 / GAMMA)
    return np.rint(encoded * 255.0).astype(np.uint8)


def accumulate_exposure(frames_linear: np.ndarray) -> np.ndarray:
    """Mean of sub-frames ``(N, H, W, 3)`` in linear light (the physical exposure), float32."""
    return np.asarray(frames_linear, dtype=np.float32).mean(axis=0, dtype=np.float64).astype(np.float32)


@dataclass(frozen=True)
class Source:
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8
    linear: np.ndarray  # (H, W, 3) float32


def _make_source(name: str, image: np.ndarray) -> Source:
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    linear = srgb_to_linear(image)
    linear.setflags(write=False)
    return Source(name, image, linear)


@lru_cache(maxsize=32)
def load_source(name: str) -> Source:
    """One bundled photograph (:data:`pipelines.core.config.PHOTO_SOURCES`) as RGB uint8 (+ linear light)."""
    if name not in PHOTO_SOURCES:
        raise InvalidInputError(f"synth source {name!r} is not a bundled photograph; allowed: {', '.join(sorted(PHOTO_SOURCES))}")
    path = photo_path(name)
    try:
        image = read_rgb_uint8(path)  # explicit decoding: grey / alpha / 16-bit converted, errors name the file
    except (OSError, ValueError) as err:
        raise InvalidInputError(f"synth source {name!r}: cannot load {path} ({err})") from None
    return _make_source(name, image)


def source_label(name: str, cfg) -> str:
    """Where a source comes from, for the manifest."""
    if name.startswith(DEAD_LEAVES_PREFIX):
        return f"dead_leaves(seed={cfg.seed}, scene={int(name[len(DEAD_LEAVES_PREFIX):])})"
    package, rel = PHOTO_SOURCES[name]
    return f"{package}:{rel}"


def _palette(names: tuple[str, ...], seed: int, n: int = 4096) -> np.ndarray:
    """``n`` colours (uint8 RGB) drawn from the given photographs: dead leaves get natural colours."""
    rng = np.random.default_rng([int(seed), _RNG_LEAVES, 0])
    pixels = np.concatenate([load_source(name).rgb.reshape(-1, 3) for name in names])
    return pixels[rng.integers(0, len(pixels), size=n)]


@lru_cache(maxsize=64)
def dead_leaves_source(seed: int, index: int, size: int, shapes: int, radius: tuple[float, float],
                       palette_from: tuple[str, ...]) -> Source:
    """Dead-leaves scene ``index``: ``shapes`` opaque discs and ellipses dropped one over another, radii
    with density ~ r^-3 between ``radius`` (the scale-invariant law of natural images, Lee, Mumford and
    Huang 2001), colours from ``palette_from``'s photographs.
    A pure function of its arguments (drawn at 2x, area-downsampled)."""
    rng = np.random.default_rng([int(seed), _RNG_LEAVES, 1, int(index)])
    palette = _palette(palette_from, seed) if palette_from else rng.integers(0, 256, size=(4096, 3))
    big = size * SUPERSAMPLE
    canvas = np.empty((big, big, 3), dtype=np.uint8)
    canvas[:] = palette[rng.integers(len(palette))]
    r_lo, r_hi = (r * SUPERSAMPLE for r in radius)
    u = rng.random(shapes)
    radii = (r_lo**-2 - u * (r_lo**-2 - r_hi**-2)) ** -0.5  # inverse CDF of p(r) ~ r^-3
    centres = rng.uniform(-0.1 * big, 1.1 * big, size=(shapes, 2))
    colours = palette[rng.integers(0, len(palette), size=shapes)].astype(np.float64)
    colours *= rng.uniform(0.85, 1.15, size=(shapes, 1))  # brightness variation
    aspect = rng.uniform(0.4, 1.0, size=shapes)
    angles = rng.uniform(0, 180, size=shapes)
    is_disc = rng.random(shapes) < 0.5
    for k in range(shapes):
        colour = tuple(float(c) for c in np.clip(colours[k], 0, 255))
        centre = (int(round(centres[k, 0])), int(round(centres[k, 1])))
        r = max(1, int(round(radii[k])))
        if is_disc[k]:
            cv2.circle(canvas, centre, r, colour, thickness=-1, lineType=cv2.LINE_8)
        else:
            axes = (r, max(1, int(round(r * aspect[k]))))
            cv2.ellipse(canvas, centre, axes, float(angles[k]), 0, 360, colour, thickness=-1, lineType=cv2.LINE_8)
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return _make_source(f"{DEAD_LEAVES_PREFIX}{index:03d}", image)


# --------------------------------------------------------------------------------------------------
# camera trajectories

@dataclass(frozen=True)
class Trajectory:
    """Camera motion relative to the middle (sharp) sub-frame, sampled at ``len(offsets)`` instants."""

    offsets: np.ndarray  # (N, 2) translation in px (x, y)
    angles_deg: np.ndarray  # (N,) rotation about the crop centre
    control_points: np.ndarray  # (4, 2) cubic Bezier control points in px (before re-centring)
    rotation_deg: float  # total rotation over the exposure
    rotation_easing: tuple[float, float]  # inner control values of the 1-D rotation Bezier
    path_length_px: float  # arc length of the translation path

    @property
    def middle(self) -> int:
        return len(self.offsets) // 2


def _bezier(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = t[:, None] if control.ndim == 2 else t
    u = 1.0 - t
    return u**3 * control[0] + 3 * u**2 * t * control[1] + 3 * u * t**2 * control[2] + t**3 * control[3]


def sample_trajectory(rng: np.random.Generator, blur_length: tuple[float, float], max_rotation_deg: float,
                      subframes: int, sampling: str = "uniform") -> Trajectory:
    """A random smooth camera path: cubic Bezier translation + smoothly eased rotation. Its length is
    drawn from ``blur_length`` uniformly or (``sampling="log_uniform"``) log-uniformly: one draw either way."""
    lo, hi = blur_length
    if hi <= lo:
        length = float(lo)
    elif sampling == "log_uniform":
        length = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    elif sampling == "uniform":
        length = float(rng.uniform(lo, hi))
    else:
        raise ValueError(f"unknown blur length sampling {sampling!r}; allowed: uniform, log_uniform")
    # Control polygon: a random walk whose direction turns smoothly (shake rarely reverses abruptly).
    heading = rng.uniform(0.0, 2.0 * math.pi)
    turns = rng.normal(0.0, 0.8, size=3)
    steps = rng.uniform(0.3, 1.0, size=3)
    control = np.zeros((4, 2))
    for k in range(3):
        heading += turns[k]
        control[k + 1] = control[k] + steps[k] * np.array([math.cos(heading), math.sin(heading)])
    dense = _bezier(control, np.linspace(0.0, 1.0, 513))
    arc = float(np.linalg.norm(np.diff(dense, axis=0), axis=1).sum())
    control = control * (length / arc) if arc > 1e-9 else control * 0.0
    rotation = float(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg > 0 else 0.0
    easing = tuple(float(v) for v in rng.uniform(0.0, 1.0, size=2))
    times = np.linspace(0.0, 1.0, subframes)
    middle = subframes // 2
    points = _bezier(control, times)
    ease = _bezier(np.array([0.0, easing[0], easing[1], 1.0]), times)
    offsets = points - points[middle]
    angles = rotation * (ease - ease[middle])
    return Trajectory(offsets=offsets, angles_deg=angles, control_points=control, rotation_deg=rotation,
                      rotation_easing=easing, path_length_px=length)


def _subframe_matrices(traj: Trajectory, crop_size: int, crop_xy: tuple[int, int]) -> list[np.ndarray]:
    """2x3 maps from crop pixel (u, v) to source pixel coordinates, one per sub-frame."""
    centre_crop = np.full(2, (crop_size - 1) / 2.0)
    centre_src = np.asarray(crop_xy, dtype=np.float64) + centre_crop
    mats = []
    for offset, angle in zip(traj.offsets, traj.angles_deg):
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        shift = centre_src + offset - rot @ centre_crop
        mats.append(np.hstack([rot, shift[:, None]]))
    return mats


def trajectory_displacements(traj: Trajectory, crop_size: int) -> np.ndarray:
    """(N, 5, 2) source displacement of the crop's 4 corners and centre at each sub-frame."""
    c = crop_size - 1
    probes = np.array([[0, 0], [c, 0], [0, c], [c, c], [c / 2, c / 2]], dtype=np.float64)
    out = []
    for m in _subframe_matrices(traj, crop_size, (0, 0)):
        out.append(probes @ m[:, :2].T + m[:, 2] - probes)
    return np.stack(out)


def trajectory_extent_px(traj: Trajectory, crop_size: int) -> float:
    """Largest distance any probed scene point travels over the exposure (max pairwise distance)."""
    disp = trajectory_displacements(traj, crop_size)  # (N, P, 2)
    diff = disp[:, None, :, :] - disp[None, :, :, :]
    return float(np.sqrt((diff**2).sum(-1)).max())


def render_subframes(source_linear: np.ndarray, crop_xy: tuple[int, int], crop_size: int,
                     traj: Trajectory) -> np.ndarray:
    """(N, crop, crop, 3) linear-light sub-frames, warped from the whole source (no border effects)."""
    x0, y0 = crop_xy
    frames = []
    for i, m in enumerate(_subframe_matrices(traj, crop_size, crop_xy)):
        if i == traj.middle or (np.allclose(m[:, :2], np.eye(2)) and np.allclose(m[:, 2], (x0, y0))):
            frame = source_linear[y0:y0 + crop_size, x0:x0 + crop_size]
        else:
            frame = cv2.warpAffine(source_linear, m, (crop_size, crop_size),
                                   flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
        frames.append(np.asarray(frame, dtype=np.float32))
    return np.clip(np.stack(frames), 0.0, 1.0)  # bicubic may overshoot slightly


# --------------------------------------------------------------------------------------------------
# real camera-shake kernels

@lru_cache(maxsize=1)
def load_kernels(path: str | None = None) -> tuple[np.ndarray, ...]:
    """The 8 Levin et al. 2009 kernels (float64, non-negative, each normalised to sum 1)."""
    path = Path(path) if path else KERNELS_FILE
    try:
        with np.load(path) as data:
            kernels = [np.asarray(data[f"k{i}"], dtype=np.float64) for i in range(1, 9)]
    except (OSError, KeyError, ValueError) as err:
        raise InvalidInputError(f"{path}: cannot read the Levin et al. 2009 kernels k1..k8 ({err})") from None
    for i, k in enumerate(kernels, 1):
        if k.ndim != 2 or k.min() < 0 or k.sum() <= 0:
            raise InvalidInputError(f"{path}: kernel k{i} is not a non-negative 2-D kernel")
    return tuple(k / k.sum() for k in kernels)


def transform_kernel(kernel: np.ndarray, dihedral: int) -> np.ndarray:
    """One of the 8 rotations/flips of a kernel (0 = unchanged; 4..7 = transposed then rotated)."""
    k = kernel.T if dihedral >= 4 else kernel
    return np.ascontiguousarray(np.rot90(k, dihedral % 4))


def kernel_centroid(kernel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(kernel.shape)
    return float((kernel * xs).sum()), float((kernel * ys).sum())


def kernel_extent_px(kernel: np.ndarray, rel_threshold: float = 0.05) -> float:
    """Largest distance between two kernel taps above ``rel_threshold * max`` (the blur span)."""
    ys, xs = np.nonzero(kernel >= rel_threshold * kernel.max())
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    diff = pts[:, None] - pts[None]
    return float(np.sqrt((diff**2).sum(-1)).max())


def convolve_kernel(source_linear: np.ndarray, crop_xy: tuple[int, int], crop_size: int,
                    kernel: np.ndarray) -> np.ndarray:
    """Convolve the crop with ``kernel`` (anchored at its centre of mass), reading real pixels around it."""
    x0, y0 = crop_xy
    kh, kw = kernel.shape
    pad = max(kh, kw)
    window = source_linear[y0 - pad:y0 + crop_size + pad, x0 - pad:x0 + crop_size + pad]
    cx, cy = kernel_centroid(kernel)
    # cv2.filter2D correlates; true convolution = correlation with the flipped kernel.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1]).astype(np.float32)
    anchor = (kw - 1 - round(cx), kh - 1 - round(cy))
    out = cv2.filter2D(np.ascontiguousarray(window), -1, flipped, anchor=anchor, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(out[pad:pad + crop_size, pad:pad + crop_size], 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# noise, metrics

def add_sensor_noise(linear: np.ndarray, rng: np.random.Generator, shot: float, read: float) -> np.ndarray:
    """Poisson-Gaussian noise in linear light: ``Poisson(x / shot) * shot + N(0, read**2)``, clipped to [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    if shot > 0:
        x = rng.poisson(x / shot) * shot
    if read > 0:
        x = x + rng.normal(0.0, read, size=x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images, peak 255, no border crop (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------------------------------
# samples

@dataclass
class Sample:
    split: str
    index: int
    source: str
    family: str  # "trajectory" | "kernel"
    blur: np.ndarray  # uint8 (H, W, 3)
    sharp: np.ndarray  # uint8 (H, W, 3)
    exposures: list[np.ndarray] = field(default_factory=list)  # uint8, k = 1..N (trajectory family)
    meta: dict = field(default_factory=dict)


def sample_rng_seed(seed: int, split: str, index: int) -> list[int]:
    return [int(seed), _SPLIT_CODE[split], _RNG_SAMPLE, int(index)]


def kernel_family_mask(cfg, split: str) -> np.ndarray:
    """Which samples of a split use the kernel family: exactly ``round(kernel_fraction * n)``, spread
    by a seeded permutation (independent of the source round-robin)."""
    n = cfg.n_train if split == "train" else cfg.n_test
    n_kernel = round(cfg.kernel_fraction * n)
    perm = np.random.default_rng([int(cfg.seed), _SPLIT_CODE[split], _RNG_FAMILY]).permutation(n)
    return perm < n_kernel


def dead_leaves_mask(cfg, split: str) -> np.ndarray:
    """Which samples of a split are cut from a dead-leaves scene: exactly ``round(fraction * n_train)``
    training samples (none in the test split), spread by a seeded permutation."""
    n = cfg.n_train if split == "train" else cfg.n_test
    if split != "train" or cfg.dead_leaves.fraction <= 0:
        return np.zeros(n, dtype=bool)
    perm = np.random.default_rng([int(cfg.seed), _SPLIT_CODE[split], _RNG_LEAVES_MASK]).permutation(n)
    return perm < round(cfg.dead_leaves.fraction * n)


def sample_source(cfg, split: str, index: int) -> Source:
    """The source image of sample ``index``: a dead-leaves scene (training only) or, round-robin, one of
    the split's photographs."""
    if dead_leaves_mask(cfg, split)[index]:
        dl = cfg.dead_leaves
        return dead_leaves_source(cfg.seed, index % dl.scenes, dl.size, dl.shapes, tuple(dl.radius),
                                  tuple(cfg.train_sources))
    sources = cfg.train_sources if split == "train" else cfg.test_sources
    return load_source(sources[index % len(sources)])


def _random_crop_xy(rng: np.random.Generator, source: Source, crop_size: int, margin: int) -> tuple[int, int]:
    h, w = source.rgb.shape[:2]
    x_max, y_max = w - crop_size - margin, h - crop_size - margin
    if x_max < margin or y_max < margin:
        raise InvalidInputError(f"synth source {source.name!r} ({w}x{h}) is too small for crop_size {crop_size} "
                         f"plus a {margin}-px motion margin; lower synth.crop_size or synth.blur_length")
    return int(rng.integers(margin, x_max + 1)), int(rng.integers(margin, y_max + 1))


def render_sample(cfg, split: str, index: int, use_kernel: bool, with_exposures: bool = False) -> Sample:
    """Render sample ``index`` of ``split`` (a pure function of the config, split and index)."""
    source = sample_source(cfg, split, index)
    rng_seed = sample_rng_seed(cfg.seed, split, index)
    rng = np.random.default_rng(rng_seed)
    crop = cfg.crop_size
    meta: dict = {"rng_seed": rng_seed}
    exposures: list[np.ndarray] = []
    if use_kernel:
        kernels = load_kernels()
        kernel_id = int(rng.integers(len(kernels)))
        dihedral = int(rng.integers(8))
        kernel = transform_kernel(kernels[kernel_id], dihedral)
        x0, y0 = _random_crop_xy(rng, source, crop, max(kernel.shape) + 1)
        blurred = convolve_kernel(source.linear, (x0, y0), crop, kernel)
        cx, cy = kernel_centroid(kernel)
        meta.update(family="kernel", kernel_id=f"k{kernel_id + 1}", kernel_dihedral=dihedral,
                    kernel_size=list(kernel.shape), kernel_anchor_xy=[round(cx), round(cy)],
                    blur_extent_px=round(kernel_extent_px(kernel), 3))
    else:
        traj = sample_trajectory(rng, tuple(cfg.blur_length), cfg.max_rotation_deg, cfg.subframes,
                                 getattr(cfg.blur_length_sampling, split))
        disp = trajectory_displacements(traj, crop)
        margin = math.ceil(np.abs(disp).max()) + INTERP_SUPPORT_PX + 1
        x0, y0 = _random_crop_xy(rng, source, crop, margin)
        frames = render_subframes(source.linear, (x0, y0), crop, traj)
        blurred = accumulate_exposure(frames)
        if with_exposures:
            cumulative = np.cumsum(frames.astype(np.float64), axis=0)
            exposures = [linear_to_srgb_uint8(cumulative[k] / (k + 1)) for k in range(len(frames))]
        meta.update(family="trajectory", path_length_px=round(traj.path_length_px, 4),
                    rotation_deg=round(traj.rotation_deg, 4),
                    rotation_easing=[round(v, 4) for v in traj.rotation_easing],
                    control_points_px=np.round(traj.control_points, 4).tolist(),
                    subframes=[[round(float(dx), 4), round(float(dy), 4), round(float(a), 4)]
                               for (dx, dy), a in zip(traj.offsets, traj.angles_deg)],
                    blur_extent_px=round(trajectory_extent_px(traj, crop), 3))
    noisy = add_sensor_noise(blurred, rng, cfg.noise.shot, cfg.noise.read)
    sharp = np.ascontiguousarray(source.rgb[y0:y0 + crop, x0:x0 + crop])
    meta["crop_box_xyxy"] = [x0, y0, x0 + crop, y0 + crop]
    return Sample(split=split, index=index, source=source.name, family=meta["family"],
                  blur=linear_to_srgb_uint8(noisy), sharp=sharp, exposures=exposures, meta=meta)


# --------------------------------------------------------------------------------------------------
# the dataset

def _stats(values: list[float]) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"n": len(values), "n_identical": len(values)}
    arr = np.asarray(finite)
    return {"n": len(values), "n_identical": len(values) - len(finite), "min": round(float(arr.min()), 3),
            "median": round(float(np.median(arr)), 3), "mean": round(float(arr.mean()), 3),
            "max": round(float(arr.max()), 3)}


def _write(root: Path, rel: str, data: bytes, hashes: dict) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # inside atomic_dir's temp folder; fsync so the final rename is durable
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    hashes[rel] = hashlib.sha256(data).hexdigest()
    return rel


def _versions() -> dict:
    out = {"numpy": np.__version__, "opencv": cv2.__version__}
    for dist in ("scikit-image", "sporco", "mahotas", "matplotlib"):  # the packages that ship the photos
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def generate(cfg, out_dir: str | Path, progress: bool = True) -> dict:
    """Generate the dataset described by ``cfg`` (a ``SynthConfig``) into ``out_dir``; return the manifest.

    ``out_dir`` is replaced whole and atomically; on any error it is left untouched. An existing
    ``out_dir`` must be empty or a dataset written by this function (its ``manifest.json``), else a
    ValueError names it and nothing is deleted.
    """
    out_dir = Path(out_dir)
    for name in [*cfg.train_sources, *cfg.test_sources]:
        load_source(name)  # fail fast on an unknown / unloadable source, before any work
    jobs = [(split, i, bool(use_kernel)) for split in SPLITS for i, use_kernel in enumerate(kernel_family_mask(cfg, split))]
    samples_meta, psnrs = [], {s: [] for s in SPLITS}
    # an existing out_dir is replaced only when empty or a dataset we generated (never, say, a home folder)
    with atomic_dir(out_dir, marker="manifest.json", signature=DATASET_NAME.encode()) as tmp:
        for split, index, use_kernel in tqdm(jobs, desc="synth", unit="pair", disable=not progress):
            sample = render_sample(cfg, split, index, use_kernel, with_exposures=cfg.save_exposures)
            stem = f"{index:06d}"
            scene_dir = f"{split}/{sample.source}"
            hashes: dict[str, str] = {}
            blur_rel = _write(tmp, f"{scene_dir}/blur/{stem}.png", encode_png(sample.blur), hashes)
            sharp_rel = _write(tmp, f"{scene_dir}/sharp/{stem}.png", encode_png(sample.sharp), hashes)
            exposure_rels = [_write(tmp, f"{scene_dir}/exposures/{stem}_{k:02d}.png", encode_png(e), hashes)
                             for k, e in enumerate(sample.exposures, 1)]
            psnr = psnr_uint8(sample.blur, sample.sharp)
            psnrs[split].append(psnr)
            samples_meta.append({
                "split": split, "index": index, "scene": sample.source, "name": f"{sample.source}/{stem}.png",
                "source_image": source_label(sample.source, cfg), "blur": blur_rel, "sharp": sharp_rel,
                "exposures": exposure_rels, "psnr_blur_vs_sharp": round(psnr, 4) if math.isfinite(psnr) else None,
                **sample.meta, "sha256": hashes,
            })
        extents = {s: [m["blur_extent_px"] for m in samples_meta if m["split"] == s] for s in SPLITS}
        manifest = {
            "format_version": MANIFEST_VERSION,
            "dataset": DATASET_NAME,
            "layout": "gopro",
            "params": cfg.model_dump(mode="json"),
            "versions": _versions(),
            "summary": {
                "counts": {s: {"pairs": len(psnrs[s]),
                               "kernel": sum(1 for m in samples_meta if m["split"] == s and m["family"] == "kernel")}
                           for s in SPLITS},
                "psnr_blur_vs_sharp": {s: _stats(psnrs[s]) for s in SPLITS},
                "blur_extent_px": {s: _stats(extents[s]) for s in SPLITS},
            },  # no wall-clock time in here: the folder is a DVC dep and must be the same bytes on every run
            "samples": samples_meta,
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
