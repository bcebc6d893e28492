"""Decode untrusted image bytes into an 8-bit array, within a memory budget.

The header is read first (PIL opens lazily) and the bytes the decode will allocate are
budgeted *before* any pixel is decoded; an image over budget is refused as
``decompression_bomb``. JPEGs may be decoded at 1/2, 1/4 or 1/8 size by libjpeg's DCT scaling
(PIL ``Image.draft``) when the caller needs far fewer pixels. Every PIL mode becomes ``uint8``
gray ``(h, w)`` or RGB ``(h, w, 3)``: 16-bit samples keep their high byte, alpha is composited
on white in integer arithmetic, strip by strip, so no full-size temporary is ever made
(img2dataset composites in float64 at ~75 bytes per pixel: a 363 KB 9400x9400 RGBA PNG took a
worker to 6.7 GB, issue 5 section 4).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageMode

#: Default decode budget: a quarter gigabyte, PIL's own rationale for ``MAX_IMAGE_PIXELS``
#: ("around a quarter gigabyte for a 24-bit (3 bpp) image"), but counted in bytes, so RGBA and
#: 16-bit images get fewer pixels and gray ones more. What :func:`decoded_bytes` counts is
#: what one decode holds, plus at most ~40 MB (a float32 copy of up to 32 MiB for the area
#: resize, 4 MiB conversion strips): a 9400x9400 RGBA PNG budgeted at 618.5 MB peaked at 759 MB
#: RSS in a child process whose interpreter and imports alone took 131 MB.
DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024

#: Formats we decode. Web formats plus the netpbm, BMP and TIFF files img2dataset's OpenCV
#: decoder accepted (JPEG includes MPO); not EPS (PIL runs Ghostscript on it) nor other exotic plugins.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "DIB", "TIFF", "PPM", "ICO")

# We budget decoded bytes ourselves (``max_decoded_bytes``), before PIL could warn; the warning
# would only repeat that on every worker's terminal (issue 5 section 7). PIL's hard error
# (above 2 x MAX_IMAGE_PIXELS) still applies and is reported as ``decompression_bomb``.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")
_STRIP_BYTES = 4 * 1024 * 1024  # conversion works on strips this large: no full-size temporaries
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


class ImageRejected(Exception):
    """A body that is not a usable image: ``reason`` is the ledger reason, ``str()`` the detail."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    """Pixels in *stored* orientation (EXIF not applied yet), possibly DCT-reduced."""

    pixels: np.ndarray  # uint8, (h, w) gray or (h, w, 3) RGB
    stored_size: tuple[int, int]  # (width, height) of the full-size image as stored
    orientation: int  # EXIF orientation 1..8 (1 when absent or invalid)
    format: str  # the file's real format, lower-case PIL name ("jpeg", "png", "webp", ...)


def decode(body: bytes, reduce_to: Callable[[tuple[int, int]], tuple[int, int] | None] | None,
           max_decoded_bytes: int) -> Decoded:
    """Decode ``body``. A JPEG is DCT-reduced as far as it stays at least ``reduce_to(stored
    size)`` (width, height) where that is not None. Raises :class:`ImageRejected` for anything
    that is not a decodable image within budget."""
    image = _open(body)
    stored_size = image.size
    wanted = reduce_to(stored_size) if reduce_to is not None and image.format in ("JPEG", "MPO") else None
    if wanted is not None:
        image.draft(image.mode, wanted)
    needed = decoded_bytes(image, stored_size)
    if needed > max_decoded_bytes:
        at = "" if image.size == stored_size else f" at {image.size[0]}x{image.size[1]}"
        raise ImageRejected("decompression_bomb", f"{stored_size[0]}x{stored_size[1]} {image.mode} needs {needed} bytes "
                                                  f"to decode{at} > max_decoded_bytes={max_decoded_bytes}")
    _load(image)
    orientation = _orientation(image)
    try:
        pixels = to_uint8(image)
    except ValueError as err:  # a mode PIL cannot convert
        raise ImageRejected("undecodable", _message(err)) from None
    return Decoded(pixels, stored_size, orientation, _format_name(image.format))


def _format_name(pil_format: str | None) -> str:
    """PIL's format name, lower-case; MPO (a multi-picture JPEG from cameras) is a JPEG file."""
    name = (pil_format or "unknown").lower()
    return "jpeg" if name == "mpo" else name


def decoded_bytes(image: Image.Image, stored_size: tuple[int, int]) -> int:
    """Bytes the decode of a lazily opened (perhaps drafted) ``image`` holds at once: PIL's own
    pixels (it pads 3-channel 8-bit pixels to 4 bytes), the 8-bit array they become, and for a
    progressive JPEG libjpeg's whole-image coefficient buffer (2 bytes per DCT coefficient,
    allocated for the ``stored_size`` even when decoding at reduced size)."""
    width, height = image.size
    try:
        descriptor = ImageMode.getmode(image.mode)
    except KeyError:
        raise ImageRejected("undecodable", f"unsupported pixel mode {image.mode!r}") from None
    channels = len(descriptor.bands)
    decoder_bytes = (4 if channels == 3 else channels) * np.dtype(descriptor.typestr).itemsize
    array_bytes = 1 if _is_gray(image.mode) else 3
    total = width * height * (decoder_bytes + array_bytes)
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        total += int(stored_size[0] * stored_size[1] * 2 * _coefficients_per_pixel(image))
    return total


