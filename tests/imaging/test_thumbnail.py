"""Thumbnails: bounded, oriented, None for what is not an image."""

import io

import numpy as np
from PIL import Image

from curate.imaging.thumbnail import thumbnail_jpeg


def _encoded(array: np.ndarray, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt, **save)
    return out.getvalue()


def test_a_large_jpeg_fits_the_side_keeping_its_aspect():
    thumb = thumbnail_jpeg(_encoded(np.full((600, 900, 3), 200, np.uint8), "JPEG"))
    image = Image.open(io.BytesIO(thumb))
    assert (image.format, image.size) == ("JPEG", (128, 85))


def test_a_small_image_is_not_enlarged():
    assert Image.open(io.BytesIO(thumbnail_jpeg(_encoded(np.zeros((20, 10), np.uint8), "PNG")))).size == (10, 20)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    thumb = thumbnail_jpeg(_encoded(np.zeros((100, 300, 3), np.uint8), "JPEG", exif=exif))
    assert Image.open(io.BytesIO(thumb)).size == (43, 128)


def test_no_image_or_junk_gives_none():
    assert thumbnail_jpeg(None) is None
    assert thumbnail_jpeg(b"") is None
    assert thumbnail_jpeg(b"not an image") is None
