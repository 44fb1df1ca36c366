"""pipelines.data.image_files: explicit conversions to 8-bit RGB, clear errors, deterministic atomic PNGs."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.data.image_files import ImageReadError, decode_image, encode_png, read_image, read_rgb_uint8, write_png


def _rgb(h=6, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_and_deterministic_bytes(tmp_path):
    image = _rgb()
    first = write_png(tmp_path / "a.png", image)
    second = write_png(tmp_path / "sub" / "b.png", image.copy())
    assert first == second == (tmp_path / "a.png").read_bytes()
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "sub" / "b.png"), image)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_write_png_rejects_non_uint8_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 4), np.uint8))
    assert not (tmp_path / "f.png").exists()


def test_grayscale_is_replicated(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    array, info = read_image(tmp_path / "g.png")
    assert array.shape == (6, 7, 3) and info.mode == "L"
    for c in range(3):
        np.testing.assert_array_equal(array[..., c], gray)
    assert "grayscale replicated to RGB" in info.conversions


def test_rgba_and_la_drop_alpha(tmp_path):
    rgba = np.dstack([_rgb(), np.full((6, 7), 17, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    array, info = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(array, rgba[..., :3])  # not composited onto a background
    assert info.mode == "RGBA" and "alpha channel dropped" in info.conversions
    Image.new("LA", (3, 2), (40, 0)).save(tmp_path / "la.png")
    assert (read_rgb_uint8(tmp_path / "la.png") == 40).all()


def test_palette_is_expanded(tmp_path):
    image = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    image.save(tmp_path / "p.png")
    array, info = read_image(tmp_path / "p.png")
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(array, expected)
    assert info.mode == "P"


def test_16bit_rgb_is_rounded_not_truncated(tmp_path):
    # 200 / 257 = 0.78: round -> 1, but the high byte (what Pillow gives) is 0.
    values = np.array([0, 257, 200, 0x80FE, 65535, 384, 385, 12345], np.uint16)
    rgb16 = np.stack([values, values[::-1], values], axis=1).reshape(1, 8, 3)
    cv2.imwrite(str(tmp_path / "c16.png"), np.ascontiguousarray(rgb16[..., ::-1]))  # OpenCV writes BGR
    array, info = read_image(tmp_path / "c16.png")
    expected = np.floor(rgb16.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(array, expected)
    assert info.bits_per_sample == 16 and any("16-bit" in c for c in info.conversions)
    assert array[0, 2, 0] == 1


def test_16bit_rgba_and_gray(tmp_path):
    rgba16 = np.random.default_rng(1).integers(0, 65536, (3, 4, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a16.png"), rgba16)  # BGRA
    expected = np.floor(rgba16[..., 2::-1].astype(np.float64) / 257 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "a16.png"), expected)
    gray16 = np.array([[0, 128, 65535, 40000]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    array, info = read_image(tmp_path / "g16.png")
    assert info.bits_per_sample == 16
    np.testing.assert_array_equal(array[..., 1], np.floor(gray16 / 257 + 0.5).astype(np.uint8))


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((4, 10, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image.save(tmp_path / "o.jpg", exif=exif)
    array, info = read_image(tmp_path / "o.jpg")
    assert array.shape == (10, 4, 3) and "EXIF orientation applied" in info.conversions


def test_corrupt_truncated_and_non_image_files_name_the_file(tmp_path):
    data = encode_png(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    cases = {
        "truncated.png": (data[: len(data) // 2], "truncated"),
        "corrupt.png": (data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:], "corrupt"),
        "text.png": (b"this is not an image", "not an image"),
        "empty.png": (b"", "empty"),
    }
    for name, (payload, problem) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ImageReadError, match=problem) as err:
            read_rgb_uint8(tmp_path / name)
        assert str(tmp_path / name) in str(err.value)
        assert isinstance(err.value, ValueError)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_rgb_uint8(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_rgb_uint8(tmp_path)


def test_truncated_jpeg_is_an_error_even_if_pillow_is_lenient(tmp_path, monkeypatch):
    from PIL import ImageFile

    buffer = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buffer, "JPEG")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what some libraries set globally
    with pytest.raises(ImageReadError, match="truncated"):
        decode_image(buffer.getvalue()[:-300], "x.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
