"""The one image reader / writer every stage uses.

Reading always returns an ``(H, W, 3)`` ``uint8`` RGB array, with explicit, documented conversions:

* grayscale (``L``, ``1``, 16-bit ``I;16*`` / ``I``) -> the one channel replicated to R, G and B;
* alpha (``RGBA``, ``LA``, ``PA``) -> the alpha channel is DROPPED (no compositing onto a background);
* palette (``P``) -> expanded to RGB through its palette;
* 16 bits per sample -> ``round(x / 257)`` (maps 0..65535 exactly onto 0..255). Pillow decodes 16-bit
  RGB(A) PNGs to 8 bits by keeping the high byte only, so those are decoded with OpenCV instead;
* ``CMYK`` / ``YCbCr`` -> Pillow's conversion to RGB;
* an EXIF orientation tag (JPEG photos) is applied, so the array is upright as viewers show it.

A file that holds several frames (an animated PNG, GIF or WebP, a multi-page TIFF) is refused, naming
it and the frame count (a JPEG with embedded pictures, MPO, is read: its first picture is the photo).

A file that is missing, unreadable, truncated, corrupt or not an image raises :class:`ImageReadError`
(a ``ValueError``) whose message names the file and the problem. An image whose header declares more
pixels than :func:`pipelines.core.limits.max_pixels` (params ``data.max_pixels``, default 7680 x 4320) is
refused from its header, before any pixel is decoded, naming the file, its size and the limit
(:class:`ImageTooLargeError`); this replaces Pillow's own decompression-bomb check.

Writing (:func:`write_png`) is atomic and deterministic: the same array gives the same bytes.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pipelines.core.errors import InvalidInputError
from pipelines.core.files import write_bytes
from pipelines.core.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_KEY, max_pixels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
PNG_COMPRESSION = 3  # zlib level for written PNGs (fast; the bytes depend only on the array)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY_8BIT_MODES = {"L": "grayscale replicated to RGB", "1": "1-bit grayscale replicated to RGB"}
_GRAY_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageReadError(InvalidInputError):
    """An image file could not be read as an RGB image (the message names the file and why)."""


class ImageTooLargeError(ImageReadError):
    """An image declares more pixels than the limit (params ``data.max_pixels``)."""


def check_pixel_count(name: str, width: int, height: int) -> None:
    """Raise :class:`ImageTooLargeError` when ``width x height`` is over :func:`pipelines.core.limits.max_pixels`."""
    limit = max_pixels()
    if width * height > limit:
        default = " (the default: an 8K frame, 7680x4320)" if limit == DEFAULT_MAX_PIXELS else ""
        raise ImageTooLargeError(f"{name}: image is {width}x{height} = {width * height} pixels, over the limit of "
                                 f"{limit} pixels{default} ({MAX_PIXELS_KEY}): refused before decoding")


def check_single_frame(image: Image.Image, name: str) -> None:
    """Refuse an image file holding several frames (an animated PNG / GIF / WebP, a multi-page TIFF):
    which one is meant is not ours to guess, and reading the first would score or restore it silently.
    A JPEG with embedded pictures (MPO, as phones write: a preview, a depth map) is read: its first
    picture is the photo."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        kind = "multi-page TIFF" if image.format == "TIFF" else f"animated {image.format or 'image'}"
        raise ImageReadError(f"{name}: image file holds {frames} frames ({kind}); only single images are "
                             "supported: save the frame you mean as its own file")


