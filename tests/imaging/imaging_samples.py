"""Image bodies for the imaging tests, made in memory (nothing is read from disk)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def smooth_rgb(width: int, height: int) -> np.ndarray:
    """A gradient: compresses well, so large test JPEGs stay small."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                     (x + y) / 2 + np.zeros((height, width), np.float32)], axis=-1).astype(np.uint8)


def png_rows(width: int, height: int, color_type: int, bit_depth: int, row: bytes, idat: bytes | None = None) -> bytes:
    """A PNG of ``height`` identical rows (``row`` without its filter byte), deflated row by
    row so that a huge image is never held decoded; ``idat`` replaces the pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    if idat is None:
        packer = zlib.compressobj(9)
        line = b"\x00" + row
        idat = b"".join(packer.compress(line) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB with almost no pixel data."""
    return png_rows(width, height, 2, 8, b"", idat=zlib.compress(b"\x00" * 16))


def with_orientation(pixels: np.ndarray, orientation: int, **options) -> bytes:
    """A JPEG of ``pixels`` (as stored) whose EXIF says to show it with ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), **options)
