"""Process-wide limits every image reader applies (set from params by :func:`pipelines.core.config.load_params`).

``max_pixels`` (params ``data.max_pixels``, default an 8K frame, 7680 x 4320): an image whose header
declares more pixels is refused before any pixel is decoded (:mod:`pipelines.data.image_files`), so a
decompression bomb (a tiny file declaring 20000 x 20000) or an oversized photo never fills memory.
Commands that read no params (``deblur``) use the default.
"""
from __future__ import annotations

from pipelines.core.errors import InvalidInputError

DEFAULT_MAX_PIXELS = 7680 * 4320  # an 8K frame
MAX_PIXELS_KEY = "data.max_pixels"

_max_pixels = DEFAULT_MAX_PIXELS


def max_pixels() -> int:
    """The largest pixel count (width x height) an image may declare."""
    return _max_pixels


def set_max_pixels(value: int) -> None:
    global _max_pixels
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{MAX_PIXELS_KEY} must be an integer >= 1, got {value!r}")
    _max_pixels = value