@contextlib.contextmanager
def _size_checked_by_us():
    """Pillow's decompression-bomb check off (it warns, or fails without the size, at its own limit):
    every open in this module checks :func:`check_pixel_count` before decoding instead."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@dataclass(frozen=True)
class ImageInfo:
    """What the file held before conversion to 8-bit RGB."""

    path: str
    format: str  # Pillow format name, e.g. "PNG", "JPEG"
    mode: str  # Pillow mode of the file, e.g. "RGB", "RGBA", "L", "P", "I;16"
    bits_per_sample: int  # 8 or 16 (1 for bilevel images)
    width: int
    height: int
    conversions: tuple[str, ...]  # what was done to reach (H, W, 3) uint8; empty = nothing


def read_rgb_uint8(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` ``uint8`` RGB array (see the module doc)."""
    return read_image(path)[0]


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file; return the ``(H, W, 3)`` ``uint8`` RGB array and an :class:`ImageInfo`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read image file ({err.strerror or err})") from None
    if not data:
        raise ImageReadError(f"{path}: image file is empty (0 bytes)")
    return decode_image(data, str(path))


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`read_image` would return it (EXIF orientation
    applied), from its header only: cheap enough to check a whole dataset before work starts. A
    missing or unrecognisable file raises :class:`ImageReadError`; pixel data is not decoded, so a
    truncated file is only detected when it is read."""
    path = Path(path)
    try:
        with warnings.catch_warnings(), _size_checked_by_us():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                check_pixel_count(str(path), width, height)
                check_single_frame(image, str(path))
                try:
                    orientation = image.getexif().get(0x0112, 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block: read_image ignores it too
                    orientation = 1
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file does not exist") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: corrupt or unreadable image header ({str(err).strip() or type(err).__name__})") \
            from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_image(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, ImageInfo]:
    """Decode encoded image bytes (``name`` is used in error messages)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # another library may have switched it on globally
    try:
        with warnings.catch_warnings(), _size_checked_by_us():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            check_pixel_count(name, *image.size)  # from the header, before any pixel is decoded
            check_single_frame(image, name)
            image.load()  # decodes every pixel: truncated / corrupt data fail here
            fmt, mode, (width, height) = image.format or "?", image.mode, image.size
            image, transposed = _apply_exif_orientation(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{name}: image too large to decode safely ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        problem = str(err).strip() or type(err).__name__
        if "truncated" in problem.lower():
            raise ImageReadError(f"{name}: image file is truncated (the data ends before the last pixel)") from None
        raise ImageReadError(f"{name}: corrupt or unreadable image data ({problem})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous

    conversions: list[str] = []
    if transposed:
        conversions.append("EXIF orientation applied")
    bits = 1 if mode == "1" else 8
    if _is_16bit_color_png(data):
        bits = 16
        array, extra = _decode_16bit_color_png(data, name)
        conversions += extra
    else:
        if mode in _GRAY_16BIT_MODES:
            bits = 16
        array, extra = _to_rgb_uint8(image, name)
        conversions += extra
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:  # pragma: no cover - defensive
        raise ImageReadError(f"{name}: internal error: decoded to {array.shape} {array.dtype}")
    info = ImageInfo(path=name, format=fmt, mode=mode, bits_per_sample=bits, width=width, height=height,
                     conversions=tuple(conversions))
    return np.ascontiguousarray(array), info


def _apply_exif_orientation(image: Image.Image) -> tuple[Image.Image, bool]:
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unreadable
        return image, False
    if orientation in (None, 1):
        return image, False
    return ImageOps.exif_transpose(image), True


def _round_16_to_8(values: np.ndarray) -> np.ndarray:
    """``round(x / 257)``: 0 -> 0, 65535 -> 255, exact integer arithmetic (ties cannot occur)."""
    return ((values.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


def _to_rgb_uint8(image: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8), []
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3], ["alpha channel dropped"]
    if mode in _GRAY_8BIT_MODES:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), [_GRAY_8BIT_MODES[mode]]
    if mode in ("LA", "La"):
        gray = np.asarray(image.convert("LA"), dtype=np.uint8)[..., 0]
        return np.repeat(gray[..., None], 3, axis=2), ["alpha channel dropped", "grayscale replicated to RGB"]
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return rgba[..., :3], ["palette expanded to RGB"] + (["alpha channel dropped"] if has_alpha else [])
    if mode in _GRAY_16BIT_MODES:
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(f"{name}: integer image with values outside 0..65535 (mode {mode}); "
                                 "only 8- and 16-bit images are supported")
        gray = _round_16_to_8(values.astype(np.int64))
        return np.repeat(gray[..., None], 3, axis=2), ["16-bit rounded to 8-bit (x / 257)",
                                                       "grayscale replicated to RGB"]
    if mode in ("CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8), [f"{mode} converted to RGB"]
    raise ImageReadError(f"{name}: unsupported image mode {mode!r} (supported: RGB, RGBA, L, LA, P, 1, "
                         "16-bit grayscale, CMYK, YCbCr)")


def _is_16bit_color_png(data: bytes) -> bool:
    """A PNG whose IHDR says 16 bits per sample and colour type RGB (2) or RGBA (6)."""
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    bit_depth, color_type = data[24], data[25]
    return bit_depth == 16 and color_type in (2, 6)


def _decode_16bit_color_png(data: bytes, name: str) -> tuple[np.ndarray, list[str]]:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.dtype != np.uint16 or bgr.ndim != 3 or bgr.shape[2] not in (3, 4):
        raise ImageReadError(f"{name}: corrupt or unreadable 16-bit PNG data")
    conversions = ["16-bit rounded to 8-bit (x / 257)"]
    if bgr.shape[2] == 4:
        conversions.insert(0, "alpha channel dropped")
    rgb = bgr[..., 2::-1]
    return _round_16_to_8(rgb), conversions


def encode_png(array: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` (RGB) or ``(H, W)`` ``uint8`` array as PNG bytes (deterministic)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png: expected a uint8 array, got {array.dtype} "
                         "(convert explicitly, e.g. with models.inference.to_uint8_image)")
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[..., ::-1]  # OpenCV expects BGR
    elif array.ndim != 2:
        raise ValueError(f"encode_png: expected shape (H, W, 3) or (H, W), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"encode_png: empty image of shape {array.shape}")
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - OpenCV failure
        raise ValueError(f"encode_png: OpenCV could not encode an array of shape {array.shape}")
    return buffer.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray) -> bytes:
    """Write ``array`` (``(H, W, 3)`` RGB or ``(H, W)`` ``uint8``) to ``path`` as PNG, atomically.

    Returns the bytes written (e.g. to hash them without reading the file back).
    """
    try:
        data = encode_png(array)
    except ValueError as err:
        raise InvalidInputError(f"{path}: {err}") from None
    write_bytes(path, data)
    return data
