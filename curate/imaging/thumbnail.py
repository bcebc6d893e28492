"""Small JPEG thumbnails for people to look at (the report, ``curate show --open``, the few dropped
rows the ledger keeps a picture of), through the same bounded decoder as the pipeline: a thumbnail
of an untrusted image never decodes more than it needs (JPEGs are DCT-reduced to about ``side``)."""

from __future__ import annotations

from curate.imaging.decode import ImageRejected, decode
from curate.imaging.resize import Encoder, orient, resize

THUMBNAIL_SIDE = 128
#: Decode budget of a thumbnail: 64 MB (a 4,600 x 4,600 RGB picture) is plenty for an image that
#: already passed the pipeline's own budget, since JPEGs decode at 1/8 size here.
_MAX_DECODED_BYTES = 64 * 1024 * 1024
_ENCODE = Encoder("jpg", 80)


def thumbnail_jpeg(image: bytes | None, side: int = THUMBNAIL_SIDE) -> bytes | None:
    """A JPEG whose longer side is at most ``side``, shown as EXIF orients it; None for no image or
    one that does not decode within budget."""
    if not image:
        return None
    try:
        decoded = decode(image, lambda size: _fit(size, side), _MAX_DECODED_BYTES)
    except ImageRejected:
        return None
    pixels = orient(decoded.pixels, decoded.orientation)
    height, width = pixels.shape[:2]
    target = _fit((width, height), side)
    return _ENCODE(resize(pixels, target, downscale=True) if target != (width, height) else pixels)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))
