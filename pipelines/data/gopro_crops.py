"""The real GoPro test crops that every study scores (committed, never trained on): the work behind
``blurdm-bench realcrops``.

Source: the 11 real GoPro pairs of ``shared/realdata/gopro/dev`` (Nah, Kim and Lee, "Deep Multi-scale
Convolutional Neural Network for Dynamic Scene Deblurring", CVPR 2017; CC BY 4.0), 1280x720 each,
``{input,target}/<name>.png``. Crops are chosen by a fixed rule, so anyone can regenerate the bytes:

1. On a grid of ``size`` x ``size`` windows with stride ``stride`` over the SHARP frame, score each
   window by its mean gradient magnitude (central differences of the grey level, 0..255): the windows
   where motion blur is visible. (The rule reads only the sharp frame, never a model.)
2. Take the highest-scoring window, then the next highest that does not overlap any taken one, until
   ``per_pair`` windows are taken (ties: top-most, then left-most).
3. Cut the same window from the blurred and the sharp frame; write them losslessly as
   ``<out>/{input,target}/<name>_<k>.png`` (k = 0, 1, ...; the flat layout of :mod:`pipelines.data.pairs`).

The defaults (2 windows of 192 x 192 per pair, stride 64) give 22 pairs, about 2 MB. ``README.md``
in the output folder records the source, licence, attribution and rule; the crops are a TEST set only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.core.errors import InvalidInputError
from pipelines.core.files import atomic_dir
from pipelines.data.image_files import encode_png, read_rgb_uint8

DEFAULT_OUT = Path(__file__).resolve().parent / "gopro_real_crops"
ATTRIBUTION = """# Real GoPro test crops (data only)

Crops of the real GoPro pairs in `shared/realdata/gopro/dev`: GoPro dataset, Seungjun Nah, Tae Hyun
Kim and Kyoung Mu Lee, "Deep Multi-scale Convolutional Neural Network for Dynamic Scene Deblurring",
CVPR 2017, licensed CC BY 4.0 (https://seungjunnah.github.io/Datasets/gopro). Cropped (nothing else
changed) by `blurdm-bench realcrops`, rule in `pipelines/realcrops.py`: {per_pair} non-overlapping
{size}x{size} windows per pair with the highest mean gradient magnitude of the sharp frame (stride {stride}).

Test data only: never train, tune or select on it.

| crop | source pair | window (x0, y0, x1, y1) |
|---|---|---|
"""


def window_scores(sharp: np.ndarray, size: int, stride: int) -> list[tuple[float, int, int]]:
    """``(score, y, x)`` of every grid window: mean gradient magnitude of the grey sharp frame."""
    grey = sharp.astype(np.float64).mean(axis=2)
    gy, gx = np.gradient(grey)
    mag = np.hypot(gx, gy)
    h, w = grey.shape
    out = []
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            out.append((float(mag[y:y + size, x:x + size].mean()), y, x))
    return out


def choose_windows(sharp: np.ndarray, size: int, stride: int, per_pair: int) -> list[tuple[int, int]]:
    """The rule's ``(y, x)`` windows, best first."""
    ranked = sorted(window_scores(sharp, size, stride), key=lambda s: (-s[0], s[1], s[2]))
    taken: list[tuple[int, int]] = []
    for _, y, x in ranked:
        if all(abs(y - ty) >= size or abs(x - tx) >= size for ty, tx in taken):
            taken.append((y, x))
        if len(taken) == per_pair:
            break
    return taken


def make_crops(src: Path, out: Path, size: int = 192, stride: int = 64, per_pair: int = 2) -> int:
    """Write the crops of every pair in ``src/{input,target}`` to ``out`` (atomically); return the count."""
    blur_dir, sharp_dir = src / "input", src / "target"
    names = sorted(p.name for p in sharp_dir.glob("*.png")) if sharp_dir.is_dir() else []
    if not names:
        raise InvalidInputError(f"{src}: no pairs (expected {sharp_dir}/*.png and the same names in {blur_dir})")
    rows = []
    with atomic_dir(out) as tmp:
        for name in names:
            sharp = read_rgb_uint8(sharp_dir / name)
            blur = read_rgb_uint8(blur_dir / name)
            if blur.shape != sharp.shape:
                raise InvalidInputError(f"{blur_dir / name}: size {blur.shape[:2]} differs from {sharp_dir / name} {sharp.shape[:2]}")
            for k, (y, x) in enumerate(choose_windows(sharp, size, stride, per_pair)):
                crop_name = f"{Path(name).stem}_{k}.png"
                for folder, image in (("input", blur), ("target", sharp)):
                    (tmp / folder).mkdir(exist_ok=True)
                    (tmp / folder / crop_name).write_bytes(encode_png(image[y:y + size, x:x + size]))
                rows.append(f"| {crop_name} | {name} | ({x}, {y}, {x + size}, {y + size}) |")
        text = ATTRIBUTION.format(per_pair=per_pair, size=size, stride=stride) + "\n".join(rows) + "\n"
        (tmp / "README.md").write_text(text)
    return len(rows)
