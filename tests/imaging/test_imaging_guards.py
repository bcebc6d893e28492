"""What is not a usable image gets its exact reason: not an image, truncated (by the decoder,
so trailing bytes after a complete JPEG are fine), undecodable, or a decompression bomb
refused from its header, before any pixel is decoded."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from imaging_samples import encode, header_only_png, noise, png_rows, smooth_rgb
from PIL import Image

from curate.imaging import DEFAULT_MAX_DECODED_BYTES, ImageTransformer
from curate.stages.base import ImageOutput

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def photo() -> bytes:
    return encode(Image.fromarray(noise(320, 240, seed=11)), "JPEG", quality=90)


def run(body: bytes, output: ImageOutput | None = None, **options):
    return ImageTransformer(output or ImageOutput(image_size=64), **options)(body)


def assert_refused(result, reason: str) -> None:
    assert result.reason == reason, result.error
    assert result.error and "\n" not in result.error
    assert (result.data, result.width, result.height, result.orig_width, result.orig_height) == (None,) * 5


def test_motion_photo_with_trailing_video_is_accepted() -> None:
    # phone "motion photos" append an MP4 after the JPEG's end-of-image marker; the old probe
    # wanted the body to end in FFD9 and dropped them as truncated_image
    trailer = b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000)
    plain, motion = run(photo()), run(photo() + trailer)
    assert motion.reason is None and motion.error is None
    assert (motion.data, motion.width, motion.orig_width, motion.orig_height) == (plain.data, 64, 320, 240)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg(keep) -> None:
    body = photo()
    result = run(body[: int(len(body) * keep)])
    assert_refused(result, "truncated_image")
    assert result.error.startswith("OSError: image file is truncated (")


def test_jpeg_without_only_its_end_marker_is_truncated() -> None:
    assert_refused(run(photo()[:-2]), "truncated_image")


def test_truncated_jpeg_is_caught_when_decoded_at_reduced_size() -> None:
    body = encode(Image.fromarray(noise(2048, 1024, seed=2)), "JPEG", quality=80)
    assert run(body).reason is None
    assert_refused(run(body[: len(body) * 3 // 4]), "truncated_image")


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "PPM"])
def test_truncated_lossless_formats(fmt) -> None:
    body = encode(Image.fromarray(noise(120, 80, seed=3)), fmt)
    assert_refused(run(body[: len(body) // 2]), "truncated_image")


def test_truncated_webp_says_where_it_ends() -> None:
    body = encode(Image.fromarray(noise(120, 80, seed=4)), "WEBP", quality=80)
    cut = len(body) // 2
    result = run(body[:cut])
    assert_refused(result, "truncated_image")
    assert result.error == f"WEBP data ends at byte {cut} of {len(body)}"


@pytest.mark.parametrize("body", [b"", b"<!doctype html><html><body>Not an image</body></html>", b"\xff\xd8\xff" + b"\x00" * 10])
def test_not_an_image_has_a_stable_message(body) -> None:
    first, second = run(body), run(body)
    assert_refused(first, "not_an_image")
    assert first.error == second.error == "UnidentifiedImageError: cannot identify image file"


def test_formats_that_run_external_programs_are_refused() -> None:
    # PIL reads EPS by running Ghostscript: never on untrusted bytes
    body = encode(Image.fromarray(noise(20, 10, seed=5)), "EPS")
    assert_refused(run(body), "not_an_image")


def test_corrupt_pixel_data_is_undecodable() -> None:
    body = png_rows(20, 10, color_type=2, bit_depth=8, row=b"", idat=b"\x78\x9c" + b"\xff" * 64)
    result = run(body)
    assert_refused(result, "undecodable")


def test_header_only_bomb_is_refused() -> None:
    # 30000 x 30000 declared in 57 bytes: PIL's own hard limit answers first
    result = run(header_only_png(30000, 30000))
    assert_refused(result, "decompression_bomb")
    assert result.error == ("Image size (900000000 pixels) exceeds limit of 178956970 pixels, "
                            "could be decompression bomb DOS attack.")
    # 12000 x 12000 is under PIL's limit: our budget on decoded bytes refuses it (PIL keeps 3
    # channels in 4 bytes, and the 8-bit array takes 3 more)
    result = run(header_only_png(12000, 12000))
    assert_refused(result, "decompression_bomb")
    assert result.error == "12000x12000 RGB needs 1008000000 bytes to decode > max_decoded_bytes=268435456"


def test_budget_is_checked_before_decoding() -> None:
    # the pixel data is garbage: only a decode attempt would notice (undecodable)
    body = png_rows(1000, 1000, color_type=2, bit_depth=8, row=b"", idat=b"\x78\x9c" + b"\xff" * 64)
    over = run(body, max_decoded_bytes=6_999_999)
    assert_refused(over, "decompression_bomb")
    assert over.error == "1000x1000 RGB needs 7000000 bytes to decode > max_decoded_bytes=6999999"
    assert run(body, max_decoded_bytes=7_000_000).reason == "undecodable"


def test_budget_counts_bytes_per_pixel_of_the_mode() -> None:
    gray = png_rows(1000, 1000, color_type=0, bit_depth=8, row=bytes(1000))  # 1 + 1 bytes per pixel
    assert run(gray, max_decoded_bytes=2_000_000).reason is None
    assert run(gray, max_decoded_bytes=1_999_999).reason == "decompression_bomb"
    rgba = png_rows(1000, 1000, color_type=6, bit_depth=8, row=bytes(4000))  # 4 + 3
    assert run(rgba, max_decoded_bytes=7_000_000).reason is None
    assert run(rgba, max_decoded_bytes=6_999_999).reason == "decompression_bomb"
    deep = png_rows(1000, 1000, color_type=0, bit_depth=16, row=bytes(2000))  # 2 + 1
    assert run(deep, max_decoded_bytes=3_000_000).reason is None
    assert run(deep, max_decoded_bytes=2_999_999).reason == "decompression_bomb"


@lru_cache(maxsize=2)
def big_jpeg(progressive: bool) -> bytes:
    return encode(Image.fromarray(smooth_rgb(2000, 1500)), "JPEG", quality=80, progressive=progressive)


def test_budget_counts_the_reduced_jpeg_decode() -> None:
    # 256 px border, at least twice the target: 2000x1500 decodes at 1/2, 1000x750 (7 bytes per pixel)
    body = big_jpeg(False)
    at = run(body, ImageOutput(image_size=256), max_decoded_bytes=5_250_000, reduce_margin=2.0)
    assert at.reason is None and (at.orig_width, at.orig_height) == (2000, 1500)
    over = run(body, ImageOutput(image_size=256), max_decoded_bytes=5_249_999, reduce_margin=2.0)
    assert_refused(over, "decompression_bomb")
    assert over.error == "2000x1500 RGB needs 5250000 bytes to decode at 1000x750 > max_decoded_bytes=5249999"
    full = run(body, ImageOutput(image_size=256), max_decoded_bytes=5_250_000, reduce_margin=None)
    assert full.error == "2000x1500 RGB needs 21000000 bytes to decode > max_decoded_bytes=5250000"


def test_budget_counts_the_coefficients_of_a_progressive_jpeg() -> None:
    # libjpeg holds every DCT coefficient of a progressive JPEG at full size: 2 bytes each,
    # 1.5 per pixel at 4:2:0, so 9,000,000 bytes on top of the half-size decode
    body = big_jpeg(True)
    assert run(body, ImageOutput(image_size=256), max_decoded_bytes=14_250_000, reduce_margin=2.0).reason is None
    over = run(body, ImageOutput(image_size=256), max_decoded_bytes=14_249_999, reduce_margin=2.0)
    assert over.error == "2000x1500 RGB needs 14250000 bytes to decode at 1000x750 > max_decoded_bytes=14249999"


def test_the_default_budget_refuses_a_9400_square_rgba_but_takes_an_8k_photo() -> None:
    assert DEFAULT_MAX_DECODED_BYTES == 256 * 1024 * 1024
    rgba = png_rows(9400, 9400, color_type=6, bit_depth=8, row=b"", idat=b"")  # header is enough
    assert run(rgba).error == "9400x9400 RGBA needs 618520000 bytes to decode > max_decoded_bytes=268435456"
    rgb = png_rows(7680, 4320, color_type=2, bit_depth=8, row=b"", idat=b"")
    assert run(rgb).reason == "truncated_image"  # within budget: decoded, and its pixel data found missing


def test_pil_decompression_warning_is_silenced() -> None:
    """PIL warns above 89.5 Mpx; we guard ourselves, so nothing reaches a worker's terminal."""
    code = ("from curate.imaging import ImageTransformer; from curate.stages.base import ImageOutput; "
            "import sys; sys.path.insert(0, sys.argv[1]); from imaging_samples import header_only_png; "
            "print(ImageTransformer(ImageOutput())(header_only_png(10000, 10000)).reason)")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                          cwd=REPO, check=True, timeout=120)
    assert (done.stdout, done.stderr) == ("decompression_bomb\n", "")


def test_pixels_of_a_reduced_decode_stay_close_to_a_full_one() -> None:
    body = encode(Image.fromarray(smooth_rgb(2048, 1536)), "JPEG", quality=90)
    output = ImageOutput(image_size=256)
    reduced = ImageTransformer(output).pixels(body).array.astype(int)
    full = ImageTransformer(output, reduce_margin=None).pixels(body).array.astype(int)
    assert np.abs(reduced - full).mean() < 1.0
