"""Real images from ../shared/data: odd formats decode or get their reason, and on real photos
the reduced JPEG decode stays within the quality bar of issue 5 section 5 (mean absolute error
<= 2.0 of 255 and PSNR >= 35 dB against full decode + the same resize)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate.imaging import ImageTransformer
from curate.imaging.resize import plan
from curate.stages.base import ImageOutput

ODD = {  # file: (reason, displayed size); the .bmp/.png/.svg files are JPEGs under other names
    "Iggy.1024.ppm": (None, (1024, 1024)),
    "alpha_channel_image.png": (None, (640, 480)),
    "baboon.pgm": (None, (512, 512)),
    "copyleft.tiff": (None, (220, 220)),
    "giphy.gif": (None, (314, 400)),
    "marbles.pbm": (None, (1152, 813)),
    "ukbench09268_corrupt.jpg": ("not_an_image", None),
    "ukbench09380.bmp": (None, (640, 480)),
    "ukbench09380.jpeg": (None, (640, 480)),
    "ukbench09380.png": (None, (640, 480)),
    "ukbench09380.svg": (None, (640, 480)),
    "ukbench09380.webp": (None, (640, 480)),
}


@pytest.mark.shared_data
def test_odd_images_decode_or_get_their_reason(shared_data: Path) -> None:
    folder = shared_data / "odd-images"
    transform = ImageTransformer(ImageOutput(image_size=64))
    seen = {}
    for path in sorted(folder.iterdir()):
        result = transform(path.read_bytes())
        seen[path.name] = (result.reason, None if result.reason else (result.orig_width, result.orig_height))
        if result.reason is None:
            with Image.open(io.BytesIO(result.data)) as image:
                assert (image.format, image.size, result.width, result.height) == ("JPEG", (64, 64), 64, 64)
        else:
            assert result.data is None and result.error
    assert seen == ODD


def upscaled(body: bytes, side: int) -> bytes:
    """A larger photo: Lanczos upscale to ``side`` px on the long side, re-encoded at q95."""
    with Image.open(io.BytesIO(body)) as image:
        scale = side / max(image.size)
        big = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def error_against_full_decode(bodies: list[bytes], output: ImageOutput) -> tuple[float, float]:
    """(mean absolute error, PSNR) over every content pixel of the set (border padding, white
    in both by construction, left out) of our pixels against a full decode's, before encoding."""
    ours, full = ImageTransformer(output), ImageTransformer(output, reduce_margin=None)
    total_abs = total_sq = count = 0
    for body in bodies:
        mine, reference = ours.pixels(body), full.pixels(body)
        step = plan(reference.orig_size, output.image_size, output.resize_mode, False)
        width, height = step.resized or reference.orig_size
        top, left = (int((output.image_size - height) / 2.0), int((output.image_size - width) / 2.0)) if step.pad else (0, 0)
        box = np.s_[top:top + min(height, output.image_size), left:left + min(width, output.image_size)]
        diff = np.abs(mine.array[box].astype(np.int32) - reference.array[box].astype(np.int32))
        total_abs, total_sq, count = total_abs + diff.sum(), total_sq + (diff**2).sum(), count + diff.size
    mse = total_sq / count
    return total_abs / count, math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.shared_data
@pytest.mark.parametrize("output", [ImageOutput(image_size=256, resize_mode="border"),
                                    ImageOutput(image_size=224, resize_mode="center_crop")], ids=["border256", "crop224"])
def test_reduced_decode_quality_on_coco_mini(shared_data: Path, output) -> None:
    photos = [p.read_bytes() for p in sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))]
    assert len(photos) >= 200
    mae, psnr = error_against_full_decode(photos, output)
    assert mae <= 2.0 and psnr >= 35.0, (mae, psnr)
    for side in (1000, 2000):  # where DCT scaling is used: these must differ from a full decode, a little
        mae, psnr = error_against_full_decode([upscaled(body, side) for body in photos[::20]], output)
        assert 0 < mae <= 2.0 and psnr >= 35.0, (side, mae, psnr)