def _is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def _coefficients_per_pixel(image: Image.Image) -> float:
    """DCT coefficients per pixel over all components (3.0 for 4:4:4, 1.5 for 4:2:0)."""
    layers = getattr(image, "layer", None) or []
    if not layers:
        return float(len(image.getbands()))
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    return sum(h * v for _, h, v, _ in layers) / (h_max * v_max)


def _open(body: bytes) -> ImageFile.ImageFile:
    if _webp_truncated(body):
        # libwebp only says "could not create decoder object"; the RIFF header knows the size
        raise ImageRejected("truncated_image", f"WEBP data ends at byte {len(body)} of {_riff_end(body)}")
    try:
        return Image.open(io.BytesIO(body), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression_bomb", str(err)) from None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
        raise ImageRejected("not_an_image", _message(err)) from None


def _load(image: ImageFile.ImageFile) -> None:
    """Decode the pixels; a decoder that runs out of data means ``truncated_image``."""
    try:
        image.load()
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression_bomb", str(err)) from None
    except EOFError as err:
        raise ImageRejected("truncated_image", _message(err)) from None
    except (OSError, ValueError, SyntaxError, struct.error) as err:
        reason = "truncated_image" if "truncated" in str(err).lower() else "undecodable"
        raise ImageRejected(reason, _message(err)) from None


def _riff_end(body: bytes) -> int:
    return 8 + int.from_bytes(body[4:8], "little")


def _webp_truncated(body: bytes) -> bool:
    return body[:4] == b"RIFF" and body[8:12] == b"WEBP" and len(body) < _riff_end(body)


def _orientation(image: Image.Image) -> int:
    """EXIF orientation tag (0x0112), 1 when absent, malformed or out of range."""
    try:
        value = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError):
        return 1  # unreadable EXIF: the pixels are still good, shown as stored
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_uint8(image: Image.Image) -> np.ndarray:
    """An 8-bit gray ``(h, w)`` or RGB ``(h, w, 3)`` array of a loaded image, converted strip
    by strip (at most ``_STRIP_BYTES`` of temporaries) into one preallocated array."""
    width, height = image.size
    out = np.empty((height, width) if _is_gray(image.mode) else (height, width, 3), np.uint8)
    rows = max(1, _STRIP_BYTES // max(1, width * 8))  # 8: the widest pixel we convert (RGBA as uint16 = 6 + 2)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = image if (top == 0 and bottom == height) else image.crop((0, top, width, bottom))
        out[top:bottom] = _strip_to_uint8(strip)
    return out


def _strip_to_uint8(strip: Image.Image) -> np.ndarray:
    mode = strip.mode
    if mode in ("L", "RGB"):
        return np.asarray(strip)
    if mode.startswith("I;16"):
        # keep the high byte, as PIL itself reads 16-bit RGB PNGs (rawmode RGB;16B)
        return (np.asarray(strip) >> 8).astype(np.uint8)
    if mode == "I":
        # PIL's mode for 16-bit netpbm and some TIFFs: read as 16-bit samples
        return (np.clip(np.asarray(strip), 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        # PIL's own F -> L convention: 0..255 scale, clipped
        return np.clip(np.rint(np.asarray(strip)), 0, 255).astype(np.uint8)
    if mode == "1":
        return np.asarray(strip.convert("L"))
    if mode in ("LA", "La"):
        gray_alpha = np.asarray(strip if mode == "LA" else strip.convert("LA"))
        return composite_on_white(gray_alpha[..., :1], gray_alpha[..., 1:])[..., 0]
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in strip.info):
        rgba = np.asarray(strip if mode == "RGBA" else strip.convert("RGBA"))
        return composite_on_white(rgba[..., :3], rgba[..., 3:])
    return np.asarray(strip.convert("RGB"))  # P, RGBX, CMYK, YCbCr, LAB, HSV


def composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rint(alpha/255 * color + 255 - alpha)``, img2dataset's matting on white, exactly, in
    uint16: ``color*alpha + 255*(255-alpha) + 127 <= 65152`` fits, and ``x/255`` is never a
    half-integer for integer ``x``, so the floor below rounds as ``rint`` does."""
    a = alpha.astype(np.uint16)
    mixed = color.astype(np.uint16) * a
    mixed += (255 - a) * 255 + 127
    mixed //= 255
    return mixed.astype(np.uint8)


def _message(err: BaseException) -> str:
    # PIL names the in-memory file (``<_io.BytesIO object at 0x...>``): without the address the
    # ledger detail is the same on every run
    return " ".join(f"{type(err).__name__}: {_ADDRESS.sub('', str(err))}".split())
