"""The one reader for paired (blurred, sharp) image folders, and the torch dataset built on it.

Layouts recognised by :func:`find_pairs` (blurred and sharp images are matched by their relative
path, never by sort order):

* ``gopro``:    ``<root>/<scene>/{blur,sharp}/*.png``    (GoPro, the embedded synthetic set; a scene folder
  that links to one already read is skipped with a warning, as in the other layouts)
* ``flat``:     ``<root>/{input,target}/*.png``           (HIDE / RealBlur exports, realdata/gopro/dev)
  or        ``<root>/{blur,sharp}/*.png``
* ``realblur``: ``<root>/{blur,sharp}/<scene>/*.png``

Value ranges (per backbone): ``"half"`` = [-0.5, 0.5] (MIMO-UNet, Stripformer), ``"unit"`` = [0, 1]
(FFTformer, LoFormer). Images enter as 8-bit RGB through :mod:`pipelines.data.image_files` and become
tensors by :func:`models.inference.from_uint8_image`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from models.inference import from_uint8_image, value_range_offset
from pipelines.core.errors import InvalidInputError, MissingFileError
from pipelines.core.files import SkippedPathWarning, walk_files
from pipelines.data.image_files import IMAGE_EXTENSIONS, read_image_size, read_rgb_uint8

PAIR_FOLDERS = (("input", "target"), ("blur", "sharp"))  # (blurred, sharp) folder names
SCENE_FOLDERS = (("blur", "sharp"),)  # inside a GoPro scene (GoPro's blur_gamma/ is ignored)
LAYOUTS = ("gopro", "flat", "realblur")
_SHOW = 5  # how many offending names an error message lists


@dataclass(frozen=True)
class Pair:
    """One blurred / sharp pair; ``name`` is its relative key (``scene/file.png`` or ``file.png``)."""

    name: str
    blur: Path
    sharp: Path


# --------------------------------------------------------------------------------------------------
# finding pairs

def _images_under(folder: Path) -> dict[str, Path]:
    """Relative posix path -> file, for every image below ``folder`` (hidden files and folders skipped;
    folder symlinks followed once, never round a loop; broken / looping file symlinks skipped with a
    warning: :func:`pipelines.core.files.walk_files`)."""
    return {path.relative_to(folder).as_posix(): path for path in walk_files(folder, IMAGE_EXTENSIONS)}


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_SHOW])
    return shown + (f", ... ({len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _match(blur_dir: Path, sharp_dir: Path, prefix: str = "") -> list[Pair]:
    blurs, sharps = _images_under(blur_dir), _images_under(sharp_dir)
    if not blurs and not sharps:
        raise InvalidInputError(f"{blur_dir.parent}: no images in {blur_dir.name}/ and {sharp_dir.name}/ "
                         f"(expected {', '.join(IMAGE_EXTENSIONS)} files)")
    only_blur, only_sharp = sorted(set(blurs) - set(sharps)), sorted(set(sharps) - set(blurs))
    problems = []
    if only_blur:
        problems.append(f"{len(only_blur)} blurred image(s) in {blur_dir} have no sharp partner in {sharp_dir}: "
                        f"{_listing(only_blur)}")
    if only_sharp:
        problems.append(f"{len(only_sharp)} sharp image(s) in {sharp_dir} have no blurred partner in {blur_dir}: "
                        f"{_listing(only_sharp)}")
    if problems:
        raise InvalidInputError("unpaired images (pairs are matched by relative path):\n  " + "\n  ".join(problems))
    return [Pair(prefix + rel, blurs[rel], sharps[rel]) for rel in sorted(blurs)]


def _pair_folders(root: Path, names: Sequence[tuple[str, str]] = PAIR_FOLDERS) -> tuple[Path, Path] | None:
    """The (blurred, sharp) folder pair directly under ``root``, if any (error if only one half exists)."""
    for blur_name, sharp_name in names:
        blur_dir, sharp_dir = root / blur_name, root / sharp_name
        if blur_dir.is_dir() and sharp_dir.is_dir():
            return blur_dir, sharp_dir
        if blur_dir.is_dir() or sharp_dir.is_dir():
            have, missing = (blur_dir, sharp_dir) if blur_dir.is_dir() else (sharp_dir, blur_dir)
            raise InvalidInputError(f"{root}: has {have.name}/ but no {missing.name}/ folder (expected both)")
    return None


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _looks_like_dataset(folder: Path) -> bool:
    try:
        return (_pair_folders(folder) is not None
                or any(_pair_folders(scene, SCENE_FOLDERS) is not None for scene in _subfolders(folder)))
    except ValueError:
        return False


def detect_layout(root: str | os.PathLike) -> str:
    """``"gopro"``, ``"flat"`` or ``"realblur"`` (see the module doc); a clear error otherwise."""
    root = Path(root)
    if not root.exists():
        raise MissingFileError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise InvalidInputError(f"{root}: is a file, expected a dataset folder")
    folders = _pair_folders(root)
    if folders is not None:
        blur_dir = folders[0]
        return "realblur" if any(_subfolders(blur_dir)) else "flat"
    subfolders = _subfolders(root)
    scenes = [d for d in subfolders if _pair_folders(d, SCENE_FOLDERS) is not None]
    if scenes:
        return "gopro"
    nested = [d.name for d in subfolders if _looks_like_dataset(d)]
    hint = (f"; it looks like the top of a dataset with splits {', '.join(nested)}: pass {root / nested[0]}"
            if nested else "")
    seen = ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(root.iterdir())[:8]) or "nothing"
    raise InvalidInputError(f"{root}: no recognised paired-image layout (found: {seen}){hint}. Expected "
                     "<root>/<scene>/{blur,sharp}/ (GoPro), <root>/{input,target}/ or <root>/{blur,sharp}/ (flat), "
                     "or <root>/{blur,sharp}/<scene>/ (RealBlur)")


def find_pairs(root: str | os.PathLike) -> list[Pair]:
    """Every blurred / sharp pair under ``root``, sorted by name (layout detected, see the module doc)."""
    root = Path(root)
    layout = detect_layout(root)
    if layout in ("flat", "realblur"):
        blur_dir, sharp_dir = _pair_folders(root)
        return _match(blur_dir, sharp_dir)
    pairs: list[Pair] = []
    visited: set[str] = set()  # real paths of the scene folders and their blur/ sharp/ read so far
    for scene in _subfolders(root):
        folders = _pair_folders(scene, SCENE_FOLDERS)
        if folders is None:
            raise InvalidInputError(f"{scene}: scene folder without blur/ and sharp/ subfolders (GoPro layout "
                             f"<root>/<scene>/{{blur,sharp}}/ detected in {root})")
        reals = [os.path.realpath(p) for p in (scene, *folders)]
        read = next((real for real in reals if real in visited), None)
        if read is not None:  # a link to a scene already read (as walk_files treats a linked folder)
            warnings.warn(f"{scene}: skipped: symbolic link to a folder already read ({read}); a folder is read "
                          "once", SkippedPathWarning, stacklevel=2)
            continue
        visited.update(reals)
        pairs += _match(*folders, prefix=f"{scene.name}/")
    return pairs


def check_pairs(pairs: Sequence[Pair], crop_size: int | None = None, crop_key: str = "data.crop_size",
                min_side: tuple[int, str] | None = None) -> None:
    """Check every pair from the image headers, before any work starts: both files are images, of the
    same size, within the pixel limit (``data.max_pixels``), and (with ``crop_size``) at least
    ``crop_size`` pixels on each side, and (with ``min_side = (n, why)``) at least ``n``. A problem raises
    one ValueError naming the files and, for the crop, the params key ``crop_key``. (Pixel data is not
    decoded: a truncated file is reported, naming it, when it is read.)"""
    mismatched, small, smallest, tiny = [], [], None, []
    for pair in pairs:
        blur, sharp = read_image_size(pair.blur), read_image_size(pair.sharp)
        if blur != sharp:
            mismatched.append(f"{pair.blur} is {blur[0]}x{blur[1]} but {pair.sharp} is {sharp[0]}x{sharp[1]}")
            continue
        side = min(blur)
        smallest = side if smallest is None else min(smallest, side)
        if crop_size is not None and side < crop_size:
            small.append(f"{pair.blur} ({blur[0]}x{blur[1]})")
        if min_side is not None and side < min_side[0]:
            tiny.append(f"{pair.blur} ({blur[0]}x{blur[1]})")
    problems = []
    if tiny:
        problems.append(f"{len(tiny)} image(s) smaller than {min_side[0]}x{min_side[0]} pixels ({min_side[1]}): "
                        f"{_listing(tiny)}")
    if mismatched:
        problems.append(f"size mismatch in {len(mismatched)} pair(s) (width x height): {_listing(mismatched)}")
    if small:
        problems.append(f"{crop_key}={crop_size} is larger than {len(small)} image(s): {_listing(small)}; "
                        f"allowed: {crop_key} <= {smallest} (the smallest side in this dataset)")
    if problems:
        raise InvalidInputError("\n  ".join(["bad image pairs:", *problems]))


# --------------------------------------------------------------------------------------------------
# dataset

class PairedImageDataset(Dataset):
    """Blurred / sharp pairs as ``{"blur": [3, H, W], "sharp": [3, H, W], "name": str}`` float tensors.

    ``crop_size``: a random window (the same for both images); ``augment``: random horizontal / vertical
    flips and 90-degree rotations (the same for both). The randomness of item ``index`` comes from
    ``np.random.default_rng([seed, epoch, index])``: call :meth:`set_epoch` at the start of each epoch,
    and a resumed run sees exactly the same crops. (With worker processes keep ``persistent_workers``
    off so the workers see the new epoch.)

    ``cache_bytes``: keep decoded pairs in memory, first come first kept, up to that many bytes (per
    process: each loader worker holds its own). Decoding a small PNG pair costs more than a tiny
    model's training step on a CPU; the items are the same with or without the cache.
    """

    def __init__(self, root_or_pairs: str | os.PathLike | Sequence[Pair], crop_size: int | None = None,
                 augment: bool = False, value_range: str = "half", seed: int = 0, cache_bytes: int = 0):
        if isinstance(root_or_pairs, (str, os.PathLike)):
            self.pairs = find_pairs(root_or_pairs)
            source = str(root_or_pairs)
        else:
            self.pairs = list(root_or_pairs)
            source = "the given pair list"
        if not self.pairs:
            raise ValueError(f"PairedImageDataset: no pairs in {source}")
        if crop_size is not None and (int(crop_size) != crop_size or crop_size < 1):
            raise ValueError(f"PairedImageDataset: crop_size must be a positive integer or None, got {crop_size!r}")
        if int(seed) < 0:
            raise ValueError(f"PairedImageDataset: seed must be >= 0, got {seed}")
        value_range_offset(value_range)  # an unknown name is refused here
        self.crop_size = None if crop_size is None else int(crop_size)
        self.augment = bool(augment)
        self.value_range = value_range
        self.seed = int(seed)
        self.epoch = 0
        if int(cache_bytes) < 0:
            raise ValueError(f"PairedImageDataset: cache_bytes must be >= 0, got {cache_bytes}")
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The full 8-bit images of pair ``index`` (sizes checked; read-only arrays when cached)."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        pair = self.pairs[index]
        blur, sharp = read_rgb_uint8(pair.blur), read_rgb_uint8(pair.sharp)
        if blur.shape != sharp.shape:
            raise InvalidInputError(f"size mismatch: {pair.blur} is {blur.shape[1]}x{blur.shape[0]} but "
                             f"{pair.sharp} is {sharp.shape[1]}x{sharp.shape[0]} (width x height)")
        if self._cached_bytes + blur.nbytes + sharp.nbytes <= self.cache_bytes:
            blur.flags.writeable = sharp.flags.writeable = False  # a caller cannot alter the cached copy
            self._cache[index] = (blur, sharp)
            self._cached_bytes += blur.nbytes + sharp.nbytes
        return blur, sharp

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        pair = self.pairs[index]
        blur, sharp = self.read_pair(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop_size is not None:
            h, w = blur.shape[:2]
            c = self.crop_size
            if c > h or c > w:
                raise InvalidInputError(f"{pair.blur}: image is {w}x{h} (width x height), smaller than crop_size {c}")
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            blur, sharp = blur[y:y + c, x:x + c], sharp[y:y + c, x:x + c]
        if self.augment:
            flip_h, flip_v, quarter_turns = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(4))
            blur, sharp = (_augment(img, flip_h, flip_v, quarter_turns) for img in (blur, sharp))
        return {"blur": from_uint8_image(blur, self.value_range),
                "sharp": from_uint8_image(sharp, self.value_range), "name": pair.name}


def _augment(image: np.ndarray, flip_h: bool, flip_v: bool, quarter_turns: int) -> np.ndarray:
    if flip_h:
        image = image[:, ::-1]
    if flip_v:
        image = image[::-1]
    if quarter_turns:
        image = np.rot90(image, quarter_turns)
    return image


# --------------------------------------------------------------------------------------------------
# splits and loaders

def split_train_val(pairs: Sequence[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``round(val_fraction * n)`` (at least 1 when ``val_fraction > 0``) TRAINING pairs for
    validation, chosen by a seeded permutation of the pairs sorted by name (input order is irrelevant).
    Both lists come back sorted by name."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(pairs, key=lambda p: p.name)
    names = [p.name for p in ordered]
    if len(set(names)) != len(names):
        raise ValueError("split_train_val: duplicate pair names")
    n = len(ordered)
    n_val = round(val_fraction * n)
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val and n - n_val < 1:
        raise InvalidInputError(f"split_train_val: {n} pair(s) cannot give {n_val} validation pair(s) and at least one "
                         "training pair")
    held_out = set(np.random.default_rng([int(seed), 1]).permutation(n)[:n_val].tolist())
    train = [p for i, p in enumerate(ordered) if i not in held_out]
    val = [p for i, p in enumerate(ordered) if i in held_out]
    return train, val


class EpochShuffleSampler(Sampler[int]):
    """A permutation of the dataset that depends only on ``(seed, dataset.epoch)``."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        epoch = int(getattr(self.dataset, "epoch", 0))
        yield from np.random.default_rng([self.seed, epoch, 2]).permutation(len(self.dataset)).tolist()


def _init_worker(_worker_id: int) -> None:
    # Worker processes already run in parallel. (Do NOT touch OpenCV's thread pool here: in a forked
    # child of a process that used it, cv2.setNumThreads deadlocks.)
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader whose order is a function of ``(seed, dataset.epoch)`` (call ``dataset.set_epoch``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False,
                      sampler=EpochShuffleSampler(dataset, seed) if shuffle else None,
                      num_workers=num_workers, drop_last=drop_last, generator=generator,
                      worker_init_fn=_init_worker if num_workers > 0 else None, persistent_workers=False)
