"""pipelines.data.pairs: layouts, pairing by relative path, clear errors, crops/augmentation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.inference import from_uint8_image
from pipelines.data.pairs import (
    Pair,
    PairedImageDataset,
    detect_layout,
    find_pairs,
    make_loader,
    split_train_val,
)
from pipelines.data.image_files import ImageReadError, write_png


def _img(value: int, h: int = 12, w: int = 16) -> np.ndarray:
    """An image whose first pixel encodes ``value`` (to check which files were paired)."""
    image = np.random.default_rng(value).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[0, 0] = value
    return image


def _pair(blur_path: Path, sharp_path: Path, value: int, h: int = 12, w: int = 16):
    sharp = _img(value, h, w)
    write_png(sharp_path, sharp)
    write_png(blur_path, 255 - sharp)  # blur = negative of sharp: alignment is checkable after augmentation


def _check_partners(pairs):
    for pair in pairs:
        blur, sharp = cv2.imread(str(pair.blur)), cv2.imread(str(pair.sharp))
        np.testing.assert_array_equal(blur, 255 - sharp)


def test_gopro_layout(tmp_path):
    for v, (scene, name) in enumerate([("GOPR01", "000002.png"), ("GOPR01", "000010.png"), ("GOPR02", "a.png")]):
        _pair(tmp_path / scene / "blur" / name, tmp_path / scene / "sharp" / name, v)
    (tmp_path / "GOPR02" / "blur_gamma").mkdir()  # GoPro's extra folder is ignored
    (tmp_path / "GOPR01" / "sharp" / "notes.txt").write_text("not an image")
    pairs = find_pairs(tmp_path)
    assert detect_layout(tmp_path) == "gopro"
    assert [p.name for p in pairs] == ["GOPR01/000002.png", "GOPR01/000010.png", "GOPR02/a.png"]
    _check_partners(pairs)


@pytest.mark.parametrize("folders", [("input", "target"), ("blur", "sharp")])
def test_flat_layouts(tmp_path, folders):
    blur_dir, sharp_dir = (tmp_path / f for f in folders)
    for v, name in enumerate(["b.png", "a.png", "c.png"]):
        _pair(blur_dir / name, sharp_dir / name, v)
    (sharp_dir / ".hidden.png").write_bytes(b"ignored")
    assert detect_layout(tmp_path) == "flat"
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a.png", "b.png", "c.png"]
    _check_partners(pairs)


def test_realblur_layout_matches_by_relative_path(tmp_path):
    # Sort order alone would mis-pair scene1/2.png with scene2/1.png; relative paths cannot.
    _pair(tmp_path / "blur" / "scene1" / "2.png", tmp_path / "sharp" / "scene1" / "2.png", 1)
    _pair(tmp_path / "blur" / "scene2" / "1.png", tmp_path / "sharp" / "scene2" / "1.png", 2)
    assert detect_layout(tmp_path) == "realblur"
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["scene1/2.png", "scene2/1.png"]
    _check_partners(pairs)


def test_real_gopro_dev_samples(shared_dir):
    root = shared_dir / "realdata" / "gopro" / "dev"
    if not root.is_dir():
        pytest.skip("realdata/gopro/dev is not present")
    pairs = find_pairs(root)
    assert detect_layout(root) == "flat" and len(pairs) == 11
    assert all(p.blur.parent.name == "input" and p.sharp.parent.name == "target" for p in pairs)
    item = PairedImageDataset(pairs[:1], crop_size=64, augment=True, value_range="unit")[0]
    assert item["blur"].shape == item["sharp"].shape == (3, 64, 64)
    assert 0.0 <= float(item["blur"].min()) and float(item["blur"].max()) <= 1.0


@pytest.mark.parametrize("case,problem", [
    ("missing", "does not exist"), ("file", "is a file"), ("empty", "no images"), ("unknown", "no recognised"),
    ("half", "no sharp/ folder"), ("scene_half", "no sharp/ folder"), ("stray_scene", "scene folder without"),
    ("unpaired_blur", "no sharp partner"), ("unpaired_sharp", "no blurred partner"), ("splits", "pass"),
])
def test_bad_folders_are_clear_errors(tmp_path, case, problem):
    root = tmp_path / "ds"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        (root / "input").mkdir(parents=True)
        (root / "target").mkdir()
    elif case == "unknown":
        (root / "photos").mkdir(parents=True)
        write_png(root / "photos" / "a.png", _img(1))
    elif case == "half":
        write_png(root / "blur" / "a.png", _img(1))
    elif case == "scene_half":
        write_png(root / "s1" / "blur" / "a.png", _img(1))
    elif case == "stray_scene":
        _pair(root / "s1" / "blur" / "a.png", root / "s1" / "sharp" / "a.png", 1)
        write_png(root / "s2" / "images" / "a.png", _img(1))
    elif case in ("unpaired_blur", "unpaired_sharp"):
        _pair(root / "input" / "a.png", root / "target" / "a.png", 1)
        extra = "input" if case == "unpaired_blur" else "target"
        write_png(root / extra / "zz_extra.png", _img(2))
    elif case == "splits":
        _pair(root / "train" / "s1" / "blur" / "a.png", root / "train" / "s1" / "sharp" / "a.png", 1)
    exc = FileNotFoundError if case == "missing" else ValueError
    with pytest.raises(exc, match=problem) as err:
        find_pairs(root)
    assert str(root) in str(err.value)
    if case.startswith("unpaired"):
        assert "zz_extra.png" in str(err.value)


def _flat(tmp_path, n=3, h=12, w=16) -> Path:
    for v in range(n):
        _pair(tmp_path / "input" / f"{v}.png", tmp_path / "target" / f"{v}.png", v, h, w)
    return tmp_path


def test_bad_files_name_the_file_when_read(tmp_path):
    root = _flat(tmp_path)
    data = (root / "input" / "1.png").read_bytes()
    (root / "input" / "1.png").write_bytes(data[: len(data) // 2])
    write_png(root / "target" / "2.png", _img(2, 12, 15))
    (root / "input" / "0.png").write_bytes(b"garbage")
    ds = PairedImageDataset(root)
    with pytest.raises(ImageReadError, match="not an image") as err:
        ds[0]
    assert "0.png" in str(err.value)
    with pytest.raises(ImageReadError, match="truncated") as err:
        ds[1]
    assert str(root / "input" / "1.png") in str(err.value)
    with pytest.raises(ValueError, match="size mismatch") as err:
        ds[2]
    assert "16x12" in str(err.value) and "15x12" in str(err.value) and "2.png" in str(err.value)


def test_grayscale_rgba_and_16bit_pairs_are_read_as_rgb(tmp_path):
    gray = _img(1)[..., 0]
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    cv2.imwrite(str(tmp_path / "input" / "g.png"), gray)
    cv2.imwrite(str(tmp_path / "target" / "g.png"), np.dstack([gray, gray, gray, np.full_like(gray, 9)]))
    cv2.imwrite(str(tmp_path / "input" / "h.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "target" / "h.png"), np.dstack([gray] * 3))
    ds = PairedImageDataset(tmp_path, value_range="unit")
    for item in (ds[0], ds[1]):
        assert item["blur"].shape == item["sharp"].shape == (3, 12, 16)
        torch.testing.assert_close(item["blur"], item["sharp"], rtol=0, atol=0)


def test_crop_larger_than_image_is_a_clear_error(tmp_path):
    ds = PairedImageDataset(_flat(tmp_path, n=1), crop_size=13)
    with pytest.raises(ValueError, match="16x12.*crop_size 13") as err:
        ds[0]
    assert "0.png" in str(err.value)
    with pytest.raises(ValueError, match="value_range"):
        PairedImageDataset(tmp_path, value_range="minus_one_one")


def test_crops_and_augmentation_keep_pairs_aligned_and_are_reproducible(tmp_path):
    root = _flat(tmp_path, n=2, h=20, w=24)
    ds = PairedImageDataset(root, crop_size=8, augment=True, value_range="unit", seed=5)
    outputs = set()
    sharp_full = from_uint8_image(_img(0, 20, 24), "unit")
    windows = {tuple(torch.rot90(t, k, (1, 2)).flatten().tolist())
               for x in range(17) for y in range(13)
               for base in [sharp_full[:, y:y + 8, x:x + 8]]
               for t in (base, base.flip(2), base.flip(1), base.flip(1).flip(2)) for k in range(4)}
    for epoch in range(24):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["name"] == "0.png"
        torch.testing.assert_close(item["blur"], 1.0 - item["sharp"], rtol=0, atol=1e-6)  # aligned
        key = tuple(item["sharp"].flatten().tolist())
        assert key in windows  # a crop of the sharp image, flipped / rotated
        outputs.add(key)
    assert len(outputs) > 12  # crops and transforms vary with the epoch
    ds.set_epoch(7)
    again = PairedImageDataset(root, crop_size=8, augment=True, value_range="unit", seed=5)
    again.set_epoch(7)
    torch.testing.assert_close(ds[1]["blur"], again[1]["blur"], rtol=0, atol=0)


def test_decoded_pair_cache_gives_the_same_items_within_its_budget(tmp_path):
    """``cache_bytes``: decoded pairs are kept (first come first kept) while they fit; items are identical
    with and without the cache, over epochs, and the cached arrays cannot be altered by a caller."""
    root = _flat(tmp_path, n=3, h=20, w=24)
    pair_bytes = 2 * 20 * 24 * 3
    plain = PairedImageDataset(root, crop_size=8, augment=True, seed=3)
    cached = PairedImageDataset(root, crop_size=8, augment=True, seed=3, cache_bytes=2 * pair_bytes + 1)
    for epoch in range(3):
        for ds in (plain, cached):
            ds.set_epoch(epoch)
        for i in range(3):
            a, b = plain[i], cached[i]
            torch.testing.assert_close(a["blur"], b["blur"], rtol=0, atol=0)
            torch.testing.assert_close(a["sharp"], b["sharp"], rtol=0, atol=0)
    assert sorted(cached._cache) == [0, 1] and cached._cached_bytes == 2 * pair_bytes  # the third did not fit
    blur, _ = cached.read_pair(0)
    assert blur is cached.read_pair(0)[0] and not blur.flags.writeable
    uncached = PairedImageDataset(root)  # the default keeps nothing
    uncached[1]
    assert uncached._cache == {}
    with pytest.raises(ValueError, match="cache_bytes"):
        PairedImageDataset(root, cache_bytes=-1)
    (root / "input" / "0.png").unlink()  # a cached pair is served from memory
    assert cached[0]["name"] == "0.png"


def _pairs(n):
    return [Pair(f"s/{i:03d}.png", Path(f"b{i}"), Path(f"s{i}")) for i in range(n)]


def test_split_train_val_is_deterministic_and_disjoint():
    pairs = _pairs(20)
    train, val = split_train_val(pairs, 0.1, seed=0)
    assert len(val) == 2 and len(train) == 18
    assert {p.name for p in train} | {p.name for p in val} == {p.name for p in pairs}
    assert not {p.name for p in train} & {p.name for p in val}
    assert split_train_val(list(reversed(pairs)), 0.1, seed=0) == (train, val)  # input order irrelevant
    assert any(split_train_val(pairs, 0.1, seed=s)[1] != val for s in range(1, 5))
    assert split_train_val(pairs, 0.0, seed=0) == (sorted(pairs, key=lambda p: p.name), [])
    assert len(split_train_val(_pairs(3), 0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="training pair"):
        split_train_val(_pairs(1), 0.5, seed=0)


def _names(loader):
    return [name for batch in loader for name in batch["name"]]


def test_loader_order_depends_only_on_seed_and_epoch(tmp_path):
    root = _flat(tmp_path, n=6)
    ds = PairedImageDataset(root, crop_size=8, augment=True)
    loader = make_loader(ds, batch_size=2, shuffle=True, seed=3)
    epoch0 = _names(loader)
    ds.set_epoch(1)
    epoch1 = _names(loader)
    assert sorted(epoch0) == sorted(epoch1) == [f"{i}.png" for i in range(6)] and epoch0 != epoch1
    resumed = PairedImageDataset(root, crop_size=8, augment=True)
    resumed.set_epoch(1)
    resumed_loader = make_loader(resumed, batch_size=2, shuffle=True, seed=3)
    batch_a, batch_b = next(iter(loader)), next(iter(resumed_loader))
    assert batch_a["name"] == batch_b["name"] and batch_a["blur"].shape == (2, 3, 8, 8)
    torch.testing.assert_close(batch_a["blur"], batch_b["blur"], rtol=0, atol=0)
    assert _names(make_loader(ds, batch_size=4, shuffle=False, seed=3)) == [f"{i}.png" for i in range(6)]


def test_worker_processes_see_the_epoch(tmp_path):
    root = _flat(tmp_path, n=4)
    sharp16 = np.ascontiguousarray(_img(7)[..., ::-1]).astype(np.uint16) * 257
    cv2.imwrite(str(root / "input" / "x16.png"), 65535 - sharp16)  # a 16-bit pair: decoded by OpenCV
    cv2.imwrite(str(root / "target" / "x16.png"), sharp16)
    # Start OpenCV's thread pool in this process first: forked workers must not deadlock on it.
    cv2.warpAffine(np.zeros((512, 512, 3), np.float32), np.eye(2, 3), (512, 512))
    ds = PairedImageDataset(root, crop_size=8, augment=True)
    ds.set_epoch(2)
    in_process = [b["blur"] for b in make_loader(ds, batch_size=2, shuffle=True, seed=1)]
    in_workers = [b["blur"] for b in make_loader(ds, batch_size=2, shuffle=True, seed=1, num_workers=1)]
    for a, b in zip(in_process, in_workers, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
