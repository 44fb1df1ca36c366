"""Process-wide limits every image reader applies (set from params by :func:`pipelines.core.config.load_params`).

``max_pixels`` (params ``data.max_pixels``, default an 8K frame, 7680 x 4320): an image whose header
declares more pixels is refused before any pixel is decoded (:mod:`pipelines.data.image_files`), so a
decompression bomb (a tiny file declaring 20000 x 20000) or an oversized photo never fills memory.
Commands that read no params (``deblur``) use the default.

:data:`ARCHIVE_CAPS`: the most a known dataset archive may download and unpack to (GB), sized from the real
archives with a margin: the defaults of params ``fetch.datasets.<name>.max_download_gb`` / ``max_unpacked_gb``
(:class:`pipelines.core.config.DatasetSource`), so a bomb or an endless body stops long before a disk fills.
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


# archive file name -> (max_download_gb, max_unpacked_gb). The real archives hold PNG frames, which zip / gzip
# barely compress (unpacked ~ the archive's size); the caps leave ~1.5x for a re-packed mirror.
#   GOPRO_Large.zip  9.54 GB (the Hugging Face copy of the author's file; "9.5G" in SeungjunNah/
#                    DeepDeblur_release#19): 3,214 pairs at 1280x720 + blur_gamma, ~10 GB unpacked
#   RealBlur.tar.gz  13.1 GB (the Hugging Face copy chitradrishti/real-blur): RealBlur-J and -R, 4,738 pairs
#                    each, ~13-14 GB unpacked
#   HIDE_dataset.zip no published size found: 8,422 pairs at 1280x720 (PNG ~1.2 MB a frame) ~ 20 GB, estimated
ARCHIVE_CAPS: dict[str, tuple[float, float]] = {
    "GOPRO_Large.zip": (14.0, 16.0),
    "RealBlur.tar.gz": (18.0, 22.0),
    "HIDE_dataset.zip": (30.0, 35.0),
}
