"""Pixel modes and orientation: every PIL mode becomes the right 8-bit pixels, EXIF
orientation is applied, alpha is matted on white exactly as img2dataset does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imaging_samples import encode, noise, png_rows, with_orientation
from PIL import Image, ImageOps

from curate.imaging import ImageTransformer
from curate.stages.base import ImageOutput

AS_IS = ImageOutput(resize_mode="no", image_format="png", encode_quality=1)  # lossless, untouched geometry


def pixels_of(body: bytes, output: ImageOutput = AS_IS) -> tuple[np.ndarray, tuple]:
    result = ImageTransformer(output)(body)
    assert result.reason is None, result.error
    with Image.open(io.BytesIO(result.data)) as image:
        return np.asarray(image), (result.width, result.height, result.orig_width, result.orig_height)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation) -> None:
    stored = noise(40, 24, seed=orientation)
    body = with_orientation(stored, orientation, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("RGB"))
    pixels, sizes = pixels_of(body)
    assert np.array_equal(pixels, expected)
    displayed = (24, 40) if orientation >= 5 else (40, 24)
    assert sizes == (*displayed, *displayed)


def test_a_rotated_photo_comes_out_upright_and_resized() -> None:
    # stored 200 x 100 with a red left half; orientation 6 (rotate 90 clockwise to show):
    # shown 100 x 200, red on top
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:, :100] = (255, 0, 0)
    stored[:, 100:] = (0, 0, 255)
    body = with_orientation(stored, 6, quality=95)
    pixels, sizes = pixels_of(body, ImageOutput(image_size=50, resize_mode="keep_ratio", image_format="png"))
    assert sizes == (50, 100, 100, 200)
    assert (pixels[:45, :, 0] > 240).all() and (pixels[:45, :, 2] < 15).all()  # top: red
    assert (pixels[55:, :, 2] > 240).all() and (pixels[55:, :, 0] < 15).all()  # bottom: blue


def test_sixteen_bit_gray_keeps_its_grey() -> None:
    # img2dataset's OpenCV path saturates 16-bit samples into 8 bits: this came out white
    row = np.array([0x8000, 0x1234, 0xFFFF, 0x00FF], ">u2").tobytes()
    pixels, _ = pixels_of(png_rows(4, 3, color_type=0, bit_depth=16, row=row))
    assert pixels.tolist() == [[0x80, 0x12, 0xFF, 0x00]] * 3


def test_sixteen_bit_gray_resized() -> None:
    row = np.full(300, 0x8000, ">u2").tobytes()
    pixels, _ = pixels_of(png_rows(300, 200, color_type=0, bit_depth=16, row=row),
                          ImageOutput(image_size=64, resize_mode="border", image_format="png"))
    assert pixels.shape == (64, 64)  # gray stays one channel, as img2dataset writes it
    assert set(np.unique(pixels[11:53])) == {128} and set(np.unique(pixels[:10])) == {255}


def test_palette_with_transparency_is_matted_on_white() -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.putdata([0, 1, 2])
    opaque, _ = pixels_of(encode(image, "PNG"))
    assert opaque.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]
    clear, _ = pixels_of(encode(image, "PNG", transparency=2))
    assert clear.tolist() == [[[255, 0, 0], [0, 255, 0], [255, 255, 255]]]
    gif, _ = pixels_of(encode(image, "GIF", transparency=1))
    assert gif.tolist() == [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]]


def test_gray_with_alpha() -> None:
    # rint(alpha / 255 * gray + 255 - alpha): (100, 128) -> 177, transparent -> white
    image = Image.frombytes("LA", (3, 1), bytes([100, 128, 100, 0, 100, 255]))
    pixels, _ = pixels_of(encode(image, "PNG"))
    assert pixels.tolist() == [[177, 255, 100]]


def test_rgba_is_matted_exactly_as_img2dataset_does() -> None:
    rgba = noise(64, 64, channels=4, seed=3)
    rgba[0, :4, 3] = (0, 255, 1, 254)
    alpha = rgba[..., 3:].astype(np.float64)
    expected = np.rint((alpha / 255 * rgba[..., :3] + 255 - alpha).clip(0, 255)).astype(np.uint8)  # their formula
    pixels, _ = pixels_of(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.array_equal(pixels, expected)
    assert (pixels[0, 0] == 255).all()  # fully transparent: white background


def test_cmyk_jpeg() -> None:
    cmyk = Image.fromarray(noise(32, 16, channels=4, seed=4), "CMYK")
    body = encode(cmyk, "JPEG", quality=95)
    pixels, _ = pixels_of(body)
    assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))


def test_bilevel_gray_and_rgb_keep_their_values() -> None:
    bilevel = Image.frombytes("1", (8, 1), bytes([0b10100000]))
    assert pixels_of(encode(bilevel, "PNG"))[0].tolist() == [[255, 0, 255, 0, 0, 0, 0, 0]]
    gray = noise(17, 5, channels=1, seed=5)
    assert np.array_equal(pixels_of(encode(Image.fromarray(gray), "PNG"))[0], gray)
    rgb = noise(17, 5, seed=6)
    for fmt in ("PNG", "BMP", "TIFF", "PPM"):
        assert np.array_equal(pixels_of(encode(Image.fromarray(rgb), fmt))[0], rgb), fmt


def test_32_bit_integer_is_read_as_16_bit() -> None:
    values = np.array([[0, 40000, 65535, 70000, -5]], np.int32)
    pixels, _ = pixels_of(encode(Image.fromarray(values, "I"), "TIFF"))
    assert pixels.tolist() == [[0, 156, 255, 255, 0]]


def test_float_uses_pils_0_to_255_scale() -> None:
    values = np.array([[0.0, 127.6, 255.0, 300.0, -5.0]], np.float32)
    pixels, _ = pixels_of(encode(Image.fromarray(values, "F"), "TIFF"))
    assert pixels.tolist() == [[0, 128, 255, 255, 0]]


def test_gray_output_is_one_channel_jpeg() -> None:
    body = encode(Image.fromarray(noise(100, 50, channels=1)), "JPEG")
    result = ImageTransformer(ImageOutput(image_size=32))(body)
    with Image.open(io.BytesIO(result.data)) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "L", (32, 32))
