"""Encoded image bytes -> an RGB PIL image for the image heads (open_nsfw, watermark), as their
reference code reads images: PIL, any mode converted to RGB (alpha dropped, not composited)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

# PIL names the in-memory file (``<_io.BytesIO object at 0x...>``): without the address a
# ledger detail is the same on every run
_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


class DecodeFailed(Exception):
    """Bytes that are not an image PIL can read; ``str()`` is the ledger detail."""


def open_rgb(data: bytes | None) -> Image.Image:
    """The decoded RGB image of ``data``, or :class:`DecodeFailed`."""
    if not data:
        raise DecodeFailed("no image bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB") if image.mode != "RGB" else image
    except Exception as err:  # noqa: BLE001 (whatever PIL raises on a bad file is this row's, not a bug)
        raise DecodeFailed(" ".join(f"{type(err).__name__}: {_ADDRESS.sub('', str(err))}".split())) from None


def score_images(images: list[bytes | None], preprocess: Callable[[bytes | None], np.ndarray],
                 infer: Callable[[np.ndarray], np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Scores of ``images``, ``batch_size`` at a time (so at most one batch of decoded pixels is
    held): ``infer`` gets the stacked ``preprocess`` outputs of the images that decode. Returns
    the float32 scores, the mask of decoded rows, and each row's decode error (None: decoded)."""
    scores = np.zeros(len(images), np.float32)
    decoded = np.zeros(len(images), bool)
    errors: list[str | None] = [None] * len(images)
    for start in range(0, len(images), batch_size):
        rows, pixels = [], []
        for row in range(start, min(start + batch_size, len(images))):
            try:
                pixels.append(preprocess(images[row]))
            except DecodeFailed as err:
                errors[row] = str(err)
                continue
            rows.append(row)
        if rows:
            scores[rows] = infer(np.stack(pixels))
            decoded[rows] = True
    return scores, decoded, errors
