"""curate's own image path: decode untrusted bytes within a memory budget (reduced-size JPEG
decode, EXIF orientation, every PIL mode to 8 bits), resize with img2dataset's geometry, encode.

    transform = ImageTransformer(output, max_decoded_bytes=...)
    result = transform(body)   # ImageResult; result.reason is None on success
"""

from curate.imaging.decode import ACCEPTED_FORMATS, DEFAULT_MAX_DECODED_BYTES
from curate.imaging.resize import use_one_core
from curate.imaging.transform import ImageResult, ImageTransformer

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_DECODED_BYTES", "ImageResult", "ImageTransformer", "use_one_core"]
