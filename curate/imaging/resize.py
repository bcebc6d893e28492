"""Output geometry, resizing and encoding, with img2dataset's ``Resizer`` semantics.

Geometry is img2dataset 1.47's exactly (its ``Resizer`` through albumentations 1.4):
``keep_ratio``/``center_crop`` scale the shorter side to ``image_size``, ``border``/
``keep_ratio_largest`` the longer one, sides ``max(1, round(side * scale))``; ``center_crop``
then cuts the centre (offset ``(side - size) // 2``), ``border`` pads with white (``int(pad / 2)``
before, the rest after); with ``resize_only_if_bigger`` an image that would be enlarged is left
as it is, crop and pad included. Downscaling uses ``cv2.INTER_AREA``, upscaling
``cv2.INTER_LANCZOS4`` (img2dataset's defaults); encoding is ``cv2.imencode`` with its settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")
IMAGE_FORMATS = ("jpg", "png", "webp")
_FLOAT_AREA_BYTES = 32 * 1024 * 1024  # float32 copy allowed for the faster area resize
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter


@dataclass(frozen=True)
class Plan:
    """What happens to an image of a given displayed size."""

    resized: tuple[int, int] | None  # (width, height) after scaling; None: not scaled
    downscale: bool
    crop: bool  # center_crop to size x size after scaling
    pad: bool  # border: pad to size x size after scaling

    def stored_target(self, orientation: int) -> tuple[int, int] | None:
        """``resized`` in the orientation the pixels are stored in."""
        if self.resized is None or orientation not in _SWAPS_AXES:
            return self.resized
        return self.resized[1], self.resized[0]


def plan(display_size: tuple[int, int], size: int, mode: str, only_if_bigger: bool) -> Plan:
    """The resize of an image shown as ``display_size`` (width, height), as img2dataset does it."""
    width, height = display_size
    if mode in ("keep_ratio", "center_crop"):
        side = min(width, height)
    elif mode in ("border", "keep_ratio_largest"):
        side = max(width, height)
    else:
        return Plan(None, False, False, False)
    downscale = side > size
    if only_if_bigger and not downscale:
        return Plan(None, False, False, False)
    scale = size / side
    resized = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Plan(None if resized == (width, height) else resized, downscale, mode == "center_crop", mode == "border")


def resize(pixels: np.ndarray, target: tuple[int, int], downscale: bool) -> np.ndarray:
    """Scale to ``target`` (width, height): area averaging down, Lanczos up."""
    if (pixels.shape[1], pixels.shape[0]) == target:
        return pixels
    if not downscale:
        return cv2.resize(pixels, target, interpolation=cv2.INTER_LANCZOS4)
    if pixels.size * 4 <= _FLOAT_AREA_BYTES:
        # OpenCV's uint8 INTER_AREA at a non-integer factor averages in float anyway; handing it
        # float32 gives the same bytes (0 of 49,152 differ, 640x480 -> 256x192) in 1.2-1.6 ms
        # instead of 2.2 ms, one core
        return cv2.convertScaleAbs(cv2.resize(pixels.astype(np.float32), target, interpolation=cv2.INTER_AREA))
    return cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Show stored pixels as EXIF ``orientation`` says (the transposes of PIL's ``exif_transpose``)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def finish(pixels: np.ndarray, size: int, step: Plan) -> np.ndarray:
    """Centre crop or white border to ``size`` x ``size`` where the plan asks for it."""
    height, width = pixels.shape[:2]
    if step.crop:
        top, left = (height - size) // 2, (width - size) // 2
        return pixels[top:top + size, left:left + size]
    if step.pad and (height < size or width < size):
        top, left = int(max(0, size - height) / 2.0), int(max(0, size - width) / 2.0)
        bottom, right = max(0, size - height) - top, max(0, size - width) - left
        white = 255 if pixels.ndim == 2 else (255, 255, 255)
        return cv2.copyMakeBorder(np.ascontiguousarray(pixels), top, bottom, left, right, cv2.BORDER_CONSTANT, value=white)
    return pixels


class Encoder:
    """``cv2.imencode`` of RGB or gray ``uint8`` pixels. ``quality`` is the JPEG/WebP quality;
    for PNG it is the zlib level ``min(quality, 9)``."""

    def __init__(self, image_format: str, quality: int):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, not {image_format!r}")
        flag = {"jpg": cv2.IMWRITE_JPEG_QUALITY, "png": cv2.IMWRITE_PNG_COMPRESSION, "webp": cv2.IMWRITE_WEBP_QUALITY}
        self.extension = "." + image_format
        self.params = [int(flag[image_format]), min(quality, 9) if image_format == "png" else quality]

    def __call__(self, pixels: np.ndarray) -> bytes:
        bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(self.extension, np.ascontiguousarray(bgr), self.params)
        if not ok:
            raise RuntimeError(f"cv2.imencode({self.extension}) failed on a {pixels.shape} {pixels.dtype} array")
        return encoded.tobytes()


def use_one_core() -> None:
    """Keep OpenCV to the calling thread: a worker owns the one CPU its Ray resources reserve, and
    OpenCV's own pool would oversubscribe it (img2dataset's Resizer sets this on every call)."""
    cv2.setNumThreads(1)
