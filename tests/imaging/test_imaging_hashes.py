"""The two image hashes (issue 6 §2): ``orig_hash`` of the bytes as fetched and ``pixel_hash`` of
the output pixels before encoding, filled into every image column by ``ImageResult.fill``."""

from __future__ import annotations

import hashlib

import numpy as np
from imaging_samples import encode, noise
from PIL import Image, PngImagePlugin

from curate.imaging import ImageTransformer
from curate.imaging.transform import bytes_hash, pixels_hash
from curate.schema import IMAGE_COLUMN_TYPES
from curate.stages.base import ImageOutput

OUTPUT = ImageOutput(image_size=32, resize_mode="border", image_format="jpg")


def filled(body: bytes) -> dict:
    """The image columns of one row, as the download stage and tar inputs fill them."""
    columns: dict[str, list] = {name: [None] for name in IMAGE_COLUMN_TYPES}
    ImageTransformer(OUTPUT)(body).fill(columns, 0, body)
    return {name: values[0] for name, values in columns.items()}


def png_with_text(image: Image.Image, text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    return encode(image, "PNG", pnginfo=info)


def test_same_pixels_in_different_files_share_pixel_hash_not_orig_hash() -> None:
    image = Image.fromarray(noise(48, 40, seed=3))
    plain = encode(image, "PNG")
    with_text = png_with_text(image, "served by another mirror")
    exif = Image.Exif()
    exif[0x0131] = "an image editor"  # Software: metadata that changes the file, not the picture
    with_exif = encode(image, "PNG", exif=exif.tobytes())
    bodies = [plain, with_text, with_exif]
    assert len(set(bodies)) == 3
    rows = [filled(body) for body in bodies]
    assert len({row["pixel_hash"] for row in rows}) == 1
    assert len({row["orig_hash"] for row in rows}) == 3
    assert [row["orig_hash"] for row in rows] == [bytes_hash(body) for body in bodies]


def test_a_lossy_re_encoding_is_other_pixels() -> None:
    image = Image.fromarray(noise(48, 40, seed=4))
    assert filled(encode(image, "PNG"))["pixel_hash"] != filled(encode(image, "JPEG", quality=100))["pixel_hash"]


def test_hashes_are_64_bit_signed_blake2b() -> None:
    body = b"any bytes at all"
    assert bytes_hash(body) == int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "little", signed=True)
    assert IMAGE_COLUMN_TYPES["orig_hash"] == IMAGE_COLUMN_TYPES["pixel_hash"]
    assert str(IMAGE_COLUMN_TYPES["orig_hash"]) == "int64"


def test_pixel_hash_includes_the_shape() -> None:
    flat = np.arange(24, dtype=np.uint8)
    assert pixels_hash(flat.reshape(4, 6)) != pixels_hash(flat.reshape(6, 4))
    assert pixels_hash(flat.reshape(2, 4, 3)) != pixels_hash(flat.reshape(2, 12))


def test_pixel_hash_is_of_the_output_before_encoding() -> None:
    body = encode(Image.fromarray(noise(48, 40, seed=5)), "PNG")
    transformer = ImageTransformer(OUTPUT)
    assert transformer(body).pixel_hash == pixels_hash(transformer.pixels(body).array)


def test_a_rejected_body_has_orig_hash_and_no_pixel_hash() -> None:
    row = filled(b"<html>not an image</html>")
    assert row["orig_hash"] == bytes_hash(b"<html>not an image</html>") and row["orig_bytes"] == 25
    assert row["pixel_hash"] is None and row["image"] is None


def test_orig_format_is_the_files_real_format_not_its_name() -> None:
    """cc3m_image keeps JPEG only (Sharma et al. 2018 §3): the format is read from the bytes."""
    image = Image.fromarray(noise(40, 30))
    assert filled(encode(image, "JPEG"))["orig_format"] == "jpeg"
    assert filled(encode(image, "PNG"))["orig_format"] == "png"
    assert filled(encode(image, "WEBP"))["orig_format"] == "webp"
    assert filled(b"<html>not an image</html>")["orig_format"] is None
