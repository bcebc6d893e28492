"""Exact image deduplication after ``download`` (issue 6 §2): a global stage on the cluster.

Web pools repeat the same picture under many URLs (mirrors, CDNs, re-uploads): Webster et al.
("On the De-duplication of LAION-2B", 2023) estimate that about 30% of LAION-2B's images are
duplicated, and SemDeDup (Abbas et al. 2023, §1) describes LAION as curated, beyond its filters,
only by searches for exact duplicates. Hashing the content is that cheap first pass (NeMo
Curator's exact dedup hashes it the same way, with MD5); near and semantic duplicates need
perceptual hashes or embeddings, later stages. This stage runs it on the cluster after
``download``, with the ledger naming the survivor of every dropped copy.

``by: pixels`` (the default) compares the 64-bit hash of the *output pixels* before encoding
(``pixel_hash``, written by :class:`curate.imaging.ImageTransformer`), so one picture served as
different files (another container, stripped or added metadata, a lossless re-encoding) is one
image; ``by: bytes`` compares the hash of the fetched bytes (``orig_hash``), so only identical
files match. Lossy re-encodings (a JPEG re-saved) are near duplicates, for a perceptual stage.

``keep: first`` keeps the copy first in input order (work unit, then row); ``keep: largest``
keeps the one with the most original pixels (``orig_width * orig_height``), ties broken by the
larger original file, then by input order. Every other copy is dropped with reason
``duplicate_image`` and the survivor's uid as detail (and in ``dup_of``).

Two distinct images share a 64-bit hash with probability ~n²/2⁶⁵: about 3% at a billion images.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.schema import ROW, UID, UNIT, uids_to_pairs
from curate.stages.base import Decision, GlobalFilter, StageParams
from curate.stages.registry import register

HASH_COLUMNS = {"pixels": "pixel_hash", "bytes": "orig_hash"}
SIZE_COLUMNS = ("orig_width", "orig_height", "orig_bytes")
REASON = "duplicate_image"
#: The observe summary: the compared hash, where the row is, its uid, and its size for ``largest``.
SUMMARY_SCHEMA = pa.schema([("hash", pa.int64()), (UNIT, pa.int32()), (ROW, pa.int32()), ("uid_hi", pa.uint64()),
                            ("uid_lo", pa.uint64()), ("area", pa.int64()), ("orig_bytes", pa.int64())])
VERDICT_SCHEMA = pa.schema([(UNIT, pa.int32()), (ROW, pa.int32()), ("dup_of", pa.string())])


class ImageExactDedupParams(StageParams):
    by: Literal["pixels", "bytes"] = "pixels"
    keep: Literal["first", "largest"] = "first"


@register
class ImageExactDedupFilter(GlobalFilter):
    """Keep one image of every set of exact duplicates; drop the rest (``duplicate_image``)."""

    kind = "image_exact_dedup"
    Params = ImageExactDedupParams
    reads = (UID, *HASH_COLUMNS.values(), *SIZE_COLUMNS)
    writes = ("dup_of",)
    key: ClassVar[tuple[str, ...]] = ("hash",)
    verdict_types: ClassVar[dict[str, pa.DataType]] = {"dup_of": pa.string()}

    def __init__(self, params: ImageExactDedupParams, name: str | None = None):
        super().__init__(params, name)
        self.hash_column = HASH_COLUMNS[params.by]
        self.reads = (UID, self.hash_column, *(SIZE_COLUMNS if params.keep == "largest" else ()))

    def observe(self, batch: pa.Table) -> pa.Table:
        """One summary row per live row with an image (a tar sample without one has no hash)."""
        batch = batch.filter(pc.is_valid(batch.column(self.hash_column)))
        pairs = uids_to_pairs(batch.column(UID))
        if self.params.keep == "largest":
            width, height = (pc.cast(batch.column(c), pa.int64()) for c in ("orig_width", "orig_height"))
            area, nbytes = pc.fill_null(pc.multiply(width, height), 0), pc.fill_null(batch.column("orig_bytes"), 0)
        else:  # input order alone decides: carry no sizes
            area = nbytes = pa.nulls(batch.num_rows, pa.int64())
        return pa.table([batch.column(self.hash_column), batch.column(UNIT), batch.column(ROW), pairs["f0"], pairs["f1"],
                         area, nbytes], schema=SUMMARY_SCHEMA)

    def reduce(self, partition: pa.Table) -> pa.Table:
        """A verdict (``dup_of`` = the survivor's uid) for every row but the survivor of its hash."""
        if partition.num_rows == 0:
            return VERDICT_SCHEMA.empty_table()
        column = {name: partition.column(name).to_numpy() for name in ("hash", UNIT, ROW, "uid_hi", "uid_lo")}
        # np.lexsort sorts by the last key first: hash, then the policy's preference, then input order.
        order_keys = [column[ROW], column[UNIT]]
        if self.params.keep == "largest":
            order_keys += [-partition.column("orig_bytes").to_numpy(), -partition.column("area").to_numpy()]
        order = np.lexsort((*order_keys, column["hash"]))
        hashes = column["hash"][order]
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        survivor = order[np.repeat(starts, np.diff(np.r_[starts, len(order)]))]
        copies = np.ones(len(order), bool)
        copies[starts] = False
        dropped, survivor = order[copies], survivor[copies]
        return pa.table([column[UNIT][dropped], column[ROW][dropped],
                         _uid_strings(column["uid_hi"][survivor], column["uid_lo"][survivor])], schema=VERDICT_SCHEMA)

    def decide(self, scored: pa.Table) -> Decision:
        dup_of = scored.column("dup_of").combine_chunks()
        keep = pc.is_null(dup_of)
        return Decision(keep=keep, reason=pc.if_else(keep, pa.scalar(None, pa.string()), REASON), detail=dup_of)


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


def _uid_strings(high: np.ndarray, low: np.ndarray) -> pa.Array:
    """32-hex uid strings from their (high, low) 64-bit halves (the inverse of uids_to_pairs), vectorised."""
    big_endian = np.empty((len(high), 2), ">u8")
    big_endian[:, 0], big_endian[:, 1] = high, low
    octets = big_endian.view(np.uint8).reshape(len(high), 16)
    chars = np.empty((len(high), 32), np.uint8)
    chars[:, 0::2], chars[:, 1::2] = _HEX_DIGITS[octets >> 4], _HEX_DIGITS[octets & 15]
    fixed = pa.Array.from_buffers(pa.binary(32), len(high), [None, pa.py_buffer(chars.tobytes())])
    return pc.cast(pc.cast(fixed, pa.binary()), pa.string())
