"""Body bytes in, resized and re-encoded image out: the image path of the download stage and of
images read from tar inputs."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from curate.imaging.decode import DEFAULT_MAX_DECODED_BYTES, ImageRejected, decode
from curate.imaging.resize import RESIZE_MODES, Encoder, finish, orient, plan, resize

if TYPE_CHECKING:  # only its fields are read: importing curate.imaging stays light (no pyarrow)
    from curate.stages.base import ImageOutput

#: A JPEG is DCT-reduced (1/2, 1/4, 1/8) only as far as it stays at least this many times the
#: resize target on both sides. Measured with benchmarks/resize.py against full decode + the same
#: resize (mean abs error over all content pixels / PSNR; coco-mini 640 px at 256 px border, 40 of
#: them upscaled to 2000 px at 224 px center_crop) and images per CPU-second against img2dataset:
#:   margin 1.0:  640 px 2.01 / 35.2 dB, 1.46x;       2000 px 1.83 / 36.5 dB, 2.6x
#:   margin 1.25: 640 px 1.03 / 38.8 dB, 1.23x;       2000 px 1.70 / 37.5 dB, 2.8x
#:   margin 1.5:  640 px not reduced (exact), 1.15x;  2000 px 1.16 / 40.4 dB, 2.2x
#: Area averaging over fewer than ~1.5 reduced pixels cannot undo the coarser sampling grid
#: (about 2 levels of error per reduced photo), so 1.5 keeps every set well inside the bar
#: (<= 2.0, >= 35 dB) at the cost of the 640 px speed-up.
REDUCE_MARGIN = 1.5


def bytes_hash(data: bytes) -> int:
    """A 64-bit hash of ``data`` as a signed int64 (blake2b, keyless: the same on every machine
    and run; hashlib releases the GIL over large buffers, so download threads overlap)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def pixels_hash(array: np.ndarray) -> int:
    """:func:`bytes_hash` of an image's pixels with its shape, so equal bytes laid out as
    different sizes or channel counts never match."""
    digest = hashlib.blake2b(repr(array.shape).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(array, np.uint8).data)
    return int.from_bytes(digest.digest(), "little", signed=True)


@dataclass(frozen=True)
class ImageResult:
    """One transformed image; ``reason`` is None on success, else a ledger reason
    (``not_an_image``, ``truncated_image``, ``undecodable``, ``decompression_bomb``) and
    ``error`` a one-line message that is the same on every run. ``orig_width``/``orig_height``
    are the size of the image *as displayed* (after EXIF orientation), at full resolution.
    ``pixel_hash`` is :func:`pixels_hash` of the output pixels before encoding: equal for one
    picture served in different files (metadata, lossless re-encodings) that decode alike."""

    data: bytes | None
    width: int | None
    height: int | None
    orig_width: int | None
    orig_height: int | None
    reason: str | None = None
    error: str | None = None
    pixel_hash: int | None = None
    orig_format: str | None = None

    def fill(self, columns: dict[str, list], index: int, body: bytes) -> None:
        """Write row ``index`` of the image columns (``curate.schema.IMAGE_COLUMN_TYPES``): the
        body's size and hash always, the image, its sizes and its pixel hash when it was transformed."""
        columns["orig_bytes"][index] = len(body)
        columns["orig_hash"][index] = bytes_hash(body)
        if self.reason is None:
            columns["image"][index] = self.data
            columns["width"][index], columns["height"][index] = self.width, self.height
            columns["orig_width"][index], columns["orig_height"][index] = self.orig_width, self.orig_height
            columns["pixel_hash"][index] = self.pixel_hash
            columns["orig_format"][index] = self.orig_format


@dataclass(frozen=True)
class Pixels:
    """The output image before encoding, and the displayed size of the original."""

    array: np.ndarray  # uint8 (h, w) gray or (h, w, 3) RGB
    orig_size: tuple[int, int]
    orig_format: str


class ImageTransformer:
    """Decode (reduced when the output is much smaller), orient, resize, crop or pad, encode.

    ``max_decoded_bytes`` bounds what one decode may allocate (see
    :func:`curate.imaging.decode.decoded_bytes`); bigger images are refused as
    ``decompression_bomb`` before any pixel is decoded. A JPEG is decoded at 1/2, 1/4 or 1/8
    size where that stays at least ``reduce_margin`` times the resize target on both sides;
    ``reduce_margin=None`` always decodes at full size (the reference of the quality figures).
    It keeps no per-call state, so threads may share one; PIL and OpenCV release the GIL while
    they decode, resize and encode.
    """

    def __init__(self, output: ImageOutput, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
                 reduce_margin: float | None = REDUCE_MARGIN):
        if output.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not {output.resize_mode!r}")
        if output.image_size < 1 or max_decoded_bytes < 1 or (reduce_margin is not None and reduce_margin < 1):
            raise ValueError("image_size and max_decoded_bytes must be positive, reduce_margin None or >= 1")
        self.output = output
        self.max_decoded_bytes = max_decoded_bytes
        self.reduce_margin = reduce_margin
        self._encode = Encoder(output.image_format, output.encode_quality)

    def __call__(self, body: bytes) -> ImageResult:
        try:
            pixels = self.pixels(body)
        except ImageRejected as rejected:
            return ImageResult(None, None, None, None, None, rejected.reason, str(rejected))
        height, width = pixels.array.shape[:2]
        return ImageResult(self._encode(pixels.array), width, height, *pixels.orig_size,
                           pixel_hash=pixels_hash(pixels.array), orig_format=pixels.orig_format)

    def pixels(self, body: bytes) -> Pixels:
        """The output pixels before encoding; raises :class:`ImageRejected`."""
        out = self.output
        decoded = decode(body, None if self.reduce_margin is None else self._reduce_to, self.max_decoded_bytes)
        stored_w, stored_h = decoded.stored_size
        display = (stored_h, stored_w) if decoded.orientation >= 5 else (stored_w, stored_h)
        step = plan(display, out.image_size, out.resize_mode, out.resize_only_if_bigger)
        array = decoded.pixels
        target = step.stored_target(decoded.orientation)
        if target is not None:
            array = resize(array, target, step.downscale)
        array = finish(orient(array, decoded.orientation), out.image_size, step)
        return Pixels(np.ascontiguousarray(array), display, decoded.format)

    def _reduce_to(self, stored_size: tuple[int, int]) -> tuple[int, int] | None:
        """The smallest decode size (stored orientation) that still serves the output; None:
        full size. The plan is orientation-free here: it scales by the shorter or longer side."""
        out = self.output
        step = plan(stored_size, out.image_size, out.resize_mode, out.resize_only_if_bigger)
        if step.resized is None or not step.downscale:
            return None
        return math.ceil(step.resized[0] * self.reduce_margin), math.ceil(step.resized[1] * self.reduce_margin)
