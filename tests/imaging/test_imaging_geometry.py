"""Output geometry of every resize mode: img2dataset's ``Resizer`` sizes, exactly, and for
lossless inputs its very pixels."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from imaging_samples import encode, noise, smooth_rgb
from PIL import Image

from curate.imaging import ImageTransformer
from curate.stages.base import ImageOutput


def transform(body: bytes, **output) -> tuple:
    result = ImageTransformer(ImageOutput(**{"image_format": "png", "encode_quality": 1, **output}))(body)
    assert result.reason is None, result.error
    return result


def png_of(width: int, height: int, seed: int = 0) -> bytes:
    return encode(Image.fromarray(noise(width, height, seed=seed)), "PNG")


@pytest.mark.parametrize(("size", "mode", "only_if_bigger", "orig", "expected"), [
    # the download stage's table (tests/stages/test_download.py)
    (64, "border", False, (400, 300), (64, 64)),
    (64, "center_crop", False, (900, 200), (64, 64)),
    (64, "keep_ratio", False, (400, 300), (85, 64)),
    (64, "keep_ratio", False, (900, 200), (288, 64)),
    (64, "keep_ratio_largest", False, (400, 300), (64, 48)),
    (64, "keep_ratio_largest", False, (900, 200), (64, 14)),
    (64, "no", False, (900, 200), (900, 200)),
    (512, "border", True, (400, 300), (400, 300)),  # smaller: left alone, not even padded
    (512, "border", True, (900, 200), (512, 512)),
    (512, "center_crop", True, (400, 300), (400, 300)),
    (512, "keep_ratio", False, (400, 300), (683, 512)),  # enlarged (Lanczos)
    # rounding: 100 * 64 / 300 = 21.33 -> 21; 1000 x 3 -> the short side never below 1
    (64, "keep_ratio_largest", False, (300, 100), (64, 21)),
    (64, "keep_ratio_largest", False, (1000, 3), (64, 1)),
    (64, "border", False, (1000, 3), (64, 64)),
    (64, "keep_ratio", False, (3, 100), (64, 2133)),
])
def test_output_size(size, mode, only_if_bigger, orig, expected) -> None:
    result = transform(png_of(*orig), image_size=size, resize_mode=mode, resize_only_if_bigger=only_if_bigger)
    assert (result.width, result.height) == expected
    assert (result.orig_width, result.orig_height) == orig
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == "PNG" and image.size == expected


def test_border_pads_white_around_the_centred_image() -> None:
    # 64 x 13 content in a 64 x 64 square: int(51 / 2) = 25 rows above, 26 below
    body = encode(Image.fromarray(np.zeros((13, 64, 3), np.uint8)), "PNG")
    pixels = np.asarray(Image.open(io.BytesIO(transform(body, image_size=64, resize_mode="border").data)))
    dark_rows = np.flatnonzero(pixels.max(axis=(1, 2)) == 0)
    assert dark_rows.tolist() == list(range(25, 38))
    assert (pixels[:25] == 255).all() and (pixels[38:] == 255).all()


def test_center_crop_takes_the_middle() -> None:
    # 64 x 16 after scaling the short side: columns (64 - 16) // 2 = 24 .. 39 are kept
    columns = np.repeat(np.arange(64, dtype=np.uint8)[None, :, None] * 4, 16, axis=0).repeat(3, axis=2)
    out = np.asarray(Image.open(io.BytesIO(transform(encode(Image.fromarray(columns), "PNG"), image_size=16,
                                                     resize_mode="center_crop").data)))
    assert out.shape == (16, 16, 3)
    assert out[0, :, 0].tolist() == [4 * c for c in range(24, 40)]


def _img2dataset_resizer():
    spec = importlib.util.find_spec("img2dataset")
    if spec is None:
        pytest.skip("img2dataset is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "resizer.py"
    module_spec = importlib.util.spec_from_file_location("_img2dataset_resizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.Resizer


@pytest.mark.parametrize("mode", ["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"])
@pytest.mark.parametrize("only_if_bigger", [False, True])
def test_same_pixels_as_img2dataset_on_lossless_rgb(mode, only_if_bigger) -> None:
    """Where img2dataset is right (8-bit RGB, no EXIF) our output is its output, byte for byte
    once decoded: same sizes, area averaging, Lanczos, crop offsets and padding."""
    resizer = _img2dataset_resizer()(image_size=48, resize_mode=mode, resize_only_if_bigger=only_if_bigger,
                                     encode_format="png", encode_quality=1)
    ours = ImageTransformer(ImageOutput(image_size=48, resize_mode=mode, resize_only_if_bigger=only_if_bigger,
                                        image_format="png", encode_quality=1))
    for seed, (width, height) in enumerate([(130, 70), (70, 130), (48, 48), (30, 20), (301, 7), (97, 61)]):
        body = png_of(width, height, seed)
        encoded, their_w, their_h, their_ow, their_oh, err = resizer(io.BytesIO(body))
        assert err is None
        result = ours(body)
        assert (result.width, result.height, result.orig_width, result.orig_height) == (their_w, their_h, their_ow, their_oh)
        mine = np.asarray(Image.open(io.BytesIO(result.data)))
        theirs = np.asarray(Image.open(io.BytesIO(encoded)))
        assert np.array_equal(mine, theirs), (width, height)


def test_reduced_jpeg_decode_keeps_the_geometry() -> None:
    body = encode(Image.fromarray(smooth_rgb(2400, 600)), "JPEG", quality=90)  # border, keep_ratio_largest: DCT-reduced
    for mode, size in [("border", (256, 256)), ("keep_ratio", (1024, 256)), ("keep_ratio_largest", (256, 64)),
                       ("center_crop", (256, 256))]:
        result = transform(body, image_size=256, resize_mode=mode)
        assert (result.width, result.height, result.orig_width, result.orig_height) == (*size, 2400, 600), mode


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="resize_mode must be one of no, keep_ratio, keep_ratio_largest, center_crop, "
                                         "border, not 'stretch'"):
        ImageTransformer(ImageOutput(resize_mode="stretch"))
    with pytest.raises(ValueError, match="image_format must be one of jpg, png, webp, not 'gif'"):
        ImageTransformer(ImageOutput(image_format="gif"))
