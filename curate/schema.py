"""The row data model (DESIGN.md, Data model): column names and the stable sample id."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UID = "uid"
URL = "url"
CAPTION = "caption"
# Bookkeeping columns every row carries through the engine; never written to shards.
UNIT = "_unit"  # work-unit index
ROW = "_row"  # row index within the unit's input
DROP_STAGE = "_drop_stage"  # null while the row is alive, else the name of the stage that dropped it
DROP_REASON = "_drop_reason"
DROP_DETAIL = "_drop_detail"
DROP_THUMBNAIL = "_drop_thumbnail"  # a small JPEG of a few dropped rows' images, for the ledger (curate.engine.blocks)
THUMBNAILS_PER_REASON = 2  # ledger thumbnails per (stage, reason) and unit part
INTERNAL = (UNIT, ROW, DROP_STAGE, DROP_REASON, DROP_DETAIL, DROP_THUMBNAIL)
#: ``_seconds:<stage>``: each row's share of the worker-seconds its stage spent on its batch; summed
#: per unit into the unit's marker (per-stage throughput in the report), never written to shards.
SECONDS_PREFIX = "_seconds:"


def is_internal(name: str) -> bool:
    """Bookkeeping columns: carried through the engine, never written to shards."""
    return name in INTERNAL or name.startswith(SECONDS_PREFIX)
#: Columns too heavy to carry on a dropped row (released when the row is dropped).
IMAGE = "image"  # encoded image bytes; the shard member's extension is its real format
HEAVY = (IMAGE,)
#: Identifiers every image-producing stage writes (hashes of the original bytes and output pixels):
#: the ``key`` role, into the JSON and parquet but never histogrammed.
KEYS = ("orig_hash", "pixel_hash")


def input_positions(batch: pa.Table) -> np.ndarray:
    """Global input order of each row: work unit, then row within the unit (int64, unit << 32 | row)."""
    unit = batch.column(UNIT).to_numpy().astype(np.int64)
    row = batch.column(ROW).to_numpy().astype(np.int64)
    return (unit << 32) | row


def released_heavy(table: pa.Table, dropped: pa.Array, names: tuple[str, ...] = HEAVY) -> dict[str, pa.Array]:
    """The heavy (and feature) columns ``names`` of ``table`` with the ``dropped`` rows' values
    released (null)."""
    return {name: pc.if_else(dropped, pa.scalar(None, table.column(name).type), table.column(name))
            for name in names if name in table.column_names}


#: What an image-producing stage writes (``download``, and the ``read`` stage of tar inputs): the
#: encoded output image, its size, the original's size (as displayed) and bytes, and two 64-bit
#: hashes (signed int64, see curate.imaging.transform): of the original's bytes, and of the output
#: pixels before encoding (``image_exact_dedup`` compares either), and the original's format.
IMAGE_COLUMN_TYPES = {
    IMAGE: pa.binary(),
    "width": pa.int32(),
    "height": pa.int32(),
    "orig_width": pa.int32(),
    "orig_height": pa.int32(),
    "orig_bytes": pa.int64(),
    "orig_hash": pa.int64(),
    "pixel_hash": pa.int64(),
    "orig_format": pa.string(),  # the original file's real format ("jpeg", "png", ...): cc3m_image keeps JPEG only
}

_SCHEME_AND_HOST = r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?P<tail>.*)$"


def normalize_urls(urls: pa.Array) -> pa.Array:
    """Normalised URLs, vectorised: trimmed, scheme and host lower-cased, ``#fragment`` removed.

    Two URLs that differ only in these ways fetch the same resource, so uids and URL dedup
    treat them as one (as img2dataset's and DataComp's URL-level dedup do).
    """
    urls = pc.utf8_trim_whitespace(pc.cast(urls, pa.string()))
    urls = pc.replace_substring_regex(urls, pattern=r"#.*$", replacement="")
    parts = pc.extract_regex(urls, _SCHEME_AND_HOST)
    head = pc.utf8_lower(pc.struct_field(parts, "head"))
    tail = pc.struct_field(parts, "tail")
    joined = pc.binary_join_element_wise(head, tail, "")
    # Rows that are not absolute URLs (relative paths) keep their trimmed form.
    return pc.if_else(pc.is_null(joined), urls, joined)


def compute_uids(urls: pa.Array, captions: pa.Array, source: str = "", first_row: int = 0) -> pa.Array:
    """128-bit hex uids (32 chars, DataComp-compatible), one per input row.

    Hashed from the normalised URL, the caption and the row's place in the input (``source``:
    the readers pass the file's absolute path, so two files with one base name in two folders
    never share uids; and the row index): stable across runs of the same input, and never shared
    by two rows, so a repeated (URL, caption) row has its own ledger entry; URL dedup decides
    which survives.
    """
    norm = normalize_urls(urls).to_pylist()
    caps = pc.fill_null(pc.cast(captions, pa.string()), "").to_pylist()
    blake = hashlib.blake2b
    uids = [
        blake(f"{u}\x00{c}\x00{source}\x00{first_row + i}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        for i, (u, c) in enumerate(zip(norm, caps, strict=True))
    ]
    return pa.array(uids, pa.string())


_HEX_VALUE = np.zeros(256, np.uint64)
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
_HEX_VALUE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint64)


def uids_to_pairs(uids: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """Unsorted ``np.dtype("u8,u8")`` pairs (high, low 64 bits) of 32-hex uids, vectorised."""
    fixed = pc.cast(pa.chunked_array([uids]) if isinstance(uids, list) else uids, pa.binary(32))
    fixed = fixed.combine_chunks() if isinstance(fixed, pa.ChunkedArray) else fixed
    nibbles = _HEX_VALUE[np.frombuffer(fixed.buffers()[1], np.uint8, count=32 * len(fixed), offset=32 * fixed.offset)]
    nibbles = nibbles.reshape(len(fixed), 32)
    pairs = np.zeros(len(fixed), np.dtype("u8,u8"))
    for half, field in ((nibbles[:, :16], "f0"), (nibbles[:, 16:], "f1")):
        value = np.zeros(len(fixed), np.uint64)
        for column in range(16):
            value = (value << np.uint64(4)) | half[:, column]
        pairs[field] = value
    return pairs


def uids_to_datacomp(uids: pa.Array | pa.ChunkedArray | list[str] | np.ndarray) -> np.ndarray:
    """Sorted ``np.dtype("u8,u8")`` array, the layout DataComp's ``--uids`` files use."""
    pairs = uids if isinstance(uids, np.ndarray) else uids_to_pairs(uids)
    pairs.sort(order=["f0", "f1"])
    return pairs


def pairs_to_uids(high: np.ndarray, low: np.ndarray) -> list[str]:
    """32-hex uids from their (high, low) 64-bit halves (the inverse of :func:`uids_to_pairs`)."""
    return [f"{hi:016x}{lo:016x}" for hi, lo in zip(high.tolist(), low.tolist(), strict=True)]
